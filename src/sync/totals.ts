import type { AdapterError } from '../core/errors.js';
import type { ExclusionReason, FeatureRow, QualitativeRisk } from '../core/types.js';
import type { BatchEntry, ScoredBatch } from './batch.js';

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
  write?: 'created' | 'already-present' | 'dry-run';
  counts?: FeatureRow['counts'];
  excluded?: Partial<Record<ExclusionReason, number>>;
  /** Parts dropped from resources that were still used or considered (e.g. a report's bad attachment). */
  partIssues?: Partial<Record<ExclusionReason, number>>;
  explanation?: { featureId: string; contribution: number }[];
}

export interface ModelTotals {
  scored: number;
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
  return { scored: 0, skipped: 0, skippedByReason: {}, bands: {}, fetched: 0, used: 0, excluded: 0, excludedByReason: {}, partIssuesByReason: {}, created: 0, alreadyPresent: 0 };
}

export function emptyResult(asOf: Date, dryRun: boolean, models: { id: string; version: string }[]): SyncResult {
  return {
    asOf: asOf.toISOString(),
    dryRun,
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
  const { patientId, modelId, status, reason, row, prediction, write } = entry;
  if (!row) return { patientId, modelId, status, reason };
  const detail = { counts: row.counts, excluded: countReasons(row), partIssues: countPartIssues(row) };
  if (status !== 'scored' || !prediction) return { patientId, modelId, status, reason, ...detail };
  return {
    patientId,
    modelId,
    status,
    probability: prediction.probability,
    band: prediction.band,
    outputs: prediction.outputs,
    write,
    ...detail,
    explanation: prediction.explanation,
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
    if (entry.status === 'skipped') {
      t.skipped++;
      inc(t.skippedByReason, entry.reason ?? 'unspecified');
      continue;
    }
    t.scored++;
    inc(t.bands, entry.prediction!.band);
    if (entry.write === 'created') t.created++;
    else if (entry.write === 'already-present') t.alreadyPresent++;
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
    for (const key of ['scored', 'skipped', 'fetched', 'used', 'excluded', 'created', 'alreadyPresent'] as const) into[key] += t[key];
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
