import type { ChildProcess } from 'node:child_process';
import { startService, type RunningService } from '../../src/api/service.js';
import type { App } from '../../src/app.js';
import { SCHEMA } from '../../src/db/migrations.js';
import { RunStore, type RunRow } from '../../src/db/runs.js';
import { seedDemo } from '../../src/demo/demo.js';
import { loadDiabetesRows } from '../../src/demo/diabetes-rows.js';
import { startFhirServer, type RunningFhirServer } from '../../src/server/index.js';
import { API_KEY, API_KEY_SHA256, allRiskAssessments, createTestDatabase, serviceConfig, startWorkerChild, testApp, waitFor, type TestDatabase } from './support/service.js';

/**
 * A worker killed with SIGKILL while its run's selection step runs a Bulk Data export (the export kicked
 * off, the server still preparing it): the selection stops reporting, another worker releases it after
 * the heartbeat timeout (not the job's hours-long expiry), resumes the same export without a second
 * kick-off, and completes the run.
 */
const PATIENTS = 6;
const PULL = { strategy: 'bulk', bulk: { pollIntervalMs: 100 } };
let database: TestDatabase;
let fhir: RunningFhirServer;
let api: RunningService | undefined;
let worker: RunningService | undefined;
let child: ChildProcess | undefined;
let app: App;

beforeAll(async () => {
  database = await createTestDatabase('selcrash');
  app = testApp();
  // The export is ready after 12 status polls, a second apart (Retry-After: 1).
  fhir = await startFhirServer({ port: 0, bulkExport: { inProgressPolls: 12, retryAfterSeconds: 1 } });
  await seedDemo(fhir, loadDiabetesRows().slice(0, PATIENTS), new Date(Date.now() - 86_400_000));
});

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await worker?.stop({ graceSeconds: 1 });
  await api?.stop();
  await app?.close();
  await fhir?.close();
  await database?.drop();
});

test('a worker killed during its selection\'s export: another worker releases it at the heartbeat timeout and resumes the export', async () => {
  const config = serviceConfig(fhir.url, {
    databaseUrl: database.url,
    apiKeySha256: API_KEY_SHA256,
    service: { worker: { heartbeatSeconds: 1, heartbeatTimeoutSeconds: 3, retryLimit: 3, retryDelaySeconds: 1, pollingIntervalSeconds: 0.5, batchConcurrency: 1 } },
    source: { pull: PULL },
  });
  api = await startService({ config, app, mode: 'api', listen: { port: 0 } });
  const runs = new RunStore(api.db);
  const started = startWorkerChild({ databaseUrl: database.url, fhirUrl: fhir.url, sourcePull: PULL });
  child = started.process;
  await waitFor('the child worker', async () => started.lines.includes('WORKER_READY'), 90_000);

  const response = await fetch(`${api.url}/sources/test/runs`, { method: 'POST', headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' }, body: '{}' });
  expect(response.status).toBe(202);
  const { run } = (await response.json()) as { run: RunRow };
  const exportsOf = async () => (await api!.db.query<{ id: string; state: string }>(`SELECT id::text, state FROM ${SCHEMA}.bulk_exports WHERE source_id = 'test' ORDER BY id`)).rows;
  await waitFor('the child to kick the export off', async () => (await exportsOf()).length > 0, 60_000, 100);
  child.kill('SIGKILL');
  await new Promise((resolve) => child!.once('exit', resolve));
  expect((await runs.get(run.id))?.state).toBe('selecting');

  worker = await startService({ config, app, mode: 'worker', db: api.db, boss: { maintenanceIntervalSeconds: 1 }, metricsListen: { port: 0 } });
  const done = await waitFor(
    'the run to finish',
    async () => {
      const r = await runs.get(run.id);
      return r?.state === 'succeeded' || r?.state === 'failed' ? r : undefined;
    },
    90_000,
  );
  expect(done).toMatchObject({ state: 'succeeded', mode: 'full', patientsTotal: PATIENTS });
  expect(done.selection?.bulk).toMatchObject({ resumed: true });
  // One export, kicked off by the dead worker, finished by the other.
  expect(await exportsOf()).toEqual([{ id: done.selection!.bulk!.exportId, state: 'complete' }]);
  const { items } = await runs.outcomes(run.id, { limit: 100 });
  expect(items).toHaveLength(PATIENTS);
  const written = await allRiskAssessments(fhir.url);
  expect(written.length).toBe(items.filter((o) => o.status === 'scored').length);
});
