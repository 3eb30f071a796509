/**
 * The benchmarks' FHIR server: the embedded server (validation on, as `fhir-ml fhir-server` runs it) in
 * its own process, seeded in that process with N demo patients before it listens, then printing
 * `seeded N patients (M resources) in S s` and `FHIR server listening on <url>`. Seeding in-process
 * instead of over HTTP makes a fresh server for every measured run affordable at 20,000 patients.
 *
 * The first 100 patients go through a validated transaction like any client's; the rest repeat exactly
 * the same shapes and are written without validating each one again. Everything the measured sync and
 * the bare replay write afterwards is validated as usual.
 *
 *   node --import tsx bench/server-process.ts <patients>
 */
import type { Resource } from '@medplum/fhirtypes';
import { putTransaction } from '../src/demo/seed.js';
import { startFhirServer } from '../src/server/index.js';
import { demoPopulation } from './lib.js';

const patients = Number(process.argv[2] ?? 0);
if (!Number.isInteger(patients) || patients < 0) {
  console.error('usage: bench/server-process.ts <patients>');
  process.exit(64);
}

const server = await startFhirServer({ port: 0 });
const t0 = performance.now();
let resources = 0;
let first = true;
for (const part of demoPopulation(patients)) {
  resources += part.length;
  if (first) {
    await server.load(putTransaction(part) as Parameters<typeof server.load>[0]);
    first = false;
    continue;
  }
  await server.repo.runAtomically(
    async () => {
      for (const r of part) await server.repo.createResource(r as Resource);
    },
    { prevalidated: true },
  );
}
process.stdout.write(`seeded ${patients} patients (${resources} resources) in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
process.stdout.write(`FHIR server listening on ${server.url}\n`);

const stop = () => {
  void server.close().finally(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
