/**
 * Profiling aid (not part of `npm run bench`): the adapter's CPU for the batch step alone (mapping,
 * inference, explanations, write plans), without the server: N patients are pulled once from a server
 * process into memory, then scored again and again; prints the CPU per round (median of rounds). Run
 * under `node --cpu-prof` for a profile free of I/O waits.
 *   node --import tsx bench/score-cpu.ts [patients=1000] [rounds=7]
 */
import { packagePath } from '../src/core/paths.js';
import { DEMO_AS_OF } from '../src/demo/seed.js';
import { FhirClient } from '../src/fhir/client.js';
import type { PullResult } from '../src/fhir/pull.js';
import { listPatientIds } from '../src/fhir/pull.js';
import { defaultMapContext, prepareModels, pullStep, scoreBatch } from '../src/sync/index.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../src/writeback/identifiers.js';
import { startServerProcess, stopServer } from './lib.js';
import { median } from './part.js';

const n = Number(process.argv[2] ?? 1000);
const rounds = Number(process.argv[3] ?? 7);
const models = await prepareModels(['diabetes-progression'], { modelsDir: packagePath('models'), mappingsDir: packagePath('mappings') });
const server = await startServerProcess(n);
const batches: { ids: string[]; pull: PullResult }[] = [];
try {
  const client = new FhirClient({ baseUrl: server.url, auth: { type: 'none' } });
  const pull = pullStep(models, DEMO_AS_OF);
  for await (const ids of listPatientIds(client, 100)) batches.push({ ids, pull: await pull(client, ids) });
} finally {
  await stopServer(server);
}
const ctx = {
  models,
  asOf: DEMO_AS_OF,
  identifierSystem: DEFAULT_IDENTIFIER_SYSTEM,
  devices: new Map([['diabetes-progression', 'Device/bench']]),
  mapContext: defaultMapContext(),
  recorded: DEMO_AS_OF,
};
const cpu: number[] = [];
for (let r = 0; r < rounds; r++) {
  const c0 = process.cpuUsage();
  for (const b of batches) await scoreBatch(b.ids, b.pull, ctx);
  const c = process.cpuUsage(c0);
  cpu.push((c.user + c.system) / 1000);
}
console.log(`batch step of ${n} patients: CPU per round ${cpu.map((x) => x.toFixed(0)).join(' ')} ms; median ${median(cpu).toFixed(0)} ms = ${(median(cpu) / n * 1000).toFixed(0)} µs per patient`);
