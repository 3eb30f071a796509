import type { Binary, Bundle, CarePlan, Condition, DiagnosticReport, FhirResource, ImagingStudy, Observation, Patient, RiskAssessment } from 'fhir/r4.js';
import { systemClock, type Clock } from '../core/clock.js';
import { AdapterError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { FeatureRow, PatientRecord } from '../core/types.js';
import type { FhirClient } from '../fhir/client.js';
import { patientIdOf, type PullResult } from '../fhir/pull.js';
import { describeTransforms, valueColumns, type MapContext } from '../features/index.js';
import { scoreBatch, type BatchEntry } from '../sync/batch.js';
import { CarePlanStep, writeWithCarePlans } from '../sync/care-plans.js';
import type { SyncModel } from '../sync/models.js';
import { searchStrategy, type PullStrategy, type PullStrategyFactory } from '../fhir/strategy.js';
import { pullStrategyFor } from '../sync/pull-step.js';
import { patientResult, type PatientResult } from '../sync/totals.js';
import { assessmentIdentifierValue, MODEL_REGISTRY_SYSTEM } from '../writeback/identifiers.js';
import { FhirWriter } from '../writeback/writer.js';

/**
 * What the API scores and shows for one patient, through the orchestrator's own steps, so an answer here
 * is the one a run gives: the pull step (the per-patient strategy, see `onePatient`), the batch step (`scoreBatch`, with the composition
 * root's map context: the report analyzer for report findings) and the one write (`writeBatch`). Scores a
 * patient from its source (optionally written back, idempotently) or from a posted Bundle (never
 * written), and rebuilds what the console's drill-down shows for one outcome.
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
  /** What a skip rests on (the intended-use gate's or the card's policy's detail). */
  reasonDetail?: string;
  /** The status the RiskAssessment is (or would be) written with: `preliminary` by the card's policy. */
  riskAssessmentStatus?: PatientResult['riskAssessmentStatus'];
  applicability?: PatientResult['applicability'];
  rationale?: PatientResult['rationale'];
  /** CarePlan proposals written with the RiskAssessment (write-back only). */
  carePlans?: PatientResult['carePlans'];
}

interface ScoringContext {
  asOf: Date;
  identifierSystem: string;
  mapContext: MapContext;
  /** The configuration's `sync.shadow` (RiskAssessments written preliminary, no CarePlans) and `sync.carePlans`. */
  shadow?: boolean;
  carePlans?: boolean;
  logger?: Logger;
  clock?: Clock;
}

/**
 * The pull of one patient as its source's runs pull it (`servicePullStrategy`: search, per-patient, or
 * auto's choice; a bulk source's one patient is searched), so the record is the one a run reads; its care
 * reads (CarePlan proposals) go the same way. Search when the caller gives no strategy.
 */
function onePatient(client: FhirClient, model: SyncModel, asOf: Date, strategy: PullStrategyFactory = searchStrategy(), logger?: Logger): Promise<PullStrategy> {
  return pullStrategyFor([model], asOf, client, strategy, logger);
}

export async function scoreFromSource(
  client: FhirClient,
  model: SyncModel,
  input: ScoringContext & { patientId: string; write: boolean; pullStrategy?: PullStrategyFactory },
): Promise<ScoreResult> {
  const card = model.runner.card;
  const writer = input.write ? new FhirWriter(client, input.identifierSystem, input.logger) : undefined;
  // Without a Device the batch step plans nothing: a dry run.
  const devices = writer ? new Map([[card.id, await writer.ensureDevice(card)]]) : undefined;
  const strategy = await onePatient(client, model, input.asOf, input.pullStrategy, input.logger);
  const pulled = await strategy.pull([input.patientId]);
  const recorded = (input.clock ?? systemClock).now();
  const batch = await scoreBatch([input.patientId], pulled, {
    models: [model],
    asOf: input.asOf,
    identifierSystem: input.identifierSystem,
    devices,
    mapContext: input.mapContext,
    recorded,
    shadow: input.shadow,
  });
  if (writer) {
    // As a run writes: the RiskAssessment with its Provenance and the model's CarePlan proposals, in one transaction.
    const step =
      input.shadow || input.carePlans === false
        ? undefined
        : new CarePlanStep(client, [model], { asOf: input.asOf, identifierSystem: input.identifierSystem, readCare: strategy.readCare, logger: input.logger });
    await writeWithCarePlans(writer, batch, step?.active ? step : undefined, devices, recorded, input.logger);
  }
  const entry = batch.entries[0];
  return { ...resultOf(model, entry, input.asOf), write: entry.status === 'scored' ? (writer ? entry.write : 'not-requested') : undefined };
}

