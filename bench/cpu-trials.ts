/**
 * Profiling aid (not part of `npm run bench`): the adapter's CPU and wall time over several syncs of N
 * patients, each on a fresh server process, without a bare replay; for A/B comparisons of a change.
 *   node --import tsx bench/cpu-trials.ts [patients=5000] [runs=3]
 */
import { spawn } from 'node:child_process';
import { packagePath } from '../src/core/paths.js';
import { DEMO_AS_OF } from '../src/demo/seed.js';
import { startServerProcess, stopServer, TSX } from './lib.js';
import { median } from './part.js';
import type { WorkerResult } from './sync-worker.js';

const n = Number(process.argv[2] ?? 5000);
const runs = Number(process.argv[3] ?? 3);
const results: WorkerResult[] = [];
for (let i = 0; i < runs; i++) {
  const server = await startServerProcess(n);
  try {
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, [...TSX, packagePath('bench/sync-worker.ts'), server.url, DEMO_AS_OF.toISOString()], { stdio: ['ignore', 'pipe', 'inherit'] });
      let text = '';
      child.stdout!.on('data', (d: Buffer) => (text += d.toString()));
      child.once('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`worker ${code}`))));
    });
    const r = JSON.parse(out.trim().split('\n').pop()!) as WorkerResult;
    results.push(r);
    console.log(`run ${i + 1}: wall ${(r.ms / 1000).toFixed(2)} s, CPU ${(r.cpuMs / 1000).toFixed(2)} s (main thread ${(r.mainThreadCpuMs / 1000).toFixed(2)} s), peak RSS ${r.maxRssMb.toFixed(0)} MB`);
  } finally {
    await stopServer(server);
  }
}
console.log(`median: wall ${(median(results.map((r) => r.ms)) / 1000).toFixed(2)} s, CPU ${(median(results.map((r) => r.cpuMs)) / 1000).toFixed(2)} s (main thread ${(median(results.map((r) => r.mainThreadCpuMs)) / 1000).toFixed(2)} s), peak RSS ${median(results.map((r) => r.maxRssMb)).toFixed(0)} MB`);
