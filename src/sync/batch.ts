import { AdapterError } from '../core/errors.js';
import type { FeatureRow, Prediction } from '../core/types.js';
import type { PullResult } from '../fhir/pull.js';
import type { MapContext } from '../features/index.js';
import { assessApplicability, bandFor, explainBatch, rationale, type Applicability } from '../models/index.js';
import { withApplicability } from '../writeback/extensions.js';
import { planAssessment, type AssessmentPlan } from '../writeback/plan.js';
import { riskAssessmentNarrative } from '../writeback/narrative.js';
import type { FhirWriter } from '../writeback/writer.js';
import type { SyncModel } from './models.js';
import { assessPatient } from './patient-assessment.js';

/**
 * The batch step: a pulled batch -> feature rows -> predictions -> write plans, per patient and model,
 * without any request (`scoreBatch`); then the one write of the batch (`writeBatch`). Between the two a
 * caller may look at every entry's row and prediction and drop plans or skip entries (`skipEntry`): the
 * job service skips patients whose inputs are unchanged; the CarePlan step (`care-plans.ts`) adds
 * proposals to the plans. Nothing here is counted: `totals.ts` counts a batch once it is complete.
 *
 * Per model, in this order:
 * 1. the intended-use gate and the mapping (`patient-assessment.ts`): a deceased patient, an inactive
 *    record or a patient outside the card's population is skipped with the gate's reason;
 * 2. the model and its out-of-distribution check, in one batched run each on the same Float32Array;
 * 3. applicability (imputed, out-of-range, OOD) and the card's policy: `skip` skips the patient with its
 *    reason; `score-preliminary` writes the RiskAssessment as preliminary;
 * 4. explanations for the patients still scored, and their rationale for clinicians;
 * 5. the write plan: RiskAssessment (with its applicability extension and note) and Provenance. In
 *    shadow mode every RiskAssessment is preliminary.
 */

export interface BatchContext {
  models: SyncModel[];
  asOf: Date;
  identifierSystem: string;
  /** Device reference per model id. Plans are built only when given (none in a dry run). */
  devices?: ReadonlyMap<string, string>;
  /** Add occlusion explanations (and the rationale built on them) to each prediction (default true). */
  explain?: boolean;
  /** Services the mapper needs (the report analyzer). */
  mapContext: MapContext;
  /** `Provenance.recorded` of the plans. */
  recorded: Date;
  /** Shadow mode: every RiskAssessment is written `preliminary`, for silent validation before go-live. */
  shadow?: boolean;
}

/** One patient and one model in a batch. */
export interface BatchEntry {
  patientId: string;
  modelId: string;
  status: 'scored' | 'skipped' | 'not-found';
  /** Why the patient is not scored (skipped, not found). */
  reason?: string;
  /** What a skip rests on (the gate's or the policy's detail), for the report. */
  reasonDetail?: string;
  /** The feature row (absent when the patient was not found). */
  row?: FeatureRow;
  /** The prediction of a scored entry. */
  prediction?: Prediction;
  /** Applicability of the score (set once the model has run, also when the policy skips it). */
  applicability?: Applicability;
  /** `Condition/<id>` that met the model's required criteria (a proposal's `addresses`). */
  evidence?: string[];
  /** What would be written for this entry; empty when skipped or in a dry run. A caller may remove plans. */
  plans: AssessmentPlan[];
  /** Set by `writeBatch`: what the server did with the entry's RiskAssessment. */
  write?: 'created' | 'already-present' | 'dry-run';
  /** Set by `writeBatch` when the entry carried CarePlan proposals: what became of them. */
  carePlans?: CarePlanCounts;
}