/**
 * Scores the patient of a posted Bundle (collection, searchset, transaction ...): exactly one Patient, and
 * the Observations, DiagnosticReports, ImagingStudies, Conditions and Binaries that belong to it. Resources of other
 * subjects are refused rather than silently dropped.
 */
export async function scoreFromBundle(model: SyncModel, bundle: Bundle, input: ScoringContext): Promise<ScoreResult & { features: FeatureView[] }> {
  const record = recordFromBundle(bundle);
  const patientId = record.patient.id!;
  const batch = await scoreBatch([patientId], pulledFromRecord(record), {
    models: [model],
    asOf: input.asOf,
    identifierSystem: input.identifierSystem,
    mapContext: input.mapContext,
    recorded: (input.clock ?? systemClock).now(),
  });
  const entry = batch.entries[0];
  return { ...resultOf(model, entry, input.asOf), write: entry.status === 'scored' ? 'not-requested' : undefined, features: featureView(model, entry.row!) };
}

function resultOf(model: SyncModel, entry: BatchEntry, asOf: Date): ScoreResult {
  const r = patientResult(entry);
  return {
    modelId: model.runner.card.id,
    modelVersion: model.runner.card.version,
    patientId: entry.patientId,
    asOf: asOf.toISOString(),
    // A failure throws (the batch step fails as a whole); what comes back is scored, skipped or not found.
    status: r.status === 'failed' ? 'skipped' : r.status,
    reason: r.reason,
    probability: r.probability,
    band: r.band,
    outputs: r.outputs,
    explanation: r.explanation,
    counts: r.counts,
    excluded: r.excluded as Record<string, number> | undefined,
    ...(r.reasonDetail !== undefined ? { reasonDetail: r.reasonDetail } : {}),
    ...(r.riskAssessmentStatus ? { riskAssessmentStatus: r.riskAssessmentStatus } : {}),
    ...(r.applicability ? { applicability: r.applicability } : {}),
    ...(r.rationale ? { rationale: r.rationale } : {}),
    ...(r.carePlans ? { carePlans: r.carePlans } : {}),
  };
}

/** A posted record as the pull step would have given it: one patient, nothing missing, no request made. */
function pulledFromRecord(record: PatientRecord): PullResult {
  const fetched: Record<string, number> = { Patient: 1 };
  for (const list of Object.values(record)) {
    if (!Array.isArray(list)) continue;
    for (const r of list as FhirResource[]) fetched[r.resourceType] = (fetched[r.resourceType] ?? 0) + 1;
  }
  fetched.Binary = record.binaries?.size ?? 0;
  return {
    records: new Map([[record.patient.id!, record]]),
    missingPatients: [],
    unattributed: [],
    missingBinaries: [],
    fetched: fetched as PullResult['fetched'],
    requests: 0,
  };
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
  /** The measured value, in `unit`, before the transforms (`ln_tg`: triglycerides in mg/dL). */
  value: number | null;
  unit?: string;
  /** What the model input makes of the value, in order (e.g. `log, standardize(...)`); empty: none. */
  transforms: string;
  input: boolean;
}

function featureView(model: SyncModel, row: FeatureRow): FeatureView[] {
  return model.mapping.features.flatMap((f) => {
    const transforms = describeTransforms(f);
    return valueColumns(f).map((k) => ({ id: k, value: row.raw[k] ?? null, unit: f.unit, transforms, input: !!f.input }));
  });
}

