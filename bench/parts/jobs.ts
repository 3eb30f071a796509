/**
 * Bench part: job throughput of the service's queue (pg-boss 10) in batches per second, on PostgreSQL
 * (DATABASE_URL's server, else 127.0.0.1:5432; a fresh database, dropped afterwards) and on the embedded
 * default (PGlite in memory).
 *
 * One run of a source whose population is a list of patients fans out into `batches` batch jobs of
 * `patientsPerBatch` patients; one worker process (the configured default of 2 batches at a time) takes
 * them. The executor is a stand-in that reports every patient scored without any FHIR work, so what is
 * measured is the service's own cost per batch: the job fetch, the batch claim and heartbeat, the
 * outcomes, exclusion counts and input hashes recorded in the completing transaction, the job's
 * completion, and the run's completion with its watermark. Time: from the trigger to the run's end.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { startService } from '../../src/api/service.js';
import { createApp, type App } from '../../src/app.js';
import { parseServiceConfig } from '../../src/config/sources.js';
import { RunStore, type RunRow } from '../../src/db/runs.js';
import type { BatchExecutor } from '../../src/jobs/executor.js';
import { triggerRun } from '../../src/jobs/trigger.js';

/** One measured figure; `goal` as text (`<= 0.05`) when there is one. */
export interface BenchRow {
  name: string;
  value: number;
  unit: string;
  goal?: string;
}

export interface JobBenchOptions {
  batches?: number;
  patientsPerBatch?: number;
  log?: (line: string) => void;
}

export async function jobThroughputBench(options: JobBenchOptions = {}): Promise<BenchRow[]> {
  const batches = options.batches ?? 200;
  const perBatch = options.patientsPerBatch ?? 10;
  const log = options.log ?? ((line: string) => console.log(line));
  const app = createApp({ env: { FHIR_ML_LOG_LEVEL: 'warn' } });
  const rows: BenchRow[] = [];
  try {
    const postgres = await freshPostgres('jobs', log);
    try {
      if (postgres) {
        const r = await measure(app, { databaseUrl: postgres.url, batches, perBatch });
        log(`jobs on PostgreSQL: ${batches} batches of ${perBatch} patients in ${r.seconds.toFixed(2)} s = ${r.perSecond.toFixed(1)} batches/s`);
        rows.push({ name: `job throughput on PostgreSQL (${batches} batches of ${perBatch} patients, one worker, 2 at a time, stand-in executor)`, value: r.perSecond, unit: 'batches/s' });
      }
    } finally {
      await postgres?.drop();
    }
    const r = await measure(app, { batches, perBatch });
    log(`jobs on the embedded database: ${batches} batches of ${perBatch} patients in ${r.seconds.toFixed(2)} s = ${r.perSecond.toFixed(1)} batches/s`);
    rows.push({ name: `job throughput on the embedded PGlite (${batches} batches of ${perBatch} patients, one worker, 2 at a time, stand-in executor)`, value: r.perSecond, unit: 'batches/s' });
  } finally {
    await app.close();
  }
  return rows;
}

/** Reports every patient of a batch scored, as the sync executor would, without FHIR work. */
const standIn: BatchExecutor = async (input) => ({
  outcomes: input.patientIds.flatMap((patientId, i) =>
    input.modelIds.map((modelId) => ({
      patientId,
      modelId,
      modelVersion: '1.0.0',
      status: 'scored' as const,
      probability: (i % 10) / 10 + 0.05,
      band: 'moderate',
      write: 'created',
      counts: { fetched: 10, used: 9, excluded: 1 },
      excluded: { status: 1 },
      explanation: [{ featureId: 'glucose', contribution: 0.2 }],
      inputHash: randomBytes(32).toString('hex'),
    })),
  ),
  exclusions: input.modelIds.map((modelId) => ({ modelId, kind: 'excluded' as const, reason: 'status', count: input.patientIds.length })),
  requests: 0,
  unattributed: 0,
  durationMs: 0,
});

async function measure(app: App, options: { databaseUrl?: string; batches: number; perBatch: number }): Promise<{ seconds: number; perSecond: number }> {
  const ids = Array.from({ length: options.batches * options.perBatch }, (_, i) => `bench-${i + 1}`);
  const config = parseServiceConfig(
    {
      service: { database: { dataDir: 'memory://' } },
      sources: [
        {
          id: 'bench',
          // Never contacted: a list population needs no search, and the stand-in executor makes no request.
          baseUrl: 'http://127.0.0.1:9/fhir',
          models: ['diabetes-progression'],
          population: { type: 'patients', ids },
          options: { batchSize: options.perBatch },
        },
      ],
    },
    { env: options.databaseUrl ? { DATABASE_URL: options.databaseUrl } : {} },
  );
  const service = await startService({ config, app, mode: 'worker', metricsListen: { port: 0 }, wrapExecutor: () => standIn });
  try {
    const runs = new RunStore(service.db);
    const t0 = performance.now();
    const started = await triggerRun({ db: service.db, boss: service.boss, runs }, config.sources[0], { trigger: 'bench', asOf: new Date() });
    if (!started.started) throw new Error('the bench run did not start');
    service.worker!.wake('bench');
    const done = await untilFinished(runs, started.run.id);
    const seconds = (performance.now() - t0) / 1000;
    if (done.state !== 'succeeded' || done.batchesTotal !== options.batches) throw new Error(`the bench run ended ${done.state} with ${done.batchesTotal} batches`);
    return { seconds, perSecond: options.batches / seconds };
  } finally {
    await service.stop({ graceSeconds: 5 });
  }
}

export async function untilFinished(runs: RunStore, runId: string, timeoutMs = 30 * 60_000): Promise<RunRow> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const run = await runs.get(runId);
    if (run && (run.state === 'succeeded' || run.state === 'failed')) return run;
    if (Date.now() > deadline) throw new Error(`run ${runId} did not finish in ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A fresh database on DATABASE_URL's server (else 127.0.0.1:5432 as postgres), dropped by `drop`;
 * undefined, with a line saying so, when no server answers.
 */
export async function freshPostgres(purpose: string, log: (line: string) => void): Promise<{ url: string; drop(): Promise<void> } | undefined> {
  const admin = new URL(process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres');
  const name = `fhirml_bench_${purpose}_${randomBytes(4).toString('hex')}`;
  const query = async (sql: string) => {
    const client = new pg.Client({ connectionString: admin.toString() });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  try {
    await query(`CREATE DATABASE ${name}`);
  } catch (err) {
    log(`PostgreSQL at ${admin.host} not usable (${(err as Error).message}): its figures are left out`);
    return undefined;
  }
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}
