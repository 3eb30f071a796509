import { performance } from 'node:perf_hooks';
import { chunk } from '../core/chunk.js';
import { systemClock, type Clock } from '../core/clock.js';
import { AdapterError, toAdapterError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { FhirClient } from '../fhir/client.js';
import { listPatientIds, type PullResult } from '../fhir/pull.js';
import { createMapContext, type MapContext } from '../features/index.js';
import { analyzeReport } from '../nlp/index.js';
import { newTally, tallied } from '../fhir/traffic.js';
import { FhirWriter } from '../writeback/writer.js';
import { scoreBatch, type ScoredBatch } from './batch.js';
import { CarePlanStep, writeWithCarePlans } from './care-plans.js';
import type { SyncModel } from './models.js';
import { pullStrategyFor } from './pull-step.js';
import type { PullStrategy, PullStrategyFactory } from '../fhir/strategy.js';
import { batchOutcome, emptyResult, failedBatchOutcome, mergeOutcome, type AbortStage, type PatientResult, type SyncResult } from './totals.js';

/**
 * The run loop: the one place that drives pull -> batch step -> write, batch by batch. Each batch is
 * idempotent (deterministic identifiers + conditional creates), so a retried or repeated batch writes
 * nothing new. The next batches are pulled while the current one is scored and written, and the
 * population is never held in memory: `--all` streams patient ids page by page. The run always ends
 * with a result: errors before or between batches end it as `aborted`, a stop signal as `interrupted`.
 */

export interface SyncOptions {
  asOf: Date;
  /** Explicit patients; when absent, every Patient on the server (streamed). */
  patientIds?: string[];
  dryRun?: boolean;
  /**
   * Shadow mode: RiskAssessments are written `preliminary` and no CarePlan is proposed, for silent
   * validation of a model on a hospital's data before go-live.
   */
  shadow?: boolean;
  /** Propose CarePlans with the RiskAssessments, for models with proposal definitions (default true). */
  carePlans?: boolean;
  batchSize?: number;
  identifierSystem: string;
  /** Add occlusion explanations to each prediction (default true). */
  explain?: boolean;
  /** Keep per-patient results in the returned result (default true; off for very large runs). */
  collectPatients?: boolean;
  /** Services of the mapper; default: src/nlp's report analyzer. */
  mapContext?: MapContext;
  logger?: Logger;
  clock?: Clock;
  /** Stop taking batches: the batch in progress is finished and counted, then the run ends `interrupted`. */
  stop?: AbortSignal;
  /** Stop waiting for the batch in progress: it is abandoned, not counted, and the run ends `interrupted` at once. */
  abandon?: AbortSignal;
  /** Called with each scored batch before it is written: the caller may skip entries or drop plans. */
  beforeWrite?: (batch: ScoredBatch) => void | Promise<void>;
  onProgress?: (progress: { patientsDone: number; batchesDone: number }) => void;
  onPatientResult?: (result: PatientResult) => void;
  /** How batches are pulled: search (default), per-patient, bulk or auto (src/fhir/strategy.ts). */
  pullStrategy?: PullStrategyFactory;
}

/** The default services of the mapper: the clinical NLP of src/nlp for report findings. */
export function defaultMapContext(): MapContext {
  return createMapContext({ reportAnalyzer: analyzeReport });
}

async function* patientBatches(client: FhirClient, options: SyncOptions, batchSize: number, strategy: PullStrategy): AsyncGenerator<string[]> {
  if (options.patientIds) {
    yield* chunk([...new Set(options.patientIds)], batchSize);
    return;
  }
  // A strategy that brings its population (bulk: the staged Patients, each once, in id order).
  if (strategy.patients) {
    yield* strategy.patients(batchSize);
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

interface PulledBatch {
  ids: string[];
  pull?: PullResult;
  error?: AdapterError;
}

/** Resolves with the promise's value, or with `abandoned` when the signal fires first. */
function unlessAbandoned<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T | typeof ABANDONED> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.resolve(ABANDONED);
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(ABANDONED);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
const ABANDONED = Symbol('abandoned');

/**
 * Runs a sync. `requests` in the result counts every HTTP exchange the run made with the FHIR server
 * (Device registration, patient listing, pulls, writes, retries and read-backs, failed batches too);
 * `retries` the attempts after the first of a request.
 */
export async function runSync(client: FhirClient, models: SyncModel[], options: SyncOptions): Promise<SyncResult> {
  const tally = newTally();
  const result = await tallied(tally, () => syncRun(client, models, options));
  result.requests = tally.requests;
  result.retries = tally.retries;
  return result;
}

async function syncRun(client: FhirClient, models: SyncModel[], options: SyncOptions): Promise<SyncResult> {
  const started = performance.now();
  const logger = options.logger ?? silentLogger;
  const clock = options.clock ?? systemClock;
  const batchSize = options.batchSize ?? 100;
  const collect = options.collectPatients ?? true;
  const mapContext = options.mapContext ?? defaultMapContext();
  const writer = new FhirWriter(client, options.identifierSystem, logger);
  const modelIds = models.map((m) => m.runner.card.id);
  const result = emptyResult(
    options.asOf,
    !!options.dryRun,
    models.map((m) => ({ id: m.runner.card.id, version: m.runner.card.version })),
    { shadow: options.shadow },
  );
  const emit = (r: PatientResult) => {
    if (collect) result.results.push(r);
    options.onPatientResult?.(r);
  };
  const finish = () => {
    result.durationMs = Math.round(performance.now() - started);
    return result;
  };
  const abort = (err: unknown, stage: AbortStage) => {
    const error = toAdapterError(err, 'internal', stage);
    result.aborted = { code: error.code, message: error.message, stage, error };
    logger.error({ code: error.code, stage, batches: result.batches }, 'sync aborted');
  };
  const stopped = () => !!(options.stop?.aborted || options.abandon?.aborted);

  // The model Devices first: every RiskAssessment of the run names its model's Device.
  let devices: Map<string, string> | undefined;
  if (!options.dryRun) {
    devices = new Map();
    try {
      for (const m of models) {
        const reference = await unlessAbandoned(writer.ensureDevice(m.runner.card), options.abandon);
        if (reference === ABANDONED) break;
        devices.set(m.runner.card.id, reference);
      }
    } catch (err) {
      abort(err, 'devices');
      return finish();
    }
  }
  if (stopped()) {
    result.interrupted = { abandonedPatients: 0 };
    return finish();
  }

  let strategy: PullStrategy;
  try {
    strategy = await pullStrategyFor(models, options.asOf, client, options.pullStrategy, logger);
    logger.info({ strategy: strategy.name, reason: strategy.reason }, 'pull strategy');
  } catch (err) {
    abort(err, 'patient-list');
    return finish();
  }
  const pull = (_client: FhirClient, ids: string[]) => strategy.pull(ids);
  // CarePlan proposals: not in a dry run (nothing is written), nor in shadow mode (silent validation).
  // Their care reads go the way the strategy's pulls go (a server refusing multi-patient searches refuses both).
  const carePlanStep =
    options.dryRun || options.shadow || options.carePlans === false
      ? undefined
      : new CarePlanStep(client, models, { asOf: options.asOf, identifierSystem: options.identifierSystem, readCare: strategy.readCare, logger });
  const batches = patientBatches(client, options, batchSize, strategy)[Symbol.asyncIterator]();
  const pullNext = async (): Promise<PulledBatch | undefined> => {
    const next = await batches.next();
    if (next.done) return undefined;
    try {
      return { ids: next.value, pull: await pull(client, next.value) };
    } catch (err) {
      // Decided by the loop: a failed batch, or an abort when every batch would fail the same way.
      return { ids: next.value, error: toAdapterError(err, 'internal', 'pull') };
    }
  };

  // Pull the next batches while this one is scored and written, so the server always has work.
  const queue: Promise<PulledBatch | undefined>[] = [];
  const enqueue = () => {
    const p = pullNext();
    p.catch(() => undefined); // surfaced when awaited
    queue.push(p);
  };
  for (let i = 0; i < PREFETCH_BATCHES; i++) enqueue();
  // Prefetched batches not taken are dropped: their patients were never started, so nothing is lost. The
  // run waits for their pulls to end (so nothing reads after it returns, e.g. from staging a bulk run
  // purges), unless a second signal asked it not to wait.
  const drain = async () => {
    if (!options.abandon?.aborted) await Promise.allSettled(queue.splice(0));
  };
  let consecutivePermanent = 0;

  // The batch whose write is in flight while the next one is scored: the server works on that write (and
  // on the next pulls) while this process maps and infers, instead of waiting for it. Batches are counted
  // in order, each once its write has ended.
  let writing: { ids: string[]; t0: number; work: Promise<ReturnType<typeof batchOutcome>> } | undefined;
  /** Waits for the batch being written and counts it; false when the run ends here (aborted or abandoned). */
  const settle = async (): Promise<boolean> => {
    if (!writing) return true;
    const { ids, t0, work } = writing;
    writing = undefined;
    try {
      const outcome = await unlessAbandoned(work, options.abandon);
      if (outcome === ABANDONED) {
        // Not counted at all: a re-run with the same as-of finds what it wrote and completes the rest.
        result.interrupted = { abandonedPatients: ids.length };
        logger.warn({ patients: ids.length }, 'batch abandoned');
        return false;
      }
      mergeOutcome(result, outcome, ids.length);
      for (const r of outcome.results) emit(r);
      consecutivePermanent = 0;
    } catch (err) {
      const e = toAdapterError(err, 'internal', 'batch');
      if (!e.transient) consecutivePermanent++;
      if (RUN_SCOPED.has(e.code) || consecutivePermanent >= MAX_CONSECUTIVE_PERMANENT) {
        abort(e, 'batch');
        return false;
      }
      // The batch fails as a whole (nothing of it is counted as scored): a transient failure (server down
      // after retries) or data this batch alone carries (a rejected transaction, a non-finite model
      // input). The run goes on and reports it, so a nightly job can retry just these patients.
      for (const r of failedBatchOutcome(result, ids, modelIds, e)) emit(r);
      logger.warn({ code: e.code, transient: e.transient, patients: ids.length }, 'batch failed');
    }
    logger.info({ batch: result.batches, patients: ids.length, ms: Math.round(performance.now() - t0) }, 'batch done');
    options.onProgress?.({ patientsDone: result.patients, batchesDone: result.batches });
    return true;
  };

  for (;;) {
    if (stopped()) {
      // The batch being written is finished and counted (a second signal abandons it), then the run ends.
      if (options.abandon?.aborted) {
        result.interrupted = { abandonedPatients: writing?.ids.length ?? 0 };
        writing = undefined;
        break;
      }
      if (await settle()) result.interrupted = { abandonedPatients: 0 };
      await drain();
      break;
    }
    let batch: PulledBatch | undefined | typeof ABANDONED;
    try {
      batch = await unlessAbandoned(queue.shift()!, options.abandon);
    } catch (err) {
      if (await settle()) abort(err, 'patient-list');
      await drain();
      break;
    }
    if (batch === ABANDONED) {
      result.interrupted = { abandonedPatients: writing?.ids.length ?? 0 };
      break;
    }
    if (!batch) {
      await settle();
      await drain();
      break;
    }
    if (!options.stop?.aborted) enqueue();
    const t0 = performance.now();
    const { ids, pull: pulled, error } = batch;
    const recorded = clock.now();
    const scoring = error
      ? Promise.reject(error)
      : scoreBatch(ids, pulled!, {
          models,
          asOf: options.asOf,
          identifierSystem: options.identifierSystem,
          devices,
          explain: options.explain,
          mapContext,
          recorded,
          shadow: options.shadow,
        });
    scoring.catch(() => undefined); // surfaced through the write below
    // The previous batch first: batches are counted in order, and a run-ending failure there ends the run
    // before this batch writes anything (it is then dropped like a prefetched one).
    if (!(await settle())) {
      await drain();
      break;
    }
    // A stop that came meanwhile: this batch is not written (nothing of it was); the loop's top ends the run.
    if (stopped()) continue;
    const work = (async () => {
      const scored = await scoring;
      await options.beforeWrite?.(scored);
      const written = await writeWithCarePlans(writer, scored, carePlanStep?.active ? carePlanStep : undefined, devices, recorded, logger);
      return batchOutcome(scored, written.requests);
    })();
    work.catch(() => undefined); // an abandoned batch's late failure is not reported
    writing = { ids, t0, work };
  }
  // Bulk: staged data is purged (or kept, as the source says) whatever became of the batches.
  await strategy.close?.().catch((err) => logger.warn({ code: toAdapterError(err).code }, 'pull strategy close failed'));
  return finish();
}