export interface PatientDetail {
  features: FeatureView[];
  columns: { id: string; value: number; imputed: boolean }[];
  skipReason?: string;
  /** What the skip rests on (the intended-use gate's or the card's policy's detail). */
  skipDetail?: string;
  counts: FeatureRow['counts'];
  used: string[];
  excluded: { reference: string; reason: string; featureId?: string; detail?: string }[];
  partIssues: { reference: string; reason: string; detail?: string }[];
  riskAssessment?: RiskAssessment;
  /**
   * `this-run`: the RiskAssessment of the outcome's run (its identifier); `earlier`: the latest one this
   * adapter wrote for the patient and model before (the run found the inputs unchanged and wrote none).
   */
  riskAssessmentFrom?: 'this-run' | 'earlier';
  carePlans: CarePlan[];
  /** True when the data were read again now (they may have changed since the run). */
  recomputed: true;
}

/**
 * What the console's drill-down shows for one outcome: the feature row recomputed from the source at the
 * run's as-of by the same steps as the run (features with units, model inputs and imputations, used and
 * excluded resources with the reason), the RiskAssessment the run wrote (found by its deterministic
 * identifier; for an unchanged patient the latest earlier one) and any CarePlan proposal that points to it.
 */
export async function patientDetail(
  client: FhirClient,
  model: SyncModel,
  input: { patientId: string; asOf: Date; identifierSystem: string; mapContext: MapContext; pullStrategy?: PullStrategyFactory; logger?: Logger },
): Promise<PatientDetail> {
  const pulled = await (await onePatient(client, model, input.asOf, input.pullStrategy, input.logger)).pull([input.patientId]);
  const batch = await scoreBatch([input.patientId], pulled, {
    models: [model],
    asOf: input.asOf,
    identifierSystem: input.identifierSystem,
    explain: false,
    mapContext: input.mapContext,
    recorded: input.asOf,
  });
  const row = batch.entries[0]?.row;
  if (!row) throw new AdapterError('not-found', 'the patient of this outcome is no longer on the source server');
  const card = model.runner.card;
  const identifier = `${input.identifierSystem}|${assessmentIdentifierValue(card.id, card.version, input.patientId, input.asOf)}`;
  let riskAssessment = await first<RiskAssessment>(client, 'RiskAssessment', { identifier, _count: '1' });
  let riskAssessmentFrom: PatientDetail['riskAssessmentFrom'] = riskAssessment ? 'this-run' : undefined;
  if (!riskAssessment) {
    riskAssessment = await latestAssessment(client, input.patientId, card.id, input.identifierSystem);
    if (riskAssessment) riskAssessmentFrom = 'earlier';
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
    skipReason: batch.entries[0].status === 'skipped' ? batch.entries[0].reason : undefined,
    skipDetail: batch.entries[0].status === 'skipped' ? batch.entries[0].reasonDetail : undefined,
    counts: row.counts,
    used: row.basis,
    excluded: row.exclusions.filter((e) => !used.has(e.reference)).map((e) => ({ reference: e.reference, reason: e.reason, featureId: e.featureId, detail: e.detail })),
    partIssues: row.partIssues.map((e) => ({ reference: e.reference, reason: e.reason, detail: e.detail })),
    riskAssessment,
    riskAssessmentFrom,
    carePlans,
    recomputed: true,
  };
}

async function first<T extends FhirResource>(client: FhirClient, type: T['resourceType'], params: Record<string, string>): Promise<T | undefined> {
  for await (const page of client.search<T>(type, params)) return page.resources[0];
  return undefined;
}

/** The latest RiskAssessment this adapter wrote for the patient with the model (any version), by its as-of. */
async function latestAssessment(client: FhirClient, patientId: string, modelId: string, identifierSystem: string): Promise<RiskAssessment | undefined> {
  let latest: RiskAssessment | undefined;
  const params = { subject: `Patient/${patientId}`, identifier: `${identifierSystem}|`, _count: '100' };
  for await (const page of client.search<RiskAssessment>('RiskAssessment', params)) {
    for (const ra of page.resources) {
      if (!ra.method?.coding?.some((c) => c.system === MODEL_REGISTRY_SYSTEM && c.code === modelId)) continue;
      if (!latest || (ra.occurrenceDateTime ?? '') > (latest.occurrenceDateTime ?? '')) latest = ra;
    }
  }
  return latest;
}
