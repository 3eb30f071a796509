import type { ChildProcess } from 'node:child_process';
import { startService, type RunningService } from '../../src/api/service.js';
import { RunStore, type RunRow } from '../../src/db/runs.js';
import type { RunningFhirServer } from '../../src/server/index.js';
import type { App } from '../../src/app.js';
import { API_KEY, API_KEY_SHA256, allRiskAssessments, createTestDatabase, seededFhirServer, serviceConfig, startWorkerChild, testApp, waitFor, type TestDatabase } from './support/service.js';

/**
 * Several workers share one database: a worker process killed with SIGKILL in the middle of a batch
 * (its RiskAssessments written, the batch not yet recorded) leaves work that another worker completes,
 * and the FHIR server ends up with exactly one RiskAssessment per patient.
 */
const PATIENTS = 10;
let database: TestDatabase;
let fhir: RunningFhirServer;
let api: RunningService | undefined;
let worker: RunningService | undefined;
let child: ChildProcess | undefined;
let app: App;

beforeAll(async () => {
  database = await createTestDatabase('crash');
  app = testApp();
  ({ server: fhir } = await seededFhirServer(PATIENTS));
});

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await worker?.stop({ graceSeconds: 1 });
  await api?.stop();
  await app?.close();
  await fhir?.close();
  await database?.drop();
});

test('a worker killed with SIGKILL mid-batch leaves work another worker completes, without duplicate resources', async () => {
  const config = serviceConfig(fhir.url, { databaseUrl: database.url, apiKeySha256: API_KEY_SHA256 });
  api = await startService({ config, app, mode: 'api', listen: { port: 0 } });
  const runs = new RunStore(api.db);
  const started = startWorkerChild({ databaseUrl: database.url, fhirUrl: fhir.url });
  child = started.process;
  await waitFor('the child worker', async () => started.lines.includes('WORKER_READY'), 90_000);

  const response = await fetch(`${api.url}/sources/test/runs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: '{}',
  });
  expect(response.status).toBe(202);
  const { run } = (await response.json()) as { run: RunRow };
  const line = await waitFor('the child to write its first batch', async () => started.lines.find((l) => l.startsWith('BATCH_WRITTEN')), 90_000);
  const seq = Number(line.split(' ')[2]);
  const writtenBeforeKill = (await allRiskAssessments(fhir.url)).length;
  expect(writtenBeforeKill).toBeGreaterThan(0);
  child.kill('SIGKILL');
  await new Promise((resolve) => child!.once('exit', resolve));
  expect((await runs.batches(run.id))[seq].state).toBe('running');

  // Another worker (this process) finds the batch without a heartbeat, releases it and completes the run.
  worker = await startService({ config, app, mode: 'worker', db: api.db, boss: { maintenanceIntervalSeconds: 1 }, metricsListen: { port: 0 } });
  const done = await waitFor(
    'the run to finish',
    async () => {
      const r = await runs.get(run.id);
      return r?.state === 'succeeded' || r?.state === 'failed' ? r : undefined;
    },
    90_000,
  );
  expect(done.state).toBe('succeeded');
  const batches = await runs.batches(run.id);
  expect(batches[seq]).toMatchObject({ state: 'succeeded', attempts: 2, errorCode: 'worker-lost' });
  expect(batches.every((b) => b.state === 'succeeded')).toBe(true);

  const { items } = await runs.outcomes(run.id, { limit: 1000 });
  const scored = items.filter((o) => o.status === 'scored');
  expect(items).toHaveLength(PATIENTS);
  // The re-run batch found its RiskAssessments already on the server.
  expect(scored.filter((o) => o.write === 'already-present').length).toBeGreaterThan(0);
  const all = await allRiskAssessments(fhir.url);
  const identifiers = all.map((ra) => ra.identifier![0].value);
  expect(new Set(identifiers).size).toBe(identifiers.length);
  expect(all).toHaveLength(scored.length);
  const patients = all.map((ra) => ra.subject.reference);
  expect(new Set(patients).size).toBe(patients.length);
});
