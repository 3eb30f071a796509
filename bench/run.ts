/**
 * `npm run bench`: speed and memory goals, measured, never asserted in tests.
 *
 * 1. Sync benchmark. The embedded FHIR server runs in its own process. For 1,000 and then 5,000 patients
 *    (about 10 Observations each, generated from the diabetes rows) it is seeded fresh, the adapter syncs
 *    everyone in a worker process (bench/sync-worker.ts, which records its HTTP work), then the server is
 *    seeded fresh again and a bare HTTP client replays the same searches (all pages) and posts the same
 *    transaction bundles. Printed: patients/s, adapter time / bare time (goal <= 1.15) and the worker's
 *    peak RSS at 1,000 and 5,000 patients (goal: ratio <= 1.5, i.e. the sync streams).
 * 2. NLP benchmark (bench/nlp.ts): reports/s on ~300-word reports (goal >= 1,000/s on one core) and the
 *    negation precision/recall on the labelled assertion set.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Bundle, FhirResource } from 'fhir/r4.js';
import { chunk } from '../src/core/chunk.js';
import { packagePath } from '../src/core/paths.js';
import { loadDiabetesRows } from '../src/demo/diabetes-rows.js';
import { buildDemoPatient, DEMO_AS_OF, putTransaction } from '../src/demo/seed.js';
import type { Recording } from './sync-worker.js';

const SIZES = (process.env.BENCH_SIZES ?? '1000,5000').split(',').map(Number);
const TSX = ['--import', 'tsx'];

interface Server {
  url: string;
  child: ChildProcess;
}

export async function startServerProcess(): Promise<Server> {
  const child = spawn(process.execPath, [...TSX, packagePath('src/cli/main.ts'), 'fhir-server', '--port', '0'], {
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
  return { url, child };
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux); undefined elsewhere. */
export function cpuSeconds(pid: number | undefined): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks of 1/100 s
  } catch {
    return undefined;
  }
}

export async function stopServer(s: Server): Promise<void> {
  const exited = new Promise((resolve) => s.child.once('exit', resolve));
  s.child.kill('SIGTERM');
  await exited;
}

async function post(url: string, body: unknown): Promise<Bundle> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(body) });
  const json = (await res.json()) as Bundle;
  if (!res.ok) throw new Error(`POST ${res.status}`);
  return json;
}

export async function seed(server: Server, n: number): Promise<number> {
  const rows = loadDiabetesRows();
  let resources = 0;
  const ids = Array.from({ length: n }, (_, i) => i);
  for (const part of chunk(ids, 100)) {
    const batch: FhirResource[] = part.flatMap((i) => buildDemoPatient(rows[i % rows.length], i, DEMO_AS_OF));
    resources += batch.length;
    await post(server.url, putTransaction(batch));
  }
  return resources;
}

function runWorker(url: string, recordingFile: string): Promise<{ ms: number; maxRssMb: number; patients: number; scored: number; failed: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...TSX, packagePath('bench/sync-worker.ts'), url, DEMO_AS_OF.toISOString(), recordingFile], {
      cwd: packagePath(),
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, FHIR_ML_LOG_LEVEL: 'warn' },
    });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!)) : reject(new Error(`sync worker exited ${code}`))));
  });
}

/** The same HTTP work, done by a bare client: every search paged to the end, every bundle posted. */
async function replayBare(url: string, recording: Recording): Promise<{ ms: number; requests: number }> {
  let requests = 0;
  const t0 = performance.now();
  const searchUrl = (type: string, params: Recording['searches'][number]['params']) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) for (const value of Array.isArray(v) ? v : [v]) q.append(k, value);
    return `${url}/${type}?${q}`;
  };
  // Replay in the adapter's order: its searches and transactions interleave batch by batch, and the
  // identifier pre-checks must see the same server state.
  let t = 0;
  for (const s of recording.searches) {
    let next: string | undefined = searchUrl(s.resourceType, s.params);
    while (next) {
      const res = await fetch(next, { headers: { accept: 'application/fhir+json' } });
      const page = (await res.json()) as Bundle;
      requests++;
      next = page.link?.find((l) => l.relation === 'next')?.url;
    }
    // Each batch's transaction follows its RiskAssessment identifier pre-check.
    if (s.resourceType === 'RiskAssessment' && t < recording.transactions.length) {
      await post(url, recording.transactions[t++]);
      requests++;
    }
  }
  while (t < recording.transactions.length) {
    await post(url, recording.transactions[t++]);
    requests++;
  }
  return { ms: performance.now() - t0, requests };
}

async function syncBench(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fhir-ml-bench-'));
  const rss: Record<number, number> = {};
  try {
    for (const n of SIZES) {
      let server = await startServerProcess();
      const resources = await seed(server, n);
      const recordingFile = path.join(dir, `recording-${n}.json`);
      const cpu0 = cpuSeconds(server.child.pid);
      const adapter = await runWorker(server.url, recordingFile);
      const adapterServerCpu = (cpuSeconds(server.child.pid) ?? NaN) - (cpu0 ?? NaN);
      await stopServer(server);
      if (adapter.failed) throw new Error(`${adapter.failed} patients failed in the adapter sync`);

      server = await startServerProcess();
      await seed(server, n);
      const recording = JSON.parse(readFileSync(recordingFile, 'utf8')) as Recording;
      const cpu1 = cpuSeconds(server.child.pid);
      const bare = await replayBare(server.url, recording);
      const bareServerCpu = (cpuSeconds(server.child.pid) ?? NaN) - (cpu1 ?? NaN);
      await stopServer(server);

      rss[n] = adapter.maxRssMb;
      console.log(
        `sync ${n} patients (${resources} resources): adapter ${(adapter.ms / 1000).toFixed(2)} s = ${((n / adapter.ms) * 1000).toFixed(0)} patients/s; ` +
          `bare client ${(bare.ms / 1000).toFixed(2)} s (${bare.requests} requests); adapter/bare ${(adapter.ms / bare.ms).toFixed(3)} (goal <= 1.15); ` +
          `adapter peak RSS ${adapter.maxRssMb.toFixed(0)} MB; scored ${adapter.scored}; ` +
          `server CPU during adapter sync ${adapterServerCpu.toFixed(2)} s, during bare replay ${bareServerCpu.toFixed(2)} s`,
      );
    }
    if (rss[1000] && rss[5000]) {
      console.log(`peak RSS 5000 / 1000 patients: ${(rss[5000] / rss[1000]).toFixed(3)} (goal <= 1.5)`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function nlpBench(): Promise<void> {
  const { runNlpBench } = await import('./nlp.js');
  const r = await runNlpBench();
  console.log(
    `nlp: ${r.reportsPerSecond.toFixed(0)} reports/s on ~300-word reports (goal >= 1000, one core); ` +
      `negation precision ${r.negationPrecision.toFixed(3)}, recall ${r.negationRecall.toFixed(3)} (goal >= 0.90 each)`,
  );
}

async function main(): Promise<void> {
  const only = process.argv[2];
  if (!only || only === 'nlp') await nlpBench();
  if (!only || only === 'sync') await syncBench();
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
