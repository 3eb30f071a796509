import { createHash } from 'node:crypto';
import type { PatientScore } from '../db/patient-scores.js';

/**
 * "No new RiskAssessment when the inputs and the model version are unchanged": the hash of what a score
 * was computed from, and the decision made with it before writing.
 *
 * Wiring (once the batch step exposes each patient's FeatureRow before writing): per scored patient
 * compute `inputHash({ modelId, modelVersion, mappingVersion, columns, values, imputed })`, look up the
 * stored score (PatientScoreStore.get), call `decideWrite`, drop the plans marked `unchanged` (report the
 * patient as status `unchanged`), and record the hashes of the written and unchanged patients with
 * PatientScoreStore.record in the batch's completing transaction.
 *
 * Deleted or entered-in-error data changes the vector (the value is gone or excluded), so it leads to a
 * new score; a change to data the model does not use does not.
 */
export interface ScoredInputs {
  modelId: string;
  modelVersion: string;
  mappingVersion: string;
  /** Model input columns, in order. */
  columns: readonly string[];
  /** The vector given to the model (after transforms and imputation). */
  values: ArrayLike<number>;
  /** Per column: imputed or observed. An imputed value equal to an observed one is still a change. */
  imputed: readonly boolean[];
}

export function inputHash(inputs: ScoredInputs): string {
  if (inputs.columns.length !== inputs.values.length || inputs.columns.length !== inputs.imputed.length) {
    throw new Error(`input hash: ${inputs.columns.length} columns, ${inputs.values.length} values, ${inputs.imputed.length} imputed flags`);
  }
  const h = createHash('sha256');
  h.update(`${inputs.modelId}\u0000${inputs.modelVersion}\u0000${inputs.mappingVersion}\u0000`);
  // Float32 bytes: the model sees float32, so two doubles that round to the same float are the same input.
  const floats = Float32Array.from(inputs.values as ArrayLike<number>);
  for (let i = 0; i < inputs.columns.length; i++) {
    h.update(inputs.columns[i]);
    h.update('\u0000');
    h.update(Buffer.from(floats.buffer, i * 4, 4));
    h.update(inputs.imputed[i] ? '\u0001' : '\u0000');
  }
  return h.digest('hex');
}

export type WriteDecision = { write: true; reason: 'first-score' | 'model-version-changed' | 'inputs-changed' | 'no-hash-recorded' } | { write: false; reason: 'unchanged' };

/** Whether a new RiskAssessment is due for a patient, given its last recorded score. */
export function decideWrite(previous: Pick<PatientScore, 'modelVersion' | 'inputHash'> | undefined, current: { modelVersion: string; inputHash: string }): WriteDecision {
  if (!previous) return { write: true, reason: 'first-score' };
  if (previous.modelVersion !== current.modelVersion) return { write: true, reason: 'model-version-changed' };
  if (!previous.inputHash) return { write: true, reason: 'no-hash-recorded' };
  if (previous.inputHash !== current.inputHash) return { write: true, reason: 'inputs-changed' };
  return { write: false, reason: 'unchanged' };
}
