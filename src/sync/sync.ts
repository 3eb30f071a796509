import { performance } from 'node:perf_hooks';
import { chunk } from '../core/chunk.js';
import { systemClock, type Clock } from '../core/clock.js';
import { AdapterError, toAdapterError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { ExclusionReason, FeatureRow, QualitativeRisk } from '../core/types.js';
import type { FhirClient } from '../fhir/client.js';
import { listPatientIds, pullBatch, type PullResult, type PullSpec } from '../fhir/pull.js';
import { lookbackStart, mapPatient, observationCodes } from '../features/index.js';
import { bandFor, explainBatch } from '../models/index.js';
import { planAssessment, type AssessmentPlan } from '../writeback/plan.js';
import { FhirWriter } from '../writeback/writer.js';
import type { SyncModel } from './models.js';

/**
 * The orchestrator: the one place that wires pull -> map -> infer -> plan -> write, batch by batch.
 * Each batch is idempotent (deterministic identifiers + conditional creates), so a retried or repeated
 * batch writes nothing new. The next batch is pulled while the current one is mapped, scored and written,
 * and the population is never held in memory: `--all` streams patient ids page by page.
 */

export interface SyncOptions {
  asOf: Date;
  /** Explicit patients; when absent, every Patient on the server (streamed). */
  patientIds?: string[];
  dryRun?: boolean;
  batchSize?: number;
  identifierSystem: string;
  /** Add occlusion explanations to each prediction (default true). */
  explain?: boolean;
  /** Keep per-patient results in the returned result (default true; off for very large runs). */
  collectPatients?: boolean;
  logger?: Logger;
  clock?: Clock;
  onProgress?: (progress: { patientsDone: number; batchesDone: number }) => void;
  onPatientResult?: (result: PatientResult) => void;
}

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

export interface SyncResult {
  asOf: string;
  dryRun: boolean;
  models: { id: string; version: string }[];
  patients: number;
  notFound: number;
  failed: number;
  failures: { patientIds: number; code: string; message: string }[];
  /** Resources returned by searches that could not be attributed to a patient of the batch. */
  unattributed: number;
  byModel: Record<string, ModelTotals>;
  batches: number;
  requests: number;
  durationMs: number;
  results: PatientResult[];
  /**
   * Set when the run stopped early on an error that every further batch would hit too (authentication,
   * an unsafe paging link, a bug, or the same permanent error in several batches in a row). Batches
   * before it are complete and counted; the caller reports the partial result and this error.
   */
  aborted?: { code: string; message: string; error: AdapterError };
}

function emptyTotals(): ModelTotals {
  return { scored: 0, skipped: 0, skippedByReason: {}, bands: {}, fetched: 0, used: 0, excluded: 0, excludedByReason: {}, partIssuesByReason: {}, created: 0, alreadyPresent: 0 };
}

function inc<K extends string>(map: Partial<Record<K, number>>, key: K, by = 1): void {
  map[key] = (map[key] ?? 0) + by;
}

/** One pull specification covering every model of the run (one search per resource type per batch). */
export function pullSpecFor(models: SyncModel[], asOf: Date): PullSpec {
  const codes = new Map<string, { system: string; code: string }>();
  let since: Date | undefined;
  let reportsSince: Date | undefined;
  let imagingSince: Date | undefined;
  let wantsReports = false;
  let wantsImaging = false;
  for (const { mapping } of models) {
    for (const c of observationCodes(mapping)) codes.set(`${c.system}|${c.code}`, c);
    const start = lookbackStart(mapping, asOf);
    if (start && (!since || start < since)) since = start;
    for (const f of mapping.features) {
      if (f.source.kind === 'report-finding') {
        wantsReports = true;
        if (start && (!reportsSince || start < reportsSince)) reportsSince = start;
      }
      if (f.source.kind === 'imaging') {
        wantsImaging = true;
        if (start && (!imagingSince || start < imagingSince)) imagingSince = start;
      }
    }
  }
  return {
    observationCodes: [...codes.values()],
    observationSince: since,
    reports: wantsReports ? { since: reportsSince } : undefined,
    imaging: wantsImaging ? { since: imagingSince } : undefined,
  };
}

async function* patientBatches(client: FhirClient, options: SyncOptions, batchSize: number): AsyncGenerator<string[]> {
  if (options.patientIds) {
    yield* chunk([...new Set(options.patientIds)], batchSize);
    return;
  }
  // Offset paging over a population that changes during the run can return an id twice; a patient is
  // scored once per run. Only ids are remembered (tens of bytes each), never records.
  const seen = new Set<string>();
  let pending: string[] = [];
  for await (const page of listPatientIds(client, batchSize)) {
    for (const id of page) {
      if (seen.has(id)) continue;
      seen.add(id);
      pending.push(id);
    }
    while (pending.length >= batchSize) {
      yield pending.slice(0, batchSize);
      pending = pending.slice(batchSize);
    }
  }
  if (pending.length) yield pending;
}

/** Batches pulled ahead of the one being processed (each is at most batchSize patients' data). */
const PREFETCH_BATCHES = 2;

/** Errors every further batch would hit as well: stop the run instead of failing batch after batch. */
const RUN_SCOPED: ReadonlySet<string> = new Set(['fhir-auth', 'fhir-unsafe-link', 'config-invalid', 'internal']);
/** The same permanent error this many batches in a row is systematic, not data-specific. */
const MAX_CONSECUTIVE_PERMANENT = 3;

function abortWith(error: AdapterError): NonNullable<SyncResult['aborted']> {
  return { code: error.code, message: error.message, error };
}

interface PulledBatch {
  ids: string[];
  pull?: PullResult;
  error?: AdapterError;
}

export async function runSync(client: FhirClient, models: SyncModel[], options: SyncOptions): Promise<SyncResult> {
  const started = performance.now();
  const logger = options.logger ?? silentLogger;
  const clock = options.clock ?? systemClock;
  const batchSize = options.batchSize ?? 100;
  const collect = options.collectPatients ?? true;
  const spec = pullSpecFor(models, options.asOf);
  const writer = new FhirWriter(client, options.identifierSystem, logger);
  const result: SyncResult = {
    asOf: options.asOf.toISOString(),
    dryRun: !!options.dryRun,
    models: models.map((m) => ({ id: m.runner.card.id, version: m.runner.card.version })),
    patients: 0,
    notFound: 0,
    failed: 0,
    failures: [],
    unattributed: 0,
    byModel: Object.fromEntries(models.map((m) => [m.runner.card.id, emptyTotals()])),
    batches: 0,
    requests: 0,
    durationMs: 0,
    results: [],
  };
  const emit = (r: PatientResult) => {
    if (collect) result.results.push(r);
    options.onPatientResult?.(r);
  };

  const devices = new Map<string, string>();
  if (!options.dryRun) {
    for (const m of models) devices.set(m.runner.card.id, await writer.ensureDevice(m.runner.card));
  }

  const batches = patientBatches(client, options, batchSize)[Symbol.asyncIterator]();
  const pullNext = async (): Promise<PulledBatch | undefined> => {
    const next = await batches.next();
    if (next.done) return undefined;
    try {
      return { ids: next.value, pull: await pullBatch(client, next.value, spec, options.asOf, { logger }) };
    } catch (err) {
      // Decided by the loop: a failed batch, or an abort when every batch would fail the same way.
      return { ids: next.value, error: toAdapterError(err, 'internal', 'pull') };
    }
  };

  // Pull the next batches while this one is mapped, scored and written, so the server always has work.
  const queue: Promise<PulledBatch | undefined>[] = [];
  const enqueue = () => {
    const p = pullNext();
    p.catch(() => undefined); // surfaced when awaited
    queue.push(p);
  };
  for (let i = 0; i < PREFETCH_BATCHES; i++) enqueue();
  const drain = () => Promise.allSettled(queue.splice(0));
  let consecutivePermanent = 0;
  for (;;) {
    let batch: PulledBatch | undefined;
    try {
      batch = await queue.shift()!;
    } catch (err) {
      result.aborted = abortWith(toAdapterError(err, 'internal', 'pull'));
      await drain();
      break;
    }
    if (!batch) {
      await drain();
      break;
    }
    enqueue();
    const t0 = performance.now();
    try {
      if (batch.error) throw batch.error;
      const outcome = await processBatch(batch.ids, batch.pull!, models, options, writer, devices, clock);
      mergeOutcome(result, outcome);
      for (const r of outcome.results) emit(r);
      consecutivePermanent = 0;
    } catch (err) {
      const e = toAdapterError(err, 'internal', 'batch');
      if (!e.transient) consecutivePermanent++;
      if (RUN_SCOPED.has(e.code) || consecutivePermanent >= MAX_CONSECUTIVE_PERMANENT) {
        result.aborted = abortWith(e);
        await drain();
        logger.error({ code: e.code, batches: result.batches }, 'sync aborted');
        break;
      }
      // The batch fails as a whole (nothing of it is counted as scored): a transient failure (server down
      // after retries) or data this batch alone carries (a rejected transaction, a non-finite model
      // input). The run goes on and reports it, so a nightly job can retry just these patients.
      result.failed += batch.ids.length;
      result.failures.push({ patientIds: batch.ids.length, code: e.code, message: e.message });
      for (const id of batch.ids) for (const m of models) emit({ patientId: id, modelId: m.runner.card.id, status: 'failed', reason: e.code });
      logger.warn({ code: e.code, transient: e.transient, patients: batch.ids.length }, 'batch failed');
    }
    result.batches++;
    result.patients += batch.ids.length;
    logger.info({ batch: result.batches, patients: batch.ids.length, ms: Math.round(performance.now() - t0) }, 'batch done');
    options.onProgress?.({ patientsDone: result.patients, batchesDone: result.batches });
  }
  result.durationMs = Math.round(performance.now() - started);
  return result;
}

/** What one batch produced; merged into the run's result only once the batch has fully succeeded. */
interface BatchOutcome {
  results: PatientResult[];
  byModel: Record<string, ModelTotals>;
  requests: number;
  unattributed: number;
  notFound: number;
}

function mergeOutcome(result: SyncResult, outcome: BatchOutcome): void {
  result.requests += outcome.requests;
  result.unattributed += outcome.unattributed;
  result.notFound += outcome.notFound;
  for (const [id, t] of Object.entries(outcome.byModel)) {
    const into = result.byModel[id];
    for (const key of ['scored', 'skipped', 'fetched', 'used', 'excluded', 'created', 'alreadyPresent'] as const) into[key] += t[key];
    for (const key of ['skippedByReason', 'bands', 'excludedByReason', 'partIssuesByReason'] as const) {
      for (const [k, n] of Object.entries(t[key])) inc(into[key] as Record<string, number>, k, n as number);
    }
  }
}

async function processBatch(
  ids: string[],
  pull: PullResult,
  models: SyncModel[],
  options: SyncOptions,
  writer: FhirWriter,
  devices: Map<string, string>,
  clock: Clock,
): Promise<BatchOutcome> {
  const outcome: BatchOutcome = {
    results: [],
    byModel: Object.fromEntries(models.map((m) => [m.runner.card.id, emptyTotals()])),
    requests: pull.requests,
    unattributed: pull.unattributed.length,
    notFound: pull.missingPatients.length,
  };
  for (const id of pull.missingPatients) {
    for (const m of models) outcome.results.push({ patientId: id, modelId: m.runner.card.id, status: 'not-found', reason: 'patient-not-found' });
  }
  const plans: AssessmentPlan[] = [];
  const scoredResults: PatientResult[] = [];
  const recorded = clock.now();
  const uniqueIds = [...new Set(ids)];

  for (const model of models) {
    const card = model.runner.card;
    const totals = outcome.byModel[card.id];
    const rows: FeatureRow[] = [];
    for (const id of uniqueIds) {
      const record = pull.records.get(id);
      if (!record) continue;
      const row = mapPatient(model.mapping, record, options.asOf);
      totals.fetched += row.counts.fetched;
      totals.used += row.counts.used;
      totals.excluded += row.counts.excluded;
      const excluded = countReasons(row);
      for (const [reason, n] of Object.entries(excluded)) inc(totals.excludedByReason, reason as ExclusionReason, n);
      const partIssues = countPartIssues(row);
      for (const [reason, n] of Object.entries(partIssues ?? {})) inc(totals.partIssuesByReason, reason as ExclusionReason, n);
      if (row.skipReason) {
        totals.skipped++;
        inc(totals.skippedByReason, row.skipReason);
        outcome.results.push({ patientId: id, modelId: card.id, status: 'skipped', reason: row.skipReason, counts: row.counts, excluded, partIssues });
        continue;
      }
      rows.push(row);
    }
    if (rows.length === 0) continue;

    const d = model.columns.length;
    const flat = new Float32Array(rows.length * d);
    rows.forEach((row, i) => flat.set(row.values, i * d));
    // Every output of the model: the probability, and any others the card declares (CURB-65's score).
    const outputs = await model.runner.run(flat, rows.length);
    const probabilities = outputs[card.onnx.output.name];
    const extraOutputs = card.onnx.additionalOutputs.map((o) => o.name);
    const explanations = options.explain === false ? undefined : await explainBatch(model.runner, rows.map((r) => r.values));

    for (let i = 0; i < rows.length; i++) {
      const row = rows[i];
      const probability = probabilities[i];
      if (!Number.isFinite(probability) || probability < 0 || probability > 1) {
        throw new AdapterError('inference-failed', `model ${card.id}: output ${probability} is not a probability`);
      }
      const band = bandFor(card, probability);
      const explanation = explanations?.[i];
      const extra = extraOutputs.length ? Object.fromEntries(extraOutputs.map((name) => [name, outputs[name][i]])) : undefined;
      const prediction = { patientId: row.patientId, modelId: card.id, modelVersion: card.version, probability, band, explanation, outputs: extra };
      totals.scored++;
      inc(totals.bands, band);
      const patientResult: PatientResult = {
        patientId: row.patientId,
        modelId: card.id,
        status: 'scored',
        probability,
        band,
        outputs: extra,
        counts: row.counts,
        excluded: countReasons(row),
        partIssues: countPartIssues(row),
        explanation,
        write: options.dryRun ? 'dry-run' : undefined,
      };
      scoredResults.push(patientResult);
      if (!options.dryRun) {
        plans.push(
          planAssessment(
            {
              model: card,
              prediction,
              patientId: row.patientId,
              asOf: options.asOf,
              basis: assessmentBasis(model, row),
              deviceReference: devices.get(card.id)!,
              identifierSystem: options.identifierSystem,
            },
            recorded,
          ),
        );
      }
    }
  }

  if (plans.length) {
    const written = await writer.write(plans);
    outcome.requests += written.requests;
    const created = new Set(written.createdIdentifiers);
    const byKey = new Map(scoredResults.map((r) => [`${r.modelId}|${r.patientId}`, r]));
    for (const plan of plans) {
      const isNew = created.has(plan.identifier.value);
      const totals = outcome.byModel[plan.modelId];
      if (isNew) totals.created++;
      else totals.alreadyPresent++;
      const r = byKey.get(`${plan.modelId}|${plan.patientId}`);
      if (r) r.write = isNew ? 'created' : 'already-present';
    }
  }
  outcome.results.push(...scoredResults);
  return outcome;
}

/**
 * The RiskAssessment's basis: the resources whose values entered the score, i.e. the row's basis plus the
 * Patient itself when its birth date or gender was an input (the row's counts cover fetched clinical
 * data only, so the Patient is added here, not in the mapping).
 */
function assessmentBasis(model: SyncModel, row: FeatureRow): string[] {
  const demographicsUsed = model.mapping.features.some((f) => {
    if (!f.input || (f.source.kind !== 'patient-age' && f.source.kind !== 'patient-sex')) return false;
    const keys = f.oneHot ? f.oneHot.map((c) => `${f.id}=${c}`) : [f.id];
    return keys.some((k) => row.raw[k] !== null && row.raw[k] !== undefined);
  });
  return demographicsUsed ? [`Patient/${row.patientId}`, ...row.basis] : row.basis;
}

function countPartIssues(row: FeatureRow): Partial<Record<ExclusionReason, number>> | undefined {
  if (!row.partIssues?.length) return undefined;
  const out: Partial<Record<ExclusionReason, number>> = {};
  for (const issue of row.partIssues) inc(out, issue.reason);
  return out;
}

function countReasons(row: FeatureRow): Partial<Record<ExclusionReason, number>> {
  // One count per excluded resource (its first reason), so the counts add up to row.counts.excluded.
  const used = new Set(row.basis);
  const first = new Map<string, ExclusionReason>();
  for (const e of row.exclusions) if (!used.has(e.reference) && !first.has(e.reference)) first.set(e.reference, e.reason);
  const out: Partial<Record<ExclusionReason, number>> = {};
  for (const reason of first.values()) inc(out, reason);
  return out;
}
