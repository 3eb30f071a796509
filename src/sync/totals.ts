import type { AdapterError } from '../core/errors.js';
import type { ExclusionReason, FeatureRow, PredictionRationale, QualitativeRisk } from '../core/types.js';
import type { Applicability } from '../models/index.js';
import { assessmentStatus, type BatchEntry, type CarePlanCounts, type ScoredBatch } from './batch.js';

/**
 * What a run reports: one result per patient and model, and totals per model that reconcile
 * (fetched = used + excluded; scored + skipped + not found + failed = patients, per model). A batch is
 * counted only once it is complete, so a failed, interrupted or abandoned batch is never half-counted.
 */

export type PatientStatus = 'scored' | 'skipped' | 'not-found' | 'failed';

export interface PatientResult {
  patientId: string;
  modelId: string;
  status: PatientStatus;
  probability?: number;
  band?: QualitativeRisk;
  /** The model's other outputs (e.g. CURB-65's `score`). */
  outputs?: Record<string, number>;
  /** Why a patient was not scored. */
  reason?: string;
  /** What the reason rests on (e.g. `age 12 outside 19-79 years`, `7 of 10 inputs imputed (more than 5)`). */
  reasonDetail?: string;
  write?: 'created' | 'already-present' | 'dry-run';
  /** The status the RiskAssessment is written with: `preliminary` by the card's policy or in shadow mode. */
  riskAssessmentStatus?: 'final' | 'preliminary';
  /** Applicability of the score (also of a score the policy did not let through). */
  applicability?: PatientApplicability;
  /** The explanation for clinicians (values and units behind the largest contributions). */
  rationale?: PredictionRationale;
  /** CarePlan proposals of this patient: created, already there, older drafts revoked, clinicians' plans left alone. */
  carePlans?: CarePlanCounts;
  /** What was proposed and what was left out because the patient already has it, per PlanDefinition. */
  proposals?: { planDefinition: string; proposed: string[]; omitted: { activity: string; reason: string; evidence: string }[] }[];
  counts?: FeatureRow['counts'];
  excluded?: Partial<Record<ExclusionReason, number>>;
  /** Parts dropped from resources that were still used or considered (e.g. a report's bad attachment). */
  partIssues?: Partial<Record<ExclusionReason, number>>;
  explanation?: { featureId: string; contribution: number }[];
}

/** Applicability of one score as reported per patient. */
export interface PatientApplicability {
  decision: Applicability['decision'];
  /** Imputed input columns. */
  imputed: string[];
  /** Observed inputs outside the training range: the model-input value and range, and the measured ones when the card states them. */
  outOfRange: { input: string; side: 'below' | 'above'; value: number; min: number; max: number; measured?: { value?: number; min: number; max: number; unit: string } }[];
  ood: { assessed: false } | { assessed: true; error: number; threshold: number; flagged: boolean };
  /** The readable sentence written into the RiskAssessment's note. */
  text: string;
}

export interface ModelTotals {
  scored: number;
  /** Of the scored: RiskAssessments written (or planned) `preliminary` (the card's policy, or shadow mode). */
  preliminary: number;
  /** Scores assessed (scored, or skipped by the policy) with at least one imputed input, one input out of range, an OOD flag. */
  applicability: { imputed: number; outOfRange: number; outOfDistribution: number };
  /** CarePlan proposals: created, already there, older drafts revoked, clinicians' plans left untouched. */
  carePlans: CarePlanCounts;
  skipped: number;
  skippedByReason: Record<string, number>;
  bands: Partial<Record<QualitativeRisk, number>>;
  fetched: number;
  used: number;
  excluded: number;
  excludedByReason: Partial<Record<ExclusionReason, number>>;
  partIssuesByReason: Partial<Record<ExclusionReason, number>>;
  created: number;
  alreadyPresent: number;
}

/** Where a run stopped on an error every further step would hit too. */
export type AbortStage = 'models' | 'devices' | 'patient-list' | 'batch';

