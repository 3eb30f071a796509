/**
 * Bulk Data ingestion benchmark: a Bulk Data server (in this process) streams a generated population as
 * NDJSON (the demo patients' Patients, Observations and Conditions, about 10 resources per patient,
 * generated before the adapter starts); for each size a fresh adapter process exports it, parses,
 * checks and stages every line (on the machine's PostgreSQL, BENCH_PG_ADMIN_URL or
 * postgres://postgres@127.0.0.1:5432/postgres, in a database of its own; the embedded PGlite when there
 * is none), then feeds the staged population through the mapping and the model in batches of 100.
 *
 * Rows: NDJSON resources per second parsed, checked and staged (goal >= 20,000/s), the adapter's peak RSS
 * at 1,000 and 20,000 patients, and their ratio (goal <= 1.2: memory stays flat whatever the population).
 *
 * `node --import tsx bench/parts/bulk.ts` runs it alone; `runBulkBench()` is what `npm run bench` calls.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { packagePath } from '../../src/core/paths.js';
import { loadDiabetesRows, type DiabetesRow } from '../../src/demo/diabetes-rows.js';
import { buildDemoPatient, DEMO_AS_OF } from '../../src/demo/seed.js';
import type { MeasuredRow as BenchRow } from '../part.js';

export type { MeasuredRow as BenchRow } from '../part.js';

const GOALS = { resourcesPerSecond: 20_000, rssRatio: 1.2 };
const ADMIN_URL = process.env.BENCH_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const THIS_FILE = fileURLToPath(import.meta.url);
/**
 * The adapter process runs with a fixed heap, as a container would run it: V8 otherwise lets garbage grow
 * the heap to several times the live data on long runs (the live heap stays flat, see liveHeapMb), which
 * would make peak RSS measure V8's laziness rather than the pipeline. --expose-gc: the live heap is
 * measured after a full collection at the end.
 */
const CHILD_NODE_FLAGS = ['--max-old-space-size=256', '--expose-gc'];

interface ChildResult {
  patients: number;
  scored: number;
  staged: number;
  stageSeconds: number;
  resourcesPerSecond: number;
  maxRssMb: number;
  /** Heap in use after a full collection at the end. */
  liveHeapMb: number;
  database: 'postgresql' | 'embedded';
}

export async function runBulkBench(options: { sizes?: [number, number]; log?: (line: string) => void } = {}): Promise<BenchRow[]> {
  const [small, large] = options.sizes ?? [1000, 20_000];
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const rows = loadDiabetesRows();
  const server = await startPopulationServer(rows);
  try {
    const results: ChildResult[] = [];
    for (const n of [small, large]) {
      server.prepare(n);
      const r = await runChild(server.url(n));
      log(
        `bulk: ${n.toLocaleString('en-US')} patients on ${r.database}: ${r.staged.toLocaleString('en-US')} resources staged in ${r.stageSeconds.toFixed(1)} s ` +
          `(${Math.round(r.resourcesPerSecond).toLocaleString('en-US')}/s), ${r.scored.toLocaleString('en-US')} scored, peak RSS ${r.maxRssMb} MB, live heap at the end ${r.liveHeapMb} MB`,
      );
      results.push(r);
    }
    const [a, b] = results;
    return [
      { name: `NDJSON resources parsed, checked and staged per second (${large.toLocaleString('en-US')} patients)`, value: Math.round(b.resourcesPerSecond), unit: 'resources/s', goal: `>= ${GOALS.resourcesPerSecond}` },
      { name: `peak RSS of the bulk pull and scoring (heap capped at 256 MB), ${small.toLocaleString('en-US')} patients`, value: a.maxRssMb, unit: 'MB' },
      { name: `peak RSS of the bulk pull and scoring (heap capped at 256 MB), ${large.toLocaleString('en-US')} patients`, value: b.maxRssMb, unit: 'MB' },
      { name: `live heap after a full collection at the end, ${small.toLocaleString('en-US')} patients`, value: a.liveHeapMb, unit: 'MB' },
      { name: `live heap after a full collection at the end, ${large.toLocaleString('en-US')} patients`, value: b.liveHeapMb, unit: 'MB' },
      { name: `peak RSS ratio ${large.toLocaleString('en-US')} / ${small.toLocaleString('en-US')} patients`, value: Math.round((b.maxRssMb / a.maxRssMb) * 1000) / 1000, unit: 'ratio', goal: `<= ${GOALS.rssRatio}` },
    ];
  } finally {
    await server.close();
  }
}

