import type {
  Binary,
  Bundle,
  CarePlan,
  Condition,
  DiagnosticReport,
  FhirResource,
  ImagingStudy,
  Observation,
  Patient,
  RiskAssessment,
} from 'fhir/r4.js';
import { AdapterError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { FeatureRow, PatientRecord } from '../core/types.js';
import type { FhirClient } from '../fhir/client.js';
import { patientIdOf, pullBatch } from '../fhir/pull.js';
import { mapPatient } from '../features/index.js';
import { bandFor, explainBatch } from '../models/index.js';
import type { SyncModel } from '../sync/models.js';
import { pullSpecFor } from '../sync/pull-step.js';
import { runSync } from '../sync/run.js';
import { assessmentIdentifierValue } from '../writeback/identifiers.js';

/**
 * The API's one adapter onto today's mapping, model and write-back code (to re-point when the sync is
 * split into a batch step): score one patient from its source (optionally writing the RiskAssessment
 * back, through the same idempotent writer as a run) or from a posted Bundle (never written), and
 * rebuild what a console drill-down shows for one outcome.
 */

export interface ScoreResult {
  modelId: string;
  modelVersion: string;
  patientId: string;
  asOf: string;
  status: 'scored' | 'skipped' | 'not-found';
  reason?: string;
  probability?: number;
  band?: string;
  outputs?: Record<string, number>;
  explanation?: { featureId: string; contribution: number }[];
  counts?: FeatureRow['counts'];
  excluded?: Record<string, number>;
  write?: 'created' | 'already-present' | 'dry-run' | 'not-requested';
}

export async function scoreFromSource(
  client: FhirClient,
  model: SyncModel,
  input: { patientId: string; asOf: Date; write: boolean; identifierSystem: string; logger?: Logger },
): Promise<ScoreResult> {
  const result = await runSync(client, [model], {
    asOf: input.asOf,
    patientIds: [input.patientId],
    dryRun: !input.write,
    identifierSystem: input.identifierSystem,
    collectPatients: true,
    logger: input.logger,
  });
  if (result.aborted) throw result.aborted.error;
  if (result.failures.length) {
    const f = result.failures[0];
    throw new AdapterError(f.code as AdapterError['code'], f.message, { transient: f.code === 'fhir-unavailable' });
  }
  const r = result.results[0];
  return {
    modelId: model.runner.card.id,
    modelVersion: model.runner.card.version,
    patientId: input.patientId,
    asOf: input.asOf.toISOString(),
    status: r.status === 'failed' ? 'skipped' : r.status,
    reason: r.reason,
    probability: r.probability,
    band: r.band,
    outputs: r.outputs,
    explanation: r.explanation,
    counts: r.counts,
    excluded: r.excluded as Record<string, number> | undefined,
    write: r.status === 'scored' ? (input.write ? r.write : 'not-requested') : undefined,
  };
}

/**
 * Scores the patient of a posted Bundle (collection, searchset, transaction ...): exactly one Patient, and
 * the Observations, DiagnosticReports, ImagingStudies and Binaries that belong to it. Resources of other
 * subjects are refused rather than silently dropped.
 */
export async function scoreFromBundle(model: SyncModel, bundle: Bundle, asOf: Date): Promise<ScoreResult & { features: FeatureView[] }> {
  const record = recordFromBundle(bundle);
  const patientId = record.patient.id!;
  const row = mapPatient(model.mapping, record, asOf);
  const card = model.runner.card;
  const base = {
    modelId: card.id,
    modelVersion: card.version,
    patientId,
    asOf: asOf.toISOString(),
    counts: row.counts,
    excluded: countReasons(row),
    features: featureView(model, row),
  };
  if (row.skipReason) return { ...base, status: 'skipped', reason: row.skipReason };
  const outputs = await model.runner.run(row.values, 1);
  const probability = outputs[card.onnx.output.name][0];
  if (!Number.isFinite(probability) || probability < 0 || probability > 1) {
    throw new AdapterError('inference-failed', `model ${card.id}: output ${probability} is not a probability`);
  }
  const [explanation] = await explainBatch(model.runner, [row.values]);
  const extra = card.onnx.additionalOutputs.length ? Object.fromEntries(card.onnx.additionalOutputs.map((o) => [o.name, outputs[o.name][0]])) : undefined;
  return { ...base, status: 'scored', probability, band: bandFor(card, probability), outputs: extra, explanation, write: 'not-requested' };
}

export function recordFromBundle(bundle: Bundle): PatientRecord {
  if (bundle?.resourceType !== 'Bundle') throw new AdapterError('input-invalid', 'bundle: not a FHIR Bundle');
  const resources = (bundle.entry ?? []).map((e) => e.resource).filter((r): r is FhirResource => !!r);
  const patients = resources.filter((r): r is Patient => r.resourceType === 'Patient');
  if (patients.length !== 1 || !patients[0].id) {
    throw new AdapterError('input-invalid', `bundle: needs exactly one Patient with an id (found ${patients.length})`);
  }
  const patient = patients[0];
  const problems: string[] = [];
  const ofPatient = <T extends Observation | DiagnosticReport | ImagingStudy | Condition>(type: T['resourceType']): T[] =>
    resources
      .filter((r): r is T => r.resourceType === type)
      .filter((r, i) => {
        const subject = patientIdOf(r.subject);
        if (subject !== patient.id) problems.push(`bundle: ${type} #${i + 1} is not about the bundle's Patient`);
        return subject === patient.id;
      });
  const record: PatientRecord = {
    patient,
    observations: ofPatient<Observation>('Observation'),
    diagnosticReports: ofPatient<DiagnosticReport>('DiagnosticReport'),
    imagingStudies: ofPatient<ImagingStudy>('ImagingStudy'),
    conditions: ofPatient<Condition>('Condition'),
    binaries: new Map(resources.filter((r): r is Binary => r.resourceType === 'Binary' && !!r.id).map((b) => [`Binary/${b.id}`, b])),
  };
  if (problems.length) throw new AdapterError('input-invalid', problems.slice(0, 10).join('; '), { details: { problems: problems.length } });
  return record;
}

export interface FeatureView {
  id: string;
  value: number | null;
  unit?: string;
  input: boolean;
}

function featureView(model: SyncModel, row: FeatureRow): FeatureView[] {
  return model.mapping.features.flatMap((f) => {
    const keys = f.oneHot ? f.oneHot.map((c) => `${f.id}=${c}`) : [f.id];
    return keys.map((k) => ({ id: k, value: row.raw[k] ?? null, unit: f.unit, input: !!f.input }));
  });
}

function countReasons(row: FeatureRow): Record<string, number> {
  const used = new Set(row.basis);
  const first = new Map<string, string>();
  for (const e of row.exclusions) if (!used.has(e.reference) && !first.has(e.reference)) first.set(e.reference, e.reason);
  const out: Record<string, number> = {};
  for (const reason of first.values()) out[reason] = (out[reason] ?? 0) + 1;
  return out;
}

export interface PatientDetail {
  features: FeatureView[];
  columns: { id: string; value: number; imputed: boolean }[];
  skipReason?: string;
  counts: FeatureRow['counts'];
  used: string[];
  excluded: { reference: string; reason: string; featureId?: string; detail?: string }[];
  partIssues: { reference: string; reason: string; detail?: string }[];
  riskAssessment?: RiskAssessment;
  carePlans: CarePlan[];
  /** True when the data were read again now (they may have changed since the run). */
  recomputed: true;
}

/**
 * What the console's drill-down shows for one outcome: the feature row recomputed from the source at the
 * run's as-of (features with units, model inputs and imputations, used and excluded resources with the
 * reason), the RiskAssessment the run wrote (found by its deterministic identifier) and any CarePlan
 * proposal that points to it.
 */
export async function patientDetail(
  client: FhirClient,
  model: SyncModel,
  input: { patientId: string; asOf: Date; identifierSystem: string; logger?: Logger },
): Promise<PatientDetail> {
  const pull = await pullBatch(client, [input.patientId], pullSpecFor([model], input.asOf), input.asOf, { logger: input.logger });
  const record = pull.records.get(input.patientId);
  if (!record) throw new AdapterError('not-found', 'the patient of this outcome is no longer on the source server');
  const row = mapPatient(model.mapping, record, input.asOf);
  const card = model.runner.card;
  const identifier = `${input.identifierSystem}|${assessmentIdentifierValue(card.id, card.version, input.patientId, input.asOf)}`;
  let riskAssessment: RiskAssessment | undefined;
  for await (const page of client.search<RiskAssessment>('RiskAssessment', { identifier, _count: '1' })) {
    riskAssessment = page.resources[0];
    break;
  }
  const carePlans: CarePlan[] = [];
  if (riskAssessment?.id) {
    const ref = `RiskAssessment/${riskAssessment.id}`;
    for await (const page of client.search<CarePlan>('CarePlan', { subject: `Patient/${input.patientId}`, _count: '100' })) {
      carePlans.push(...page.resources.filter((c) => c.supportingInfo?.some((s) => s.reference === ref || s.reference?.endsWith(`/${ref}`))));
    }
  }
  const used = new Set(row.basis);
  return {
    features: featureView(model, row),
    columns: row.columns.map((c, i) => ({ id: c, value: row.values[i], imputed: row.imputed[i] })),
    skipReason: row.skipReason,
    counts: row.counts,
    used: row.basis,
    excluded: row.exclusions.filter((e) => !used.has(e.reference)).map((e) => ({ reference: e.reference, reason: e.reason, featureId: e.featureId, detail: e.detail })),
    partIssues: row.partIssues.map((e) => ({ reference: e.reference, reason: e.reason, detail: e.detail })),
    riskAssessment,
    carePlans,
    recomputed: true,
  };
}