/** CarePlan proposals of one patient (or totals): created, found already there, older drafts revoked, plans left alone. */
export interface CarePlanCounts {
  created: number;
  alreadyPresent: number;
  revoked: number;
  /** This adapter's earlier proposals it may not touch (activated, completed or edited by a clinician). */
  untouched: number;
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
 * Gates, maps, scores and plans one pulled batch for every model. Rows of one model go through its ONNX
 * session and its OOD check in one batched run each (and one more for explanations). Throws (the whole
 * batch fails) when a model gives something that is not a probability.
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
      const assessed = assessPatient(model, record, ctx.asOf, ctx.mapContext);
      const entry: BatchEntry = {
        patientId: id,
        modelId: card.id,
        status: assessed.skip ? 'skipped' : 'scored',
        row: assessed.row,
        evidence: assessed.evidence,
        plans: [],
        ...(assessed.skip ? { reason: assessed.skip.reason, ...(assessed.skip.detail ? { reasonDetail: assessed.skip.detail } : {}) } : {}),
      };
      entries.push(entry);
      if (!assessed.skip) toScore.push(entry);
    }
    if (toScore.length === 0) continue;

    const d = model.columns.length;
    const flat = new Float32Array(toScore.length * d);
    toScore.forEach((e, i) => flat.set(e.row!.values, i * d));
    // Every output of the model (the probability, and any others the card declares: CURB-65's score),
    // and the out-of-distribution check on the very same input array.
    const [outputs, ood] = await Promise.all([model.runner.run(flat, toScore.length), model.ood?.run(flat, toScore.length)]);
    const probabilities = outputs[card.onnx.output.name];
    const extraOutputs = card.onnx.additionalOutputs.map((o) => o.name);
    const labels = Object.fromEntries(model.rationaleFeatures.map((f) => [f.column, f.label]));

    const kept: { entry: BatchEntry; i: number }[] = [];
    toScore.forEach((entry, i) => {
      const probability = probabilities[i];
      if (!Number.isFinite(probability) || probability < 0 || probability > 1) {
        throw new AdapterError('inference-failed', `model ${card.id}: output ${probability} is not a probability`);
      }
      const row = entry.row!;
      const applicability = assessApplicability(card, {
        values: row.values,
        imputed: row.imputed,
        raw: row.raw,
        ...(ood ? { ood: { error: ood.error[i], flagged: ood.flagged[i], threshold: ood.threshold } } : {}),
        labels,
        shadow: ctx.shadow,
      });
      entry.applicability = applicability;
      if (applicability.decision === 'skip') {
        const trigger = applicability.triggers.find((t) => t.reason === applicability.skipReason);
        skipEntry(entry, applicability.skipReason!, trigger?.detail);
        return;
      }
      kept.push({ entry, i });
    });
    if (kept.length === 0) continue;

    const explanations = ctx.explain === false ? undefined : await explainBatch(model.runner, kept.map(({ entry }) => entry.row!.values));
    kept.forEach(({ entry, i }, k) => {
      const row = entry.row!;
      const probability = probabilities[i];
      const extra = extraOutputs.length ? Object.fromEntries(extraOutputs.map((name) => [name, outputs[name][i]])) : undefined;
      const explanation = explanations?.[k];
      const imputedByColumn = Object.fromEntries(row.columns.map((c, j) => [c, row.imputed[j]]));
      const prediction: Prediction = {
        patientId: entry.patientId,
        modelId: card.id,
        modelVersion: card.version,
        probability,
        band: bandFor(card, probability),
        explanation,
        outputs: extra,
        ...(explanation ? { rationale: rationale(explanation, model.rationaleFeatures, row.raw, imputedByColumn) } : {}),
      };
      entry.prediction = prediction;
      const device = ctx.devices?.get(card.id);
      if (device) {
        const basis = row.usesPatient ? [`Patient/${entry.patientId}`, ...row.basis] : row.basis;
        const plan = planAssessment(
          { model: card, prediction, patientId: entry.patientId, asOf: ctx.asOf, basis, deviceReference: device, identifierSystem: ctx.identifierSystem },
          ctx.recorded,
        );
        plan.riskAssessment = withApplicability(plan.riskAssessment, entry.applicability!);
        if (ctx.shadow) {
          plan.riskAssessment = {
            ...plan.riskAssessment,
            status: 'preliminary',
            note: [...(plan.riskAssessment.note ?? []), { text: 'Shadow mode: written as preliminary for silent validation before go-live; not for clinical decisions.' }],
          };
        }
        // Last, so that it tells what the finished resource says (status, applicability, shadow mode).
        plan.riskAssessment = { ...plan.riskAssessment, text: riskAssessmentNarrative(plan.riskAssessment) };
        entry.plans.push(plan);
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
export function skipEntry(entry: BatchEntry, reason: string, detail?: string): void {
  entry.status = 'skipped';
  entry.reason = reason;
  if (detail !== undefined) entry.reasonDetail = detail;
  else delete entry.reasonDetail;
  entry.prediction = undefined;
  entry.plans = [];
}

/** The status a scored entry's RiskAssessment is written with (`final` or `preliminary`), when it has a plan. */
export function assessmentStatus(entry: BatchEntry): 'final' | 'preliminary' | undefined {
  const status = entry.plans[0]?.riskAssessment.status;
  return status === 'final' || status === 'preliminary' ? status : undefined;
}

/**
 * Sends the batch's plans in one write (`FhirWriter`: existing identifiers looked up, then one
 * transaction with every RiskAssessment, Provenance and CarePlan proposal) and records on each entry
 * what the server did. A dry run writes nothing. Returns the requests made. Throws when the write
 * fails: the batch then fails as a whole.
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
  const carePlansCreated = new Set(written.carePlans.created);
  const carePlansPresent = new Set(written.carePlans.alreadyPresent);
  const revoked = new Set(written.carePlans.revoked);
  for (const e of scored) {
    const plan = e.plans[0];
    if (!plan) continue;
    e.write = created.has(plan.identifier.value) ? 'created' : 'already-present';
    if (!plan.carePlans) continue;
    const counts: CarePlanCounts = { created: 0, alreadyPresent: 0, revoked: 0, untouched: 0 };
    for (const c of plan.carePlans) {
      if (carePlansCreated.has(c.identifier.value)) counts.created++;
      else if (carePlansPresent.has(c.identifier.value) || c.plan.notCreated === 'already-written' || c.plan.notCreated === 'same-plan-already-proposed') counts.alreadyPresent++;
      counts.revoked += c.plan.revoked.filter((r) => revoked.has(r.id)).length;
      counts.untouched += c.plan.untouched.length;
    }
    e.carePlans = counts;
  }
  return { requests: written.requests };
}
