import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type PgBoss from 'pg-boss';
import { chunk } from '../core/chunk.js';
import { systemClock, type Clock } from '../core/clock.js';
import { toAdapterError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { ServiceConfig } from '../config/sources.js';
import { bossDbFor, type Database, type Queryable } from '../db/database.js';
import { PatientScoreStore } from '../db/patient-scores.js';
import { RunStore, type FinalizeResult } from '../db/runs.js';
import { WatermarkStore } from '../db/watermarks.js';
import type { FhirClient } from '../fhir/client.js';
import { newTally, tallied } from '../fhir/traffic.js';
import { bossSettled, stopBoss } from './boss.js';
import type { BatchExecutor } from './executor.js';
import type { ServiceMetrics } from './metrics.js';
import {
  PATIENT_BATCH_DEAD,
  PATIENT_BATCH_QUEUE,
  RETENTION_QUEUE,
  SOURCE_RUN_DEAD,
  sourceRunQueue,
  type PatientBatchJob,
  type SourceRunJob,
} from './queues.js';
import type { ServiceBulkPulls } from '../sync/pull-strategies.js';
import { selectPatients, type Selection } from './selection.js';
import { runRetention } from './retention.js';
import { selectStagedPatients } from './staged-selection.js';

/**
 * A worker process's part of the service: it takes source-run jobs (select patients, fan out batch
 * jobs), batch jobs (execute, record, complete the run and move the watermarks when the last batch
 * succeeded), the dead-letter queues (batches whose retries are spent, or whose worker died on the last
 * attempt) and the daily retention job. Any number of workers on any number of machines can share one
 * database; pg-boss hands each job to one of them (SELECT ... FOR UPDATE SKIP LOCKED).
 *
 * Dead workers: a running batch records a heartbeat; every worker looks for batches whose heartbeat is
 * older than `heartbeatTimeoutSeconds` and fails their jobs, so they are retried (on any worker) without
 * waiting for the job's expiry (`batchTimeoutSeconds`, the backstop). Batches are idempotent, so a batch
 * taken over from a dead worker writes nothing twice.
 *
 * The caller has created the queues and schedules (`ensureQueues`).
 *
 * Shutdown (SIGTERM): stop fetching, let the running batches finish for `shutdownGraceSeconds`, then
 * release what is still running (their jobs fail and are retried elsewhere).
 */
export interface WorkerDeps {
  db: Database;
  boss: PgBoss;
  config: ServiceConfig;
  executor: BatchExecutor;
  clientFor(sourceId: string): FhirClient;
  /** Bulk Data runs (bulk sources, auto ones choosing it); without it every run searches. */
  bulk?: ServiceBulkPulls;
  clock?: Clock;
  logger?: Logger;
  metrics?: ServiceMetrics;
  /** Name of this worker in batch records (default host:pid:random). */
  workerId?: string;
}

export interface Worker {
  readonly id: string;
  /** A run of the source was just queued by this process: take it now rather than at the next poll. */
  wake(sourceId: string): void;
  stop(options?: { graceSeconds?: number }): Promise<void>;
}

/** What a failed job's output keeps: the code and message only (no cause, no stack: nothing but what we wrote). */
function jobError(e: { code: string; message: string }): Error {
  const safe = new Error(`${e.code}: ${e.message}`);
  safe.stack = safe.message;
  return safe;
}

/** How long a stop waits for released batches to record their end before the database closes. */
const RELEASE_WAIT_MS = 10_000;

export async function startWorker(deps: WorkerDeps): Promise<Worker> {
  const logger = (deps.logger ?? silentLogger).child({ component: 'worker' });
  const clock = deps.clock ?? systemClock;
  const { db, boss, config } = deps;
  const w = config.worker;
  const id = deps.workerId ?? `${hostname()}:${process.pid}:${randomBytes(2).toString('hex')}`;
  const runs = new RunStore(db);
  const watermarks = new WatermarkStore(db);
  const scores = new PatientScoreStore(db);
  const sources = new Map(config.sources.map((s) => [s.id, s]));
  const inflight = new Set<AbortController>();
  /** Job handlers running, so a stop can wait for them to record how they ended. */
  const running = new Set<Promise<unknown>>();

  /** After a run finished: watermarks (only when every batch succeeded), metrics, a log line. */
  const onFinalized = async (tx: Queryable, result: FinalizeResult | undefined): Promise<void> => {
    if (!result?.finished) return;
    const run = result.run;
    if (result.state === 'succeeded' && run.changesUntil) {
      await watermarks.advance(tx, run.sourceId, run.modelIds, new Date(run.changesUntil), run.id);
    }
  };
  const reportFinalized = async (result: FinalizeResult | undefined) => {
    if (!result?.finished) return;
    deps.metrics?.runsFinished.inc({ source: result.run.sourceId, state: result.state });
    logger.info({ run: result.run.id, source: result.run.sourceId, state: result.state, errorCode: result.run.errorCode ?? undefined }, 'run finished');
    // Staged data is patient data: gone when the run is over, unless the source keeps it for `_since`.
    const source = sources.get(result.run.sourceId);
    if (result.run.selection?.bulk && source && deps.bulk) {
      await deps.bulk.finished(source, result.run.selection.bulk.exportId).catch((err) => logger.warn({ source: source.id, err: (err as Error).message }, 'purging staged data failed; the retention job purges it'));
    }
  };

  const handleSourceRun = async (job: PgBoss.Job<SourceRunJob>): Promise<unknown> => {
    const source = sources.get(job.data.sourceId);
    if (!source) {
      logger.warn({ source: job.data.sourceId }, 'run job for a source that is not configured; dropped');
      if (job.data.runId) await runs.failRun(job.data.runId, 'source-unknown', `source ${job.data.sourceId} is not in the sources file`);
      return { dropped: 'source-unknown' };
    }
    let run = job.data.runId ? await runs.get(job.data.runId) : undefined;
    if (!job.data.runId) {
      // A scheduled run's id is its job's id, so a retried job resumes its own run instead of finding
      // the source "already running" (by itself).
      run = await runs.get(job.id);
      if (!run) {
        const created = await runs.create({ id: job.id, sourceId: source.id, trigger: 'schedule', asOf: clock.now(), modelIds: source.models });
        deps.metrics?.runTriggers.inc({ source: source.id, result: created.created ? 'started' : 'already-running' });
        if (!created.created) {
          logger.warn({ source: source.id, activeRun: created.activeRunId }, 'scheduled run skipped: the source is already running');
          return { skipped: 'already-running', activeRunId: created.activeRunId };
        }
        run = created.run;
      }
    }
    // Deleted by retention, or fanned out already (this is a redelivery after a crash): nothing to do.
    if (!run || (run.state !== 'queued' && run.state !== 'selecting')) return { runId: run?.id, state: run?.state };
    await runs.markSelecting(run.id, job.id);
    let selection: Selection;
    let staged = false;
    // A shutdown stops a Bulk Data export between polls and files; the retried job resumes it.
    const controller = new AbortController();
    inflight.add(controller);
    // Reported like a batch, so a selection whose worker died is released within the heartbeat timeout.
    const selectingRun = run.id;
    const heartbeat = setInterval(() => {
      runs.selectionHeartbeat(selectingRun, job.id).catch((err) => logger.warn({ err: (err as Error).message }, 'selection heartbeat failed'));
    }, w.heartbeatSeconds * 1000);
    heartbeat.unref();
    try {
      const client = deps.clientFor(source.id);
      const selectionDeps = { client, watermarks, scores, clock, logger: deps.logger };
      // Every exchange of a staged selection: auto's probe, the export (kick-off, polls, files, the
      // DELETE) and the population read.
      const tally = newTally();
      const exporting = await tallied(tally, async () => deps.bulk?.open(source, run!.modelIds, new Date(run!.asOf), controller.signal));
      if (exporting) {
        selection = await tallied(tally, () =>
          selectStagedPatients({ ...selectionDeps, staging: exporting.staging, runs }, source, run!.modelIds, exporting.bulk, { full: job.data.full, reason: exporting.reason }),
        );
        selection.selection.requests = tally.requests;
        staged = true;
      } else {
        selection = await selectPatients(selectionDeps, source, run.modelIds, { full: job.data.full });
      }
    } catch (err) {
      const e = toAdapterError(err, 'internal', 'selection');
      await runs.noteSelectionError(run.id, e.code, e.message);
      logger.warn({ run: run.id, source: source.id, code: e.code, transient: e.transient }, 'selecting the patients of a run failed; it will be retried');
      throw jobError(e);
    } finally {
      clearInterval(heartbeat);
      inflight.delete(controller);
    }
    const batches = chunk(selection.patientIds, source.options.batchSize);
    const runId = run.id;
    const finalized = await db.transaction(async (tx) => {
      const fannedOut = await runs.fanOut(tx, runId, {
        mode: selection.mode,
        changesSince: selection.changesSince,
        changesUntil: selection.changesUntil,
        selection: selection.selection,
        batchSizes: batches.map((b) => b.length),
      });
      // Failed meanwhile (its selection job expired and its retries were spent) or fanned out by
      // another attempt: this attempt's selection is dropped.
      if (!fannedOut) return 'not-selecting' as const;
      if (batches.length) {
        const jobs: PgBoss.JobInsert<PatientBatchJob>[] = batches.map((patientIds, seq) => ({
          name: PATIENT_BATCH_QUEUE,
          data: { runId, seq, sourceId: source.id, patientIds, modelIds: run!.modelIds, asOf: run!.asOf, ...(staged ? { staged } : {}) },
        }));
        for (const part of chunk(jobs, 500)) await boss.insert(part, { db: bossDbFor(tx) } as PgBoss.InsertOptions);
        return undefined;
      }
      const result = await runs.finalize(tx, runId);
      await onFinalized(tx, result);
      return result;
    });
    if (finalized === 'not-selecting') {
      logger.warn({ run: runId, source: source.id }, 'selection finished after the run left the selecting state; dropped');
      return { dropped: 'not-selecting' };
    }
    await reportFinalized(finalized);
    // This process's batch workers take the new batches now instead of at their next poll (other
    // processes poll as usual); a small incremental run is then not mostly waiting.
    if (batches.length) for (const workerId of batchWorkers) boss.notifyWorker(workerId);
    logger.info({ run: runId, source: source.id, mode: selection.mode, patients: selection.patientIds.length, batches: batches.length }, 'run fanned out');
    return { runId, batches: batches.length };
  };

  const handleBatch = async (job: PgBoss.JobWithMetadata<PatientBatchJob>): Promise<unknown> => {
    const d = job.data;
    const claim = await runs.claimBatch(d.runId, d.seq, job.id, id);
    if (!claim) return { skipped: 'already-succeeded' };
    const controller = new AbortController();
    inflight.add(controller);
    const heartbeat = setInterval(() => {
      runs.heartbeat(d.runId, d.seq, claim.attempt).catch((err) => logger.warn({ err: (err as Error).message }, 'heartbeat failed'));
    }, w.heartbeatSeconds * 1000);
    heartbeat.unref();
    const started = performance.now();
    try {
      const report = await deps.executor({
        runId: d.runId,
        batchSeq: d.seq,
        sourceId: d.sourceId,
        patientIds: d.patientIds,
        modelIds: d.modelIds,
        asOf: new Date(d.asOf),
        ...(d.staged ? { staged: true } : {}),
        signal: controller.signal,
      });
      const asOf = new Date(d.asOf);
      const result = await db.transaction(async (tx) => {
        const r = await runs.completeBatch(tx, {
          runId: d.runId,
          seq: d.seq,
          attempt: claim.attempt,
          outcomes: report.outcomes,
          exclusions: report.exclusions,
          requests: report.requests,
          durationMs: report.durationMs,
        });
        if (!r) return undefined;
        await scores.record(
          tx,
          d.sourceId,
          d.runId,
          report.outcomes
            .filter((o) => (o.status === 'scored' || o.status === 'skipped' || o.status === 'unchanged') && o.modelVersion)
            .map((o) => ({ patientId: o.patientId, modelId: o.modelId, modelVersion: o.modelVersion!, inputHash: o.inputHash ?? null, asOf })),
        );
        await onFinalized(tx, r);
        return r;
      });
      if (!result) {
        logger.warn({ run: d.runId, batch: d.seq }, 'batch finished after another worker took it over; its results were dropped');
        return { dropped: 'superseded' };
      }
      deps.metrics?.batches.inc({ result: 'succeeded' });
      deps.metrics?.batchDuration.observe((performance.now() - started) / 1000);
      for (const o of report.outcomes) deps.metrics?.patients.inc({ model: o.modelId, status: o.status, reason: o.reason ?? '' });
      await reportFinalized(result);
      logger.info({ run: d.runId, batch: d.seq, patients: d.patientIds.length, requests: report.requests, ms: Math.round(performance.now() - started) }, 'batch done');
      return { patients: d.patientIds.length };
    } catch (err) {
      const e = toAdapterError(err, 'internal', 'batch');
      const final = job.retryCount >= job.retryLimit;
      const result = await db.transaction(async (tx) => {
        const r = await runs.failBatch(tx, {
          runId: d.runId,
          seq: d.seq,
          attempt: claim.attempt,
          code: e.code,
          message: e.message,
          final,
          durationMs: performance.now() - started,
          patients: { patientIds: d.patientIds, modelIds: d.modelIds },
        });
        await onFinalized(tx, r);
        return r;
      });
      deps.metrics?.batches.inc({ result: final ? 'failed' : 'retried' });
      if (final) for (const m of d.modelIds) deps.metrics?.patients.inc({ model: m, status: 'failed', reason: e.code }, d.patientIds.length);
      await reportFinalized(result);
      logger.warn({ run: d.runId, batch: d.seq, code: e.code, transient: e.transient, attempt: job.retryCount + 1, final }, final ? 'batch failed for good' : 'batch failed; it will be retried');
      throw jobError(e);
    } finally {
      clearInterval(heartbeat);
      inflight.delete(controller);
    }
  };

  const handleDeadBatch = async (job: PgBoss.Job<PatientBatchJob>): Promise<void> => {
    const d = job.data;
    const result = await db.transaction(async (tx) => {
      const r = await runs.failBatch(tx, {
        runId: d.runId,
        seq: d.seq,
        code: 'worker-lost',
        message: 'the batch did not finish on its last attempt (worker died or the batch timed out)',
        final: true,
        patients: { patientIds: d.patientIds, modelIds: d.modelIds },
      });
      await onFinalized(tx, r);
      return r;
    });
    if (result) logger.warn({ run: d.runId, batch: d.seq }, 'batch failed for good: its last attempt did not finish');
    await reportFinalized(result);
  };

  const handleDeadRun = async (job: PgBoss.Job<SourceRunJob>): Promise<void> => {
    // The dead-letter job has an id of its own; the run is the source's active one (there is at most one).
    const run = job.data.runId ? await runs.get(job.data.runId) : await runs.activeRun(job.data.sourceId);
    if (run) await runs.failRun(run.id, 'selection-failed', 'selecting the patients failed on every attempt');
    logger.warn({ source: job.data.sourceId, run: run?.id }, 'run selection failed for good');
  };

  const handleRetention = async (): Promise<unknown> => {
    const report = await runRetention(db, config, clock);
    logger.info({ ...report, days: config.retentionDays }, 'retention cleanup');
    return report;
  };

  /** Releases selections and batches whose worker stopped reporting: their jobs fail now and are retried. */
  const reap = async (): Promise<void> => {
    for (const stale of await runs.staleSelections(w.heartbeatTimeoutSeconds)) {
      const queue = sourceRunQueue(stale.sourceId);
      const job = await boss.getJobById<SourceRunJob>(queue, stale.jobId);
      if (job?.state === 'active') {
        await boss.fail(queue, stale.jobId, { message: 'worker-lost: no heartbeat during selection' });
        logger.warn({ run: stale.runId, source: stale.sourceId }, 'released the selection of a worker that stopped reporting');
      }
      // Not looked at again until its retry reports (or the next timeout passes).
      await runs.selectionHeartbeat(stale.runId, stale.jobId);
    }
    for (const stale of await runs.staleBatches(w.heartbeatTimeoutSeconds)) {
      const job = await boss.getJobById<PatientBatchJob>(PATIENT_BATCH_QUEUE, stale.jobId);
      if (job?.state === 'active') await boss.fail(PATIENT_BATCH_QUEUE, stale.jobId, { message: 'worker-lost: no heartbeat' });
      await db.transaction((tx) =>
        runs.failBatch(tx, { runId: stale.runId, seq: stale.seq, attempt: stale.attempt, code: 'worker-lost', message: 'the worker running this batch stopped reporting; released for retry', final: false }),
      );
      logger.warn({ run: stale.runId, batch: stale.seq }, 'released a batch of a worker that stopped reporting');
    }
  };

  let stopping: Promise<void> | undefined;
  const poll = { pollingIntervalSeconds: w.pollingIntervalSeconds };
  const track = <T>(handled: Promise<T>): Promise<T> => {
    running.add(handled);
    const forget = () => running.delete(handled);
    handled.then(forget, forget);
    return handled;
  };
  const one = <T>(handler: (job: T) => Promise<unknown>) => (jobs: T[]) => track(handler(jobs[0]));
  const batchWorkers: string[] = [];
  const runWorkers = new Map<string, string>();
  for (let i = 0; i < w.batchConcurrency; i++) {
    // After a batch, this slot asks for the next one at once (pg-boss would otherwise wait out the rest of
    // its polling interval); with the queue empty the fetch finds nothing and the slot polls as usual.
    const slot: { workerId?: string } = {};
    slot.workerId = await boss.work<PatientBatchJob>(PATIENT_BATCH_QUEUE, { ...poll, batchSize: 1, includeMetadata: true }, async (jobs) => {
      try {
        return await track(handleBatch(jobs[0]));
      } finally {
        if (slot.workerId && !stopping) boss.notifyWorker(slot.workerId);
      }
    });
    batchWorkers.push(slot.workerId);
  }
  for (const source of config.sources) runWorkers.set(source.id, await boss.work<SourceRunJob>(sourceRunQueue(source.id), { ...poll, batchSize: 1 }, one(handleSourceRun)));
  await boss.work<PatientBatchJob>(PATIENT_BATCH_DEAD, { ...poll, batchSize: 1 }, one(handleDeadBatch));
  await boss.work<SourceRunJob>(SOURCE_RUN_DEAD, { ...poll, batchSize: 1 }, one(handleDeadRun));
  await boss.work(RETENTION_QUEUE, { pollingIntervalSeconds: 60, batchSize: 1 }, one(handleRetention));

  let reaping = false;
  const reaper = setInterval(() => {
    if (reaping) return;
    reaping = true;
    reap()
      .catch((err) => logger.warn({ err: (err as Error).message }, 'heartbeat check failed'))
      .finally(() => (reaping = false));
  }, w.heartbeatSeconds * 1000);
  reaper.unref();
  logger.info({ worker: id, sources: config.sources.length, concurrency: w.batchConcurrency }, 'worker started');

  return {
    id,
    wake: (sourceId) => {
      const workerId = runWorkers.get(sourceId);
      if (workerId && !stopping) boss.notifyWorker(workerId);
    },
    stop: (options = {}) =>
      (stopping ??= (async () => {
        clearInterval(reaper);
        const graceSeconds = options.graceSeconds ?? w.shutdownGraceSeconds;
        logger.info({ worker: id, running: inflight.size, graceSeconds }, 'worker stopping: no new jobs, finishing the current batches');
        // pg-boss stops fetching, waits for running handlers up to the grace period, then fails what still
        // runs (released: retried by another worker). close: false, the database is ours.
        await stopBoss(boss, { timeoutMs: graceSeconds * 1000 });
        // What still runs was released (its job failed, to be retried elsewhere): stop it, let it record
        // its end (briefly), and let pg-boss finish its last statements before the database closes.
        for (const controller of inflight) controller.abort();
        if (running.size) await Promise.race([Promise.allSettled([...running]), new Promise((r) => setTimeout(r, RELEASE_WAIT_MS).unref())]);
        await bossSettled(boss);
        logger.info({ worker: id }, 'worker stopped');
      })()),
  };
}

