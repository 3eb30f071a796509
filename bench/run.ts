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
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { packagePath } from '../src/core/paths.js';
import { DEMO_AS_OF } from '../src/demo/seed.js';
import { cpuSeconds, replayRecording, seed, startServerProcess, stopServer, TSX, type Recording } from './lib.js';

const SIZES = (process.env.BENCH_SIZES ?? '1000,5000').split(',').map(Number);

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

async function replayBare(url: string, recording: Recording): Promise<{ ms: number; requests: number }> {
  const t0 = performance.now();
  const requests = await replayRecording(url, recording);
  return { ms: performance.now() - t0, requests };
}

async function syncBench(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fhir-ml-bench-'));
  const rss: Record<number, number> = {};
  try {
    for (const n of SIZES) {
      let server = await startServerProcess();
      const resources = await seed(server.url, n);
      const recordingFile = path.join(dir, `recording-${n}.json`);
      const cpu0 = cpuSeconds(server.child.pid);
      const adapter = await runWorker(server.url, recordingFile);
      const adapterServerCpu = (cpuSeconds(server.child.pid) ?? NaN) - (cpu0 ?? NaN);
      await stopServer(server);
      if (adapter.failed) throw new Error(`${adapter.failed} patients failed in the adapter sync`);

      server = await startServerProcess();
      await seed(server.url, n);
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

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
