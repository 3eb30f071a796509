/**
 * Sync benchmark. For each population size (`BENCH_SIZES`, default 1000,5000,20000 patients of about
 * 9 Observations each, generated from the diabetes rows) and each of `BENCH_REPEATS` runs (default 3):
 * a fresh FHIR server process is seeded and the adapter syncs everyone in a worker process
 * (bench/sync-worker.ts), streaming its HTTP work to an NDJSON recording; then another fresh server is
 * seeded and a bare HTTP client replays the recording (the same searches, all pages, and the same
 * transaction bundles, sequentially). Adapter and bare runs alternate, so drift in the machine's load
 * touches both; a single run swings by several per cent on a shared 2-core machine, so the median
 * ratio over the runs is the figure, with its min–max.
 *
 * Printed per run and per size: adapter and bare wall time, patients/s, the adapter process's CPU and
 * peak RSS, the bare client's CPU, and the server's CPU in each phase.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { packagePath } from '../../src/core/paths.js';
import { DEMO_AS_OF } from '../../src/demo/seed.js';
import { cpuSeconds, replayRecording, startServerProcess, stopServer, TSX } from '../lib.js';
import { count, median, spread, type BenchContext, type BenchPart, type GoalRow } from '../part.js';
import type { WorkerResult } from '../sync-worker.js';

const SIZES = (process.env.BENCH_SIZES ?? '1000,5000,20000').split(',').map(Number);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);

/** adapter/bare at this many patients, median of the runs. */
const RATIO_GOAL = { patients: 5000, max: 1.05 };
/** The adapter's peak RSS grows at most this much from the smaller to the larger population. */
const RSS_GOAL = { from: 1000, to: 20000, max: 1.2 };

interface Run {
  adapter: WorkerResult;
  bareMs: number;
  bareCpuMs: number;
  bareRequests: number;
  serverCpuAdapter: number;
  serverCpuBare: number;
  ratio: number;
}

function runWorker(url: string, recordingFile: string): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    // --expose-gc only lets the worker measure its retained heap at the very end; it changes no GC decision.
    const child = spawn(process.execPath, ['--expose-gc', ...TSX, packagePath('bench/sync-worker.ts'), url, DEMO_AS_OF.toISOString(), recordingFile], {
      cwd: packagePath(),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!) as WorkerResult) : reject(new Error(`sync worker exited ${code}`))));
  });
}

async function oneRun(n: number, recordingFile: string): Promise<Run & { resources: number }> {
  let server = await startServerProcess(n);
  const resources = server.resources;
  let adapter: WorkerResult;
  let serverCpuAdapter: number;
  try {
    const cpu0 = cpuSeconds(server.child.pid) ?? NaN;
    adapter = await runWorker(server.url, recordingFile);
    serverCpuAdapter = (cpuSeconds(server.child.pid) ?? NaN) - cpu0;
  } finally {
    await stopServer(server);
  }
  if (adapter.failed) throw new Error(`${adapter.failed} patients failed in the adapter sync`);
  // Every patient is accounted for: scored, or skipped by the model's gates (generated patients include a
  // few whose inputs the out-of-distribution check refuses).
  if (adapter.scored + adapter.skipped !== n) throw new Error(`the adapter scored ${adapter.scored} and skipped ${adapter.skipped} of ${n} patients`);

  server = await startServerProcess(n);
  try {
    const cpu0 = cpuSeconds(server.child.pid) ?? NaN;
    const ownCpu0 = process.cpuUsage();
    const t0 = performance.now();
    const bareRequests = await replayRecording(server.url, recordingFile);
    const bareMs = performance.now() - t0;
    const ownCpu = process.cpuUsage(ownCpu0);
    const serverCpuBare = (cpuSeconds(server.child.pid) ?? NaN) - cpu0;
    return {
      resources,
      adapter,
      bareMs,
      bareCpuMs: (ownCpu.user + ownCpu.system) / 1000,
      bareRequests,
      serverCpuAdapter,
      serverCpuBare,
      ratio: adapter.ms / bareMs,
    };
  } finally {
    await stopServer(server);
  }
}

