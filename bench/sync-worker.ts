/**
 * Benchmark worker: one adapter sync of every patient on a FHIR server, in its own process so its peak
 * RSS is the adapter's alone. It records the searches it pages and the transaction bundles it posts, so
 * the benchmark can replay exactly the same HTTP work with a bare client.
 *
 *   node --import tsx bench/sync-worker.ts <fhir-base-url> <as-of> <recording.json>
 */
import { writeFileSync } from 'node:fs';
import { packagePath } from '../src/core/paths.js';
import { prepareModels } from '../src/sync/models.js';
import { runSync } from '../src/sync/sync.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../src/writeback/identifiers.js';
import { RecordingClient } from './lib.js';

async function main(): Promise<void> {
  const [url, asOf, recordingFile] = process.argv.slice(2);
  const client = new RecordingClient({ baseUrl: url, auth: { type: 'none' } });
  const models = await prepareModels(['diabetes-progression'], { modelsDir: packagePath('models'), mappingsDir: packagePath('mappings') });
  const t0 = performance.now();
  const result = await runSync(client, models, {
    asOf: new Date(asOf),
    identifierSystem: DEFAULT_IDENTIFIER_SYSTEM,
    batchSize: 100,
    collectPatients: false,
  });
  const ms = performance.now() - t0;
  const maxRssMb = process.resourceUsage().maxRSS / 1024;
  if (recordingFile) writeFileSync(recordingFile, JSON.stringify(client.recording));
  const totals = result.byModel['diabetes-progression'];
  process.stdout.write(
    JSON.stringify({ ms, maxRssMb, patients: result.patients, scored: totals.scored, created: totals.created, failed: result.failed, requests: result.requests }) + '\n',
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