export interface SyncResult {
  asOf: string;
  dryRun: boolean;
  /** Shadow mode: RiskAssessments written `preliminary`, no CarePlans (silent validation before go-live). */
  shadow: boolean;
  models: { id: string; version: string }[];
  /** Patients of the complete batches (failed ones included). */
  patients: number;
  notFound: number;
  /** Requested ids the server did not return (deleted, merged, or not visible to us). */
  notFoundIds: string[];
  failed: number;
  failures: { patientIds: number; code: string; message: string }[];
  /** Resources returned by searches that could not be attributed to a patient of the batch. */
  unattributed: number;
  byModel: Record<string, ModelTotals>;
  batches: number;
  /** Every HTTP exchange of the run with the FHIR server (see runSync). */
  requests: number;
  /** Of those, attempts after the first of a request. */
  retries: number;
  durationMs: number;
  results: PatientResult[];
  /**
   * Set when the run stopped early on an error that every further batch would hit too (server down
   * before the first batch, authentication, an unsafe paging link, a bug, or the same permanent error
   * in several batches in a row). Batches before it are complete and counted; the caller reports the
   * partial result and this error.
   */
  aborted?: { code: string; message: string; stage: AbortStage; error: AdapterError };
  /**
   * Set when the caller stopped the run (a signal): no batch was taken after it; the batch in progress
   * was finished and counted, or, when the caller would not wait, abandoned and not counted at all
   * (`abandonedPatients`); a re-run with the same as-of completes it without duplicates.
   */
  interrupted?: { abandonedPatients: number };
}

export function emptyTotals(): ModelTotals {
  return {
    scored: 0,
    preliminary: 0,
    skipped: 0,
    skippedByReason: {},
    bands: {},
    applicability: { imputed: 0, outOfRange: 0, outOfDistribution: 0 },
    fetched: 0,
    used: 0,
    excluded: 0,
    excludedByReason: {},
    partIssuesByReason: {},
    created: 0,
    alreadyPresent: 0,
    carePlans: { created: 0, alreadyPresent: 0, revoked: 0, untouched: 0 },
  };
}

export function emptyResult(asOf: Date, dryRun: boolean, models: { id: string; version: string }[], options: { shadow?: boolean } = {}): SyncResult {
  return {
    asOf: asOf.toISOString(),
    dryRun,
    shadow: !!options.shadow,
    models,
    patients: 0,
    notFound: 0,
    notFoundIds: [],
    failed: 0,
    failures: [],
    unattributed: 0,
    byModel: Object.fromEntries(models.map((m) => [m.id, emptyTotals()])),
    batches: 0,
    requests: 0,
    retries: 0,
    durationMs: 0,
    results: [],
  };
}

const CARE_PLAN_KEYS = ['created', 'alreadyPresent', 'revoked', 'untouched'] as const;

function inc<K extends string>(map: Partial<Record<K, number>>, key: K, by = 1): void {
  map[key] = (map[key] ?? 0) + by;
}

function countPartIssues(row: FeatureRow): Partial<Record<ExclusionReason, number>> | undefined {
  if (!row.partIssues?.length) return undefined;
  const out: Partial<Record<ExclusionReason, number>> = {};
  for (const issue of row.partIssues) inc(out, issue.reason);
  return out;
}

/** One count per excluded resource (its first reason), so the counts add up to row.counts.excluded. */
function countReasons(row: FeatureRow): Partial<Record<ExclusionReason, number>> {
  const used = new Set(row.basis);
  const first = new Map<string, ExclusionReason>();
  for (const e of row.exclusions) if (!used.has(e.reference) && !first.has(e.reference)) first.set(e.reference, e.reason);
  const out: Partial<Record<ExclusionReason, number>> = {};
  for (const reason of first.values()) inc(out, reason);
  return out;
}

/** The report line of one batch entry. */
export function patientResult(entry: BatchEntry): PatientResult {
  const { patientId, modelId, status, reason, reasonDetail, row, prediction, write } = entry;
  const why = { ...(reason !== undefined ? { reason } : {}), ...(reasonDetail !== undefined ? { reasonDetail } : {}) };
  if (!row) return { patientId, modelId, status, ...why };
  const detail = { counts: row.counts, excluded: countReasons(row), partIssues: countPartIssues(row) };
  const applicability = entry.applicability ? { applicability: patientApplicability(entry.applicability) } : {};
  if (status !== 'scored' || !prediction) return { patientId, modelId, status, ...why, ...detail, ...applicability };
  const raStatus = assessmentStatus(entry);
  const carePlans = entry.plans[0]?.carePlans;
  return {
    patientId,
    modelId,
    status,
    probability: prediction.probability,
    band: prediction.band,
    outputs: prediction.outputs,
    write,
    ...(raStatus ? { riskAssessmentStatus: raStatus } : {}),
    ...detail,
    ...applicability,
    explanation: prediction.explanation,
    ...(prediction.rationale ? { rationale: prediction.rationale } : {}),
    ...(entry.carePlans ? { carePlans: entry.carePlans } : {}),
    ...(carePlans
      ? {
          proposals: carePlans.map((c) => ({
            planDefinition: c.proposal.planDefinition,
            proposed: c.proposal.proposed.map((p) => conceptText(p.code)),
            omitted: c.proposal.omitted.map((o) => ({ activity: conceptText(o.code), reason: o.reason, evidence: o.evidence })),
          })),
        }
      : {}),
  };
}