const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function run(ctx: BenchContext): Promise<GoalRow[]> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fhir-ml-bench-'));
  const bySize = new Map<number, Run[]>();
  try {
    for (const n of SIZES) {
      const runs: Run[] = [];
      for (let rep = 1; rep <= REPEATS; rep++) {
        const file = path.join(dir, `recording-${n}-${rep}.ndjson`);
        const r = await oneRun(n, file);
        rmSync(file, { force: true });
        runs.push(r);
        ctx.log(
          `sync ${count(n)} patients (${count(r.resources)} resources), run ${rep}/${REPEATS}: ` +
            `adapter ${s(r.adapter.ms)} = ${((n / r.adapter.ms) * 1000).toFixed(0)} patients/s (CPU ${s(r.adapter.cpuMs)}, peak RSS ${r.adapter.maxRssMb.toFixed(0)} MB, ${r.adapter.requests} requests, ${r.adapter.skipped} skipped by the gates); ` +
            `bare client ${s(r.bareMs)} (CPU ${s(r.bareCpuMs)}, ${r.bareRequests} requests); adapter/bare ${r.ratio.toFixed(3)}; ` +
            `server CPU ${r.serverCpuAdapter.toFixed(2)} s during the sync, ${r.serverCpuBare.toFixed(2)} s during the replay`,
        );
      }
      bySize.set(n, runs);
      const pick = (f: (r: Run) => number) => runs.map(f);
      ctx.log(
        `sync ${count(n)} patients, median (min–max) of ${runs.length}: adapter/bare ${spread(pick((r) => r.ratio), 3)}; ` +
          `${spread(pick((r) => (n / r.adapter.ms) * 1000), 0)} patients/s; adapter CPU ${spread(pick((r) => r.adapter.cpuMs / 1000), 2, ' s')}, ` +
          `bare client CPU ${spread(pick((r) => r.bareCpuMs / 1000), 2, ' s')}; adapter peak RSS ${spread(pick((r) => r.adapter.maxRssMb), 0, ' MB')}, ` +
          `heap retained after the run ${spread(pick((r) => r.adapter.retainedHeapMb), 0, ' MB')}; ` +
          `server CPU during sync ${spread(pick((r) => r.serverCpuAdapter), 2, ' s')}, during replay ${spread(pick((r) => r.serverCpuBare), 2, ' s')}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const rows: GoalRow[] = [];
  for (const [n, runs] of bySize) {
    const ratios = runs.map((r) => r.ratio);
    const goal = n === RATIO_GOAL.patients ? RATIO_GOAL.max : undefined;
    rows.push({
      measure: `adapter/bare wall time, ${count(n)} patients (median, min–max of ${runs.length})`,
      goal: goal === undefined ? undefined : `<= ${goal.toFixed(2)}`,
      measured: spread(ratios, 3),
      met: goal === undefined ? undefined : median(ratios) <= goal,
    });
  }
  for (const [n, runs] of bySize) {
    rows.push({ measure: `patients/s, ${count(n)} patients`, measured: spread(runs.map((r) => (n / r.adapter.ms) * 1000), 0) });
  }
  for (const [n, runs] of bySize) {
    rows.push({ measure: `adapter CPU per 1,000 patients, ${count(n)} patients`, measured: spread(runs.map((r) => r.adapter.cpuMs / n), 3, ' s') }); // ms per patient = s per 1,000
  }
  const rss = new Map([...bySize].map(([n, runs]) => [n, median(runs.map((r) => r.adapter.maxRssMb))]));
  for (const [n, mb] of rss) {
    const retained = median(bySize.get(n)!.map((r) => r.adapter.retainedHeapMb));
    rows.push({ measure: `adapter peak RSS, ${count(n)} patients (median; heap retained after the run)`, measured: `${mb.toFixed(0)} MB (${retained.toFixed(0)} MB)` });
  }
  const sizes = [...rss.keys()].sort((a, b) => a - b);
  if (sizes.length > 1) {
    const [from, to] = rss.has(RSS_GOAL.from) && rss.has(RSS_GOAL.to) ? [RSS_GOAL.from, RSS_GOAL.to] : [sizes[0], sizes[sizes.length - 1]];
    const ratio = rss.get(to)! / rss.get(from)!;
    const isGoal = from === RSS_GOAL.from && to === RSS_GOAL.to;
    rows.push({
      measure: `adapter peak RSS ${count(to)} / ${count(from)} patients`,
      goal: isGoal ? `<= ${RSS_GOAL.max.toFixed(2)}` : undefined,
      measured: ratio.toFixed(3),
      met: isGoal ? ratio <= RSS_GOAL.max : undefined,
    });
  }
  return rows;
}

export const syncPart: BenchPart = {
  name: 'sync',
  description: `adapter sync vs a bare client replaying its HTTP work, ${SIZES.map(count).join(', ')} patients, ${REPEATS} alternating runs each`,
  run,
};
