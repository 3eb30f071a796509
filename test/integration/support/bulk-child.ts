/**
 * A process that runs one bulk export into staging on PostgreSQL and reports each staged file on
 * stdout (`FILE_DONE <seq>`), so a test can kill it with SIGKILL mid-download and resume the export.
 * Environment: TEST_DATABASE_URL, TEST_FHIR_URL.
 */
import { openDatabase } from '../../../src/db/database.js';
import { migrate } from '../../../src/db/migrate.js';
import { PgBulkExportStore, StagingStore } from '../../../src/db/staging.js';
import { BulkDataClient, runBulkExport } from '../../../src/fhir/bulk/index.js';
import { FhirClient } from '../../../src/fhir/client.js';

const db = await openDatabase({ url: process.env.TEST_DATABASE_URL });
await migrate(db);
const bulk = new BulkDataClient(new FhirClient({ baseUrl: process.env.TEST_FHIR_URL! }), { pollIntervalMs: 50 });
process.stdout.write('CHILD_READY\n');
await runBulkExport(bulk, new PgBulkExportStore(db), new StagingStore(db), {
  sourceId: 'resume',
  request: { level: { kind: 'patient' }, types: ['Patient', 'Observation'] },
  chunkSize: 50,
  onProgress: (e) => {
    if (e.phase === 'file') process.stdout.write(`FILE_DONE ${e.file.seq}\n`);
  },
});
process.stdout.write('EXPORT_DONE\n');
await db.close();
