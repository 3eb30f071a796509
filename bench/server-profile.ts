/**
 * Server-side profile of the sync benchmark's HTTP work, per request kind.
 *
 *   node --import tsx bench/server-profile.ts record <patients> <recording.ndjson>
 *       seeds an in-process server and runs the adapter sync against it, recording its searches and
 *       transaction bundles (like bench/sync-worker.ts); the recording does not depend on server speed.
 *   node --import tsx bench/server-profile.ts replay <patients> <recording.ndjson> [--inproc]
 *       seeds a fresh server (a child process, as `npm run bench` runs it, or in-process with --inproc,
 *       e.g. under `node --cpu-prof`) and replays the recording sequentially, timing every request.
 *
 * Printed per kind: count, mean, p50, p95, max, and the mean over the first and last tenth of the
 * requests of that kind (growth with the number of stored resources shows as last >> first).
 */
import { packagePath } from '../src/core/paths.js';
import { DEMO_AS_OF } from '../src/demo/seed.js';
import { startFhirServer } from '../src/server/index.js';
import { prepareModels, runSync } from '../src/sync/index.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../src/writeback/identifiers.js';
import { RecordingClient, replayRecording, seed, startServerProcess, stopServer } from './lib.js';

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
  const server = await startServerProcess();
  return { url: server.url, stop: () => stopServer(server) };
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
    throw new Error('usage: server-profile.ts record|replay <patients> <recording.ndjson> [--inproc]');
  }
  const target = mode === 'record' || flags.includes('--inproc') ? await startInProcess() : await startChild();
  try {
    const t0 = performance.now();
    await seed(target.url, n, timed);
    console.log(`seeded ${n} patients in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
    if (mode === 'record') {
      const client = new RecordingClient({ baseUrl: target.url, auth: { type: 'none' } }, file);
      const models = await prepareModels(['diabetes-progression'], { modelsDir: packagePath('models'), mappingsDir: packagePath('mappings') });
      const t1 = performance.now();
      const result = await runSync(client, models, { asOf: DEMO_AS_OF, identifierSystem: DEFAULT_IDENTIFIER_SYSTEM, batchSize: 100, collectPatients: false });
      console.log(`sync ${result.patients} patients in ${((performance.now() - t1) / 1000).toFixed(2)} s, failed ${result.failed}`);
      client.close();
    } else {
      const t1 = performance.now();
      await replayRecording(target.url, file, timed);
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