function conceptText(cc: { text?: string; coding?: { display?: string; code?: string }[] }): string {
  return cc.text ?? cc.coding?.find((c) => c.display)?.display ?? cc.coding?.[0]?.code ?? '?';
}

function patientApplicability(a: Applicability): PatientApplicability {
  return {
    decision: a.decision,
    imputed: a.imputed,
    outOfRange: a.outOfRange.map((o) => ({ input: o.featureId, side: o.side, value: o.value, min: o.min, max: o.max, ...(o.measured ? { measured: o.measured } : {}) })),
    ood: a.ood,
    text: a.text,
  };
}

/** What one complete batch adds to the run. */
export interface BatchOutcome {
  results: PatientResult[];
  byModel: Record<string, ModelTotals>;
  requests: number;
  unattributed: number;
  notFoundIds: string[];
}

/** Counts a batch whose write (if any) has completed. */
export function batchOutcome(batch: ScoredBatch, writeRequests = 0): BatchOutcome {
  const byModel: Record<string, ModelTotals> = {};
  const results: PatientResult[] = [];
  for (const entry of batch.entries) {
    results.push(patientResult(entry));
    if (entry.status === 'not-found') continue;
    const t = (byModel[entry.modelId] ??= emptyTotals());
    const row = entry.row!;
    t.fetched += row.counts.fetched;
    t.used += row.counts.used;
    t.excluded += row.counts.excluded;
    for (const [reason, n] of Object.entries(countReasons(row))) inc(t.excludedByReason, reason as ExclusionReason, n);
    for (const [reason, n] of Object.entries(countPartIssues(row) ?? {})) inc(t.partIssuesByReason, reason as ExclusionReason, n);
    const a = entry.applicability;
    if (a) {
      if (a.imputed.length) t.applicability.imputed++;
      if (a.outOfRange.length) t.applicability.outOfRange++;
      if (a.ood.assessed && a.ood.flagged) t.applicability.outOfDistribution++;
    }
    if (entry.status === 'skipped') {
      t.skipped++;
      inc(t.skippedByReason, entry.reason ?? 'unspecified');
      continue;
    }
    t.scored++;
    inc(t.bands, entry.prediction!.band);
    if (assessmentStatus(entry) === 'preliminary') t.preliminary++;
    if (entry.write === 'created') t.created++;
    else if (entry.write === 'already-present') t.alreadyPresent++;
    if (entry.carePlans) for (const key of CARE_PLAN_KEYS) t.carePlans[key] += entry.carePlans[key];
  }
  return {
    results,
    byModel,
    requests: batch.pulled.requests + writeRequests,
    unattributed: batch.pulled.unattributed,
    notFoundIds: batch.pulled.missingPatients,
  };
}

export function mergeOutcome(result: SyncResult, outcome: BatchOutcome, patients: number): void {
  result.batches++;
  result.patients += patients;
  result.requests += outcome.requests;
  result.unattributed += outcome.unattributed;
  result.notFound += outcome.notFoundIds.length;
  result.notFoundIds.push(...outcome.notFoundIds);
  for (const [id, t] of Object.entries(outcome.byModel)) {
    const into = (result.byModel[id] ??= emptyTotals());
    for (const key of ['scored', 'preliminary', 'skipped', 'fetched', 'used', 'excluded', 'created', 'alreadyPresent'] as const) into[key] += t[key];
    for (const key of ['imputed', 'outOfRange', 'outOfDistribution'] as const) into.applicability[key] += t.applicability[key];
    for (const key of CARE_PLAN_KEYS) into.carePlans[key] += t.carePlans[key];
    for (const key of ['skippedByReason', 'bands', 'excludedByReason', 'partIssuesByReason'] as const) {
      for (const [k, n] of Object.entries(t[key])) inc(into[key] as Record<string, number>, k, n as number);
    }
  }
}

/** Counts a batch that failed as a whole: every patient `failed` for every model, nothing else counted. */
export function failedBatchOutcome(result: SyncResult, patientIds: string[], modelIds: string[], error: AdapterError): PatientResult[] {
  result.batches++;
  result.patients += patientIds.length;
  result.failed += patientIds.length;
  result.failures.push({ patientIds: patientIds.length, code: error.code, message: error.message });
  return patientIds.flatMap((patientId) => modelIds.map((modelId) => ({ patientId, modelId, status: 'failed' as const, reason: error.code })));
}
