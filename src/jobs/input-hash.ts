import { createHash } from 'node:crypto';
import type { PatientScore } from '../db/patient-scores.js';

/**
 * "No new RiskAssessment when the inputs and the model version are unchanged": the hash of what a score
 * was computed from, and the decision made with it before writing (the sync executor drops the plans of
 * an unchanged patient and reports it `unchanged`; the worker records the hash of every scored and
 * unchanged patient in the batch's completing transaction).
 *
 * What the hash covers: model id and version, mapping version, the input columns, the vector the model
 * was given (float32, after transforms and imputation), which columns were imputed, and the resources
 * the values came from (`basis`), and whether it was written in shadow mode. So:
 * - a new, updated, deleted or entered-in-error value the model uses changes the vector: a new score;
 * - a deleted or entered-in-error resource the last score used changes the basis even when another
 *   resource gives the same value: a new score, so a written RiskAssessment never keeps citing it;
 * - a change to data the model does not use (another code, an older value than the one used, a
 *   Patient's name) changes neither: no new score, and the last RiskAssessment stays the current one.
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
  /** References of the resources whose values were used (order does not matter). */
  basis?: readonly string[];
  /**
   * Written in shadow mode (`preliminary`, no CarePlan). Part of the inputs so that a source going live
   * gets its first final RiskAssessment (and proposals) for every patient, not only for those whose data
   * changed since the shadow runs.
   */
  shadow?: boolean;
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
  if (inputs.basis?.length) {
    h.update('\u0002basis');
    for (const reference of [...new Set(inputs.basis)].sort()) h.update(`\u0000${reference}`);
  }
  if (inputs.shadow) h.update('\u0003shadow');
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