/**
 * A Bulk Data server for `/p<n>/fhir`: the first n demo patients as one NDJSON file per resource type
 * (Patient, Observation, Condition), generated before the adapter starts (so generating them is not
 * timed) and served in 64 KiB writes with backpressure.
 */
async function startPopulationServer(rows: DiabetesRow[]): Promise<{ url(n: number): string; prepare(n: number): void; close(): Promise<void> }> {
  let files = new Map<string, Buffer[]>();
  let size = 0;
  const prepare = (n: number) => {
    const pending = new Map<string, string[]>();
    const chunks = new Map<string, Buffer[]>();
    const flush = (type: string) => {
      const lines = pending.get(type)!;
      if (!lines.length) return;
      const list = chunks.get(type) ?? [];
      list.push(Buffer.from(`${lines.splice(0).join('\n')}\n`));
      chunks.set(type, list);
    };
    for (let i = 0; i < n; i++) {
      for (const r of buildDemoPatient(rows[i % rows.length], i, DEMO_AS_OF)) {
        const lines = pending.get(r.resourceType) ?? [];
        pending.set(r.resourceType, lines);
        lines.push(JSON.stringify(r));
        if (lines.length === 100) flush(r.resourceType);
      }
    }
    for (const type of pending.keys()) flush(type);
    files = chunks;
    size = n;
  };
  const server = http.createServer((req, res) => {
    const m = /^\/p(\d+)\/fhir(\/.*)$/.exec(req.url ?? '');
    if (!m || Number(m[1]) !== size) return void res.writeHead(404).end();
    const rest = m[2].split('?')[0];
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/p${size}/fhir`;
    if (rest === '/Patient/$export') return void res.writeHead(202, { 'content-location': `${base}/$export-status/1` }).end();
    if (rest === '/$export-status/1' && req.method === 'DELETE') return void res.writeHead(202).end();
    if (rest === '/$export-status/1') {
      return void res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          transactionTime: DEMO_AS_OF.toISOString(),
          request: `${base}/Patient/$export`,
          requiresAccessToken: false,
          output: [...files.keys()].map((type) => ({ type, url: `${base}/files/${type}.ndjson` })),
          error: [],
        }),
      );
    }
    const file = /^\/files\/([A-Za-z]+)\.ndjson$/.exec(rest)?.[1];
    const chunks = file ? files.get(file) : undefined;
    if (!chunks) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/fhir+ndjson' });
    void (async () => {
      for (const chunk of chunks) if (!res.write(chunk)) await once(res, 'drain');
      res.end();
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return { url: (n) => `http://127.0.0.1:${port}/p${n}/fhir`, prepare, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

async function runChild(fhirUrl: string): Promise<ChildResult> {
  const db = await benchDatabase();
  try {
    const child = spawn(process.execPath, [...CHILD_NODE_FLAGS, '--import', 'tsx', THIS_FILE], {
      cwd: packagePath(),
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, FHIR_ML_BULK_BENCH_CHILD: '1', BENCH_FHIR_URL: fhirUrl, BENCH_DATABASE_URL: db.url ?? '', BENCH_DATA_DIR: db.dataDir ?? '', FHIR_ML_LOG_LEVEL: 'warn' },
    });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const [code] = (await once(child, 'exit')) as [number];
    if (code !== 0) throw new Error(`bulk bench child exited ${code}`);
    return JSON.parse(out.trim().split('\n').pop()!) as ChildResult;
  } finally {
    await db.drop();
  }
}

/** A database of the bench's own on the machine's PostgreSQL, or an embedded one in a temporary directory. */
async function benchDatabase(): Promise<{ url?: string; dataDir?: string; drop(): Promise<void> }> {
  const name = `fhirml_bench_bulk_${Math.random().toString(16).slice(2, 10)}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  try {
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const url = new URL(ADMIN_URL);
    url.pathname = `/${name}`;
    return {
      url: url.href,
      drop: async () => {
        const c = new pg.Client({ connectionString: ADMIN_URL });
        await c.connect();
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await c.end();
      },
    };
  } catch {
    await admin.end().catch(() => undefined);
    const dataDir = mkdtempSync(path.join(tmpdir(), 'fhir-ml-bench-pglite-'));
    return { dataDir, drop: async () => rmSync(dataDir, { recursive: true, force: true }) };
  }
}

/** The adapter side, in its own process: export, stage, then map and score the staged population in batches. */
async function child(): Promise<void> {
  const { openDatabase } = await import('../../src/db/database.js');
  const { migrate } = await import('../../src/db/migrate.js');
  const { PgBulkExportStore, StagingStore } = await import('../../src/db/staging.js');
  const { FhirClient } = await import('../../src/fhir/client.js');
  const { createBulkPull } = await import('../../src/fhir/pull-bulk.js');
  const { DEFAULT_PULL_OPTIONS } = await import('../../src/fhir/pull-options.js');
  const { prepareModels } = await import('../../src/sync/models.js');
  const { pullSpecFor } = await import('../../src/sync/pull-step.js');
  const { scoreBatch } = await import('../../src/sync/batch.js');
  const { defaultMapContext } = await import('../../src/sync/run.js');
  const { DEFAULT_IDENTIFIER_SYSTEM } = await import('../../src/writeback/identifiers.js');

  const db = await openDatabase(process.env.BENCH_DATABASE_URL ? { url: process.env.BENCH_DATABASE_URL } : { dataDir: process.env.BENCH_DATA_DIR });
  await migrate(db);
  const models = await prepareModels(['diabetes-progression'], { modelsDir: packagePath('models'), mappingsDir: packagePath('mappings') });
  const client = new FhirClient({ baseUrl: process.env.BENCH_FHIR_URL! });
  const asOf = DEMO_AS_OF;
  const staging = new StagingStore(db);
  const bulk = createBulkPull({
    client,
    spec: pullSpecFor(models, asOf),
    asOf,
    sourceId: 'bench',
    population: { kind: 'all' },
    options: { ...DEFAULT_PULL_OPTIONS.bulk, pollIntervalMs: 10 },
    staging,
    exports: new PgBulkExportStore(db),
  });
  const t0 = performance.now();
  const report = await bulk.prepare();
  const stageSeconds = (performance.now() - t0) / 1000;
  const staged = Object.values(report.staged).reduce((a, b) => a + b, 0);
  const mapContext = defaultMapContext();
  let patients = 0;
  let scored = 0;
  for await (const ids of bulk.patients(100)) {
    const pull = await bulk.pull(ids);
    const batch = await scoreBatch(ids, pull, { models, asOf, identifierSystem: DEFAULT_IDENTIFIER_SYSTEM, mapContext, recorded: asOf, explain: false });
    patients += ids.length;
    scored += batch.entries.filter((e) => e.status === 'scored').length;
  }
  await bulk.close();
  (globalThis as { gc?: () => void }).gc?.();
  const result: ChildResult = {
    patients,
    scored,
    staged,
    stageSeconds,
    resourcesPerSecond: staged / stageSeconds,
    maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
    liveHeapMb: Math.round(process.memoryUsage().heapUsed / 1048576),
    database: db.kind,
  };
  await Promise.all(models.map((m) => m.runner.close()));
  await db.close();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

if (process.env.FHIR_ML_BULK_BENCH_CHILD === '1') {
  await child();
} else if (process.argv[1] && path.resolve(process.argv[1]) === THIS_FILE) {
  const rows = await runBulkBench();
  for (const r of rows) process.stdout.write(`${r.name}: ${r.value} ${r.unit}${r.goal ? ` (goal ${r.goal})` : ''}\n`);
}
