/**
 * Server-side profile of the sync benchmark's HTTP work, per request kind.
 *
 *   node --import tsx bench/server-profile.ts record <patients> <recording.json>
 *       seeds an in-process server and runs the adapter sync against it, recording its searches and
 *       transaction bundles (like bench/sync-worker.ts); the recording does not depend on server speed.
 *   node --import tsx bench/server-profile.ts replay <patients> <recording.json> [--inproc]
 *       seeds a fresh server (a child process, as `npm run bench` runs it, or in-process with --inproc,
 *       e.g. under `node --cpu-prof`) and replays the recording sequentially, timing every request.
 *
 * Printed per kind: count, mean, p50, p95, max, and the mean over the first and last tenth of the
 * requests of that kind (growth with the number of stored resources shows as last >> first).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import type { Bundle, FhirResource, Resource } from 'fhir/r4.js';
import { chunk } from '../src/core/chunk.js';
import { packagePath } from '../src/core/paths.js';
import { loadDiabetesRows } from '../src/demo/diabetes-rows.js';
import { buildDemoPatient, DEMO_AS_OF, putTransaction } from '../src/demo/seed.js';
import { FhirClient, type SearchPage, type SearchParams } from '../src/fhir/client.js';
import { startFhirServer } from '../src/server/index.js';
import { prepareModels } from '../src/sync/models.js';
import { runSync } from '../src/sync/sync.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../src/writeback/identifiers.js';

interface Recording {
  searches: { resourceType: string; params: SearchParams }[];
  transactions: Bundle[];
}

interface Target {
  url: string;
  stop(): Promise<void>;
}

const timings = new Map<string, number[]>();
function record(kind: string, ms: number): void {
  let list = timings.get(kind);
  if (!list) timings.set(kind, (list = []));
  list.push(ms);
}

async function timed<T>(kind: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const out = await fn();
  record(kind, performance.now() - t0);
  return out;
}

async function startInProcess(): Promise<Target> {
  const s = await startFhirServer({ port: 0 });
  return { url: s.url, stop: () => s.close() };
}

async function startChild(): Promise<Target> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', packagePath('src/cli/main.ts'), 'fhir-server', '--port', '0'], {
    cwd: packagePath(),
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, FHIR_ML_LOG_LEVEL: 'warn' },
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`FHIR server exited early (${code})`)));
  });
  return {
    url,
    stop: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function post(url: string, body: unknown): Promise<Bundle> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(body) });
  const json = (await res.json()) as Bundle;
  if (!res.ok) throw new Error(`POST ${res.status}: ${JSON.stringify(json).slice(0, 500)}`);
  return json;
}

async function seed(url: string, n: number): Promise<void> {
  const rows = loadDiabetesRows();
  const ids = Array.from({ length: n }, (_, i) => i);
  for (const part of chunk(ids, 100)) {
    const batch: FhirResource[] = part.flatMap((i) => buildDemoPatient(rows[i % rows.length], i, DEMO_AS_OF));
    await timed('seed PUT transaction (100 patients)', () => post(url, putTransaction(batch)));
  }
}

class RecordingClient extends FhirClient {
  readonly recording: Recording = { searches: [], transactions: [] };
  override search<T extends Resource>(resourceType: string, params: SearchParams): AsyncGenerator<SearchPage<T>> {
    this.recording.searches.push({ resourceType, params });
    return super.search<T>(resourceType, params);
  }
  override transaction(bundle: Bundle): Promise<Bundle> {
    this.recording.transactions.push(bundle);
    return super.transaction(bundle);
  }
}

function kindOf(type: string, params: SearchParams): string {
  const keys = Object.keys(params).filter((k) => !k.startsWith('_') || k === '_id');
  return `GET ${type}?${keys.join('&') || Object.keys(params).join('&')}`;
}

async function replay(url: string, recording: Recording): Promise<void> {
  const searchUrl = (type: string, params: SearchParams) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) for (const value of Array.isArray(v) ? v : [v]) q.append(k, value);
    return `${url}/${type}?${q}`;
  };
  let t = 0;
  for (const s of recording.searches) {
    let next: string | undefined = searchUrl(s.resourceType, s.params);
    const kind = kindOf(s.resourceType, s.params);
    while (next) {
      const page: Bundle = await timed(kind, async () => {
        const res = await fetch(next!, { headers: { accept: 'application/fhir+json' } });
        if (!res.ok) throw new Error(`GET ${res.status}: ${await res.text()}`);
        return (await res.json()) as Bundle;
      });
      next = page.link?.find((l) => l.relation === 'next')?.url;
    }
    if (s.resourceType === 'RiskAssessment' && t < recording.transactions.length) {
      const tx = recording.transactions[t++];
      await timed(`POST transaction (${tx.entry?.length ?? 0} entries)`, () => post(url, tx));
    }
  }
  while (t < recording.transactions.length) {
    const tx = recording.transactions[t++];
    await timed(`POST transaction (${tx.entry?.length ?? 0} entries)`, () => post(url, tx));
  }
}

function report(title: string): void {
  console.log(`\n${title}`);
  const f = (x: number) => x.toFixed(1).padStart(8);
  console.log(`${'kind'.padEnd(64)} ${'n'.padStart(5)} ${'mean'.padStart(8)} ${'p50'.padStart(8)} ${'p95'.padStart(8)} ${'max'.padStart(8)} ${'first10%'.padStart(8)} ${'last10%'.padStart(8)}  total s`);
  for (const [kind, list] of timings) {
    const sorted = [...list].sort((a, b) => a - b);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
    const tenth = Math.max(1, Math.floor(list.length / 10));
    console.log(
      `${kind.slice(0, 64).padEnd(64)} ${String(list.length).padStart(5)} ${f(mean(list))} ${f(sorted[Math.floor(sorted.length / 2)])} ${f(sorted[Math.floor(sorted.length * 0.95)])} ${f(sorted[sorted.length - 1])} ${f(mean(list.slice(0, tenth)))} ${f(mean(list.slice(-tenth)))}  ${(list.reduce((a, b) => a + b, 0) / 1000).toFixed(2)}`,
    );
  }
}

async function main(): Promise<void> {
  const [mode, nArg, file, ...flags] = process.argv.slice(2);
  const n = Number(nArg);
  if ((mode !== 'record' && mode !== 'replay') || !Number.isInteger(n) || !file) {
    throw new Error('usage: server-profile.ts record|replay <patients> <recording.json> [--inproc]');
  }
  const target = mode === 'record' || flags.includes('--inproc') ? await startInProcess() : await startChild();
  try {
    const t0 = performance.now();
    await seed(target.url, n);
    console.log(`seeded ${n} patients in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
    if (mode === 'record') {
      const client = new RecordingClient({ baseUrl: target.url, auth: { type: 'none' } });
      const models = await prepareModels(['diabetes-progression'], { modelsDir: packagePath('models'), mappingsDir: packagePath('mappings') });
      const t1 = performance.now();
      const result = await runSync(client, models, { asOf: DEMO_AS_OF, identifierSystem: DEFAULT_IDENTIFIER_SYSTEM, batchSize: 100, collectPatients: false });
      console.log(`sync ${result.patients} patients in ${((performance.now() - t1) / 1000).toFixed(2)} s, failed ${result.failed}`);
      writeFileSync(file, JSON.stringify(client.recording));
    } else {
      const recording = JSON.parse(readFileSync(file, 'utf8')) as Recording;
      const t1 = performance.now();
      await replay(target.url, recording);
      console.log(`replayed in ${((performance.now() - t1) / 1000).toFixed(2)} s`);
    }
    report(`${mode} ${n} patients`);
  } finally {
    await target.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
