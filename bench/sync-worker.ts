/**
 * Benchmark worker: one adapter sync of every patient on a FHIR server, in its own process so its peak
 * RSS and CPU are the adapter's alone. It streams the searches it pages and the transaction bundles it
 * posts to an NDJSON file as it goes (bench/lib.ts RecordingClient), so the benchmark can replay exactly
 * the same HTTP work with a bare client; nothing of the recording stays in memory.
 *
 *   node --import tsx bench/sync-worker.ts <fhir-base-url> <as-of> [recording.ndjson]
 *
 * Prints one JSON line: `ms` (the sync's wall time without the recording's own time), `cpuMs` (this
 * process's CPU during the sync, all threads, without the recording's; `mainThreadCpuMs` the JavaScript
 * thread's alone), `maxRssMb` (peak RSS of the process, start-up and model loading included),
 * `retainedHeapMb` (heap in use after a full collection at the end, with --expose-gc), and the counts.
 */
import { readFileSync } from 'node:fs';
import { boundHeapGrowth } from '../src/core/heap.js';
import { packagePath } from '../src/core/paths.js';
import { prepareModels, runSync } from '../src/sync/index.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../src/writeback/identifiers.js';
import { RecordingClient } from './lib.js';

export interface WorkerResult {
  ms: number;
  cpuMs: number;
  /** CPU of the main (JavaScript) thread alone during the sync (Linux; NaN elsewhere). */
  mainThreadCpuMs: number;
  /** Heap still in use after a full collection at the end (NaN unless node runs with --expose-gc). */
  retainedHeapMb: number;
  recordingMs: number;
  maxRssMb: number;
  patients: number;
  scored: number;
  /** Refused by the model's gates (intended use, out-of-distribution): part of the work, not a failure. */
  skipped: number;
  created: number;
  failed: number;
  requests: number;
}

/** CPU ms of this process's main thread so far, from /proc (Linux); NaN elsewhere. */
function mainThreadCpuMs(): number {
  try {
    const fields = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10; // utime + stime, in clock ticks of 10 ms
  } catch {
    return NaN;
  }
}

async function main(): Promise<void> {
  // As `fhir-ml sync` does before it starts (src/cli/commands/sync.ts).
  boundHeapGrowth();
  const [url, asOf, recordingFile] = process.argv.slice(2);
  const client = new RecordingClient({ baseUrl: url, auth: { type: 'none' } }, recordingFile || undefined);
  const models = await prepareModels(['diabetes-progression'], { modelsDir: packagePath('models'), mappingsDir: packagePath('mappings') });
  const cpu0 = process.cpuUsage();
  const main0 = mainThreadCpuMs();
  const t0 = performance.now();
  const result = await runSync(client, models, {
    asOf: new Date(asOf),
    identifierSystem: DEFAULT_IDENTIFIER_SYSTEM,
    batchSize: 100,
    collectPatients: false,
  });
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const mainCpuMs = mainThreadCpuMs() - main0;
  client.close();
  const totals = result.byModel['diabetes-progression'];
  const maxRssMb = process.resourceUsage().maxRSS / 1024;
  // What the run still holds once its garbage is gone (after the peak RSS is taken).
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const retainedHeapMb = gc ? process.memoryUsage().heapUsed / 1048576 : NaN;
  const out: WorkerResult = {
    ms: wallMs - client.recordingMs,
    cpuMs: (cpu.user + cpu.system) / 1000 - client.recordingMs,
    mainThreadCpuMs: mainCpuMs - client.recordingMs,
    recordingMs: client.recordingMs,
    maxRssMb,
    retainedHeapMb,
    patients: result.patients,
    scored: totals.scored,
    skipped: totals.skipped,
    created: totals.created,
    failed: result.failed,
    requests: result.requests,
  };
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
