import { AdapterError } from '../core/errors.js';
import type { FeatureRow, Prediction } from '../core/types.js';
import type { PullResult } from '../fhir/pull.js';
import { mapPatient, type MapContext } from '../features/index.js';
import { bandFor, explainBatch } from '../models/index.js';
import { planAssessment, type AssessmentPlan } from '../writeback/plan.js';
import type { FhirWriter } from '../writeback/writer.js';
import type { SyncModel } from './models.js';

/**
 * The batch step: a pulled batch -> feature rows -> predictions -> write plans, per patient and model,
 * without any request (`scoreBatch`); then the one write of the batch (`writeBatch`). Between the two a
 * caller may look at every entry's row and prediction and drop plans or skip entries (`skipEntry`): the
 * job service skips patients whose inputs are unchanged, safety gates skip what a model may not score.
 * Nothing here is counted: `totals.ts` counts a batch once it is complete.
 */

export interface BatchContext {
  models: SyncModel[];
  asOf: Date;
  identifierSystem: string;
  /** Device reference per model id. Plans are built only when given (none in a dry run). */
  devices?: ReadonlyMap<string, string>;
  /** Add occlusion explanations to each prediction (default true). */
  explain?: boolean;
  /** Services the mapper needs (the report analyzer). */
  mapContext: MapContext;
  /** `Provenance.recorded` of the plans. */
  recorded: Date;
}

/** One patient and one model in a batch. */
export interface BatchEntry {
  patientId: string;
  modelId: string;
  status: 'scored' | 'skipped' | 'not-found';
  /** Why the patient is not scored (skipped, not found). */
  reason?: string;
  /** The feature row (absent when the patient was not found). */
  row?: FeatureRow;
  /** The prediction of a scored entry. */
  prediction?: Prediction;
  /** What would be written for this entry; empty when skipped or in a dry run. A caller may remove plans. */
  plans: AssessmentPlan[];
  /** Set by `writeBatch`: what the server did with the entry's RiskAssessment. */
  write?: 'created' | 'already-present' | 'dry-run';
}

export interface ScoredBatch {
  /** The batch's patient ids, unique, in order. */
  patientIds: string[];
  /** Not-found patients first (per model), then per model the batch's patients in order. */
  entries: BatchEntry[];
  pulled: { requests: number; unattributed: number; missingPatients: string[] };
  dryRun: boolean;
}

/**
 * Maps, scores and plans one pulled batch for every model. Rows of one model go through its ONNX
 * session in one batched run (and one more for explanations). Throws (the whole batch fails) when a
 * model gives something that is not a probability.
 */
export async function scoreBatch(patientIds: string[], pull: PullResult, ctx: BatchContext): Promise<ScoredBatch> {
  const ids = [...new Set(patientIds)];
  const entries: BatchEntry[] = [];
  for (const id of pull.missingPatients) {
    for (const m of ctx.models) entries.push({ patientId: id, modelId: m.runner.card.id, status: 'not-found', reason: 'patient-not-found', plans: [] });
  }
  const dryRun = !ctx.devices;
  for (const model of ctx.models) {
    const card = model.runner.card;
    const toScore: BatchEntry[] = [];
    for (const id of ids) {
      const record = pull.records.get(id);
      if (!record) continue;
      const row = mapPatient(model.mapping, record, ctx.asOf, ctx.mapContext);
      const entry: BatchEntry = { patientId: id, modelId: card.id, status: row.skipReason ? 'skipped' : 'scored', reason: row.skipReason, row, plans: [] };
      entries.push(entry);
      if (!row.skipReason) toScore.push(entry);
    }
    if (toScore.length === 0) continue;

    const d = model.columns.length;
    const flat = new Float32Array(toScore.length * d);
    toScore.forEach((e, i) => flat.set(e.row!.values, i * d));
    // Every output of the model: the probability, and any others the card declares (CURB-65's score).
    const outputs = await model.runner.run(flat, toScore.length);
    const probabilities = outputs[card.onnx.output.name];
    const extraOutputs = card.onnx.additionalOutputs.map((o) => o.name);
    const explanations = ctx.explain === false ? undefined : await explainBatch(model.runner, toScore.map((e) => e.row!.values));

    toScore.forEach((entry, i) => {
      const probability = probabilities[i];
      if (!Number.isFinite(probability) || probability < 0 || probability > 1) {
        throw new AdapterError('inference-failed', `model ${card.id}: output ${probability} is not a probability`);
      }
      const extra = extraOutputs.length ? Object.fromEntries(extraOutputs.map((name) => [name, outputs[name][i]])) : undefined;
      const prediction: Prediction = {
        patientId: entry.patientId,
        modelId: card.id,
        modelVersion: card.version,
        probability,
        band: bandFor(card, probability),
        explanation: explanations?.[i],
        outputs: extra,
      };
      entry.prediction = prediction;
      const device = ctx.devices?.get(card.id);
      if (device) {
        const basis = entry.row!.usesPatient ? [`Patient/${entry.patientId}`, ...entry.row!.basis] : entry.row!.basis;
        entry.plans.push(
          planAssessment(
            { model: card, prediction, patientId: entry.patientId, asOf: ctx.asOf, basis, deviceReference: device, identifierSystem: ctx.identifierSystem },
            ctx.recorded,
          ),
        );
      }
    });
  }
  return {
    patientIds: ids,
    entries,
    pulled: { requests: pull.requests, unattributed: pull.unattributed.length, missingPatients: pull.missingPatients },
    dryRun,
  };
}

/** Skips an entry with a reason (a gate of the caller): nothing is written for it and it counts as skipped. */
export function skipEntry(entry: BatchEntry, reason: string): void {
  entry.status = 'skipped';
  entry.reason = reason;
  entry.prediction = undefined;
  entry.plans = [];
}

/**
 * Sends the batch's plans in one write (`FhirWriter`: existing identifiers looked up, then one
 * transaction) and records on each entry what the server did. A dry run writes nothing. Returns the
 * requests made. Throws when the write fails: the batch then fails as a whole.
 */
export async function writeBatch(writer: FhirWriter, batch: ScoredBatch): Promise<{ requests: number }> {
  const scored = batch.entries.filter((e) => e.status === 'scored');
  if (batch.dryRun) {
    for (const e of scored) e.write = 'dry-run';
    return { requests: 0 };
  }
  const plans = scored.flatMap((e) => e.plans);
  if (plans.length === 0) return { requests: 0 };
  const written = await writer.write(plans);
  const created = new Set(written.createdIdentifiers);
  for (const e of scored) {
    const plan = e.plans[0];
    if (plan) e.write = created.has(plan.identifier.value) ? 'created' : 'already-present';
  }
  return { requests: written.requests };
}
