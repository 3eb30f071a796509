import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startService, type RunningService } from '../../src/api/service.js';
import { AdapterError } from '../../src/core/errors.js';
import { openDatabase } from '../../src/db/database.js';
import { RunStore } from '../../src/db/runs.js';
import { WatermarkStore } from '../../src/db/watermarks.js';
import type { RunningFhirServer } from '../../src/server/index.js';
import type { App } from '../../src/app.js';
import { API_KEY, API_KEY_SHA256, allRiskAssessments, seededFhirServer, serviceConfig, testApp, waitFor } from './support/service.js';

/**
 * The default without DATABASE_URL: an embedded PostgreSQL (PGlite) in the service's process, persisted
 * in a data directory. Migrations, pg-boss (through its `db` option), a run end to end, and the run
 * history still there after a restart; a second process is kept out of the directory.
 */
let fhir: RunningFhirServer;
let dataRoot: string;
let service: RunningService | undefined;
let app: App;

beforeAll(async () => {
  ({ server: fhir } = await seededFhirServer(6));
  dataRoot = mkdtempSync(path.join(tmpdir(), 'fhirml-pglite-'));
  app = testApp();
});

afterAll(async () => {
  await service?.stop({ graceSeconds: 1 });
  await app?.close();
  await fhir?.close();
  rmSync(dataRoot, { recursive: true, force: true });
});

test('a run completes on the embedded database, and its history survives a restart', async () => {
  const dataDir = path.join(dataRoot, 'pgdata');
  const config = serviceConfig(fhir.url, { apiKeySha256: API_KEY_SHA256, service: { database: { dataDir } } });
  expect(config.database.url).toBeUndefined();
  service = await startService({ config, app, listen: { port: 0 } });
  expect(service.db.kind).toBe('embedded');
  const response = await fetch(`${service.url}/sources/test/runs`, { method: 'POST', headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' }, body: '{}' });
  expect(response.status).toBe(202);
  const { run } = (await response.json()) as { run: { id: string } };
  const runs = new RunStore(service.db);
  const done = await waitFor('the run on PGlite', async () => {
    const r = await runs.get(run.id);
    return r?.state === 'succeeded' || r?.state === 'failed' ? r : undefined;
  }, 90_000);
  expect(done).toMatchObject({ state: 'succeeded', mode: 'full', batchesTotal: 2, patientsTotal: 6 });
  const scored = (await runs.outcomes(run.id)).items.filter((o) => o.status === 'scored').length;
  expect((await allRiskAssessments(fhir.url)).length).toBe(scored);
  await service.stop({ graceSeconds: 1 });
  service = undefined;

  const reopened = await openDatabase({ dataDir });
  try {
    const again = await new RunStore(reopened).get(run.id);
    expect(again).toMatchObject({ state: 'succeeded', patientsTotal: 6 });
    const marks = await new WatermarkStore(reopened).get('test', ['diabetes-progression']);
    expect(marks.get('diabetes-progression')?.toISOString()).toBe(done.changesUntil);
  } finally {
    await reopened.close();
  }
});

test('a data directory in use by another live process is refused with a clear error', async () => {
  const dataDir = path.join(dataRoot, 'taken');
  // The lock file sits beside the directory and names a live process that is not this one.
  writeFileSync(`${dataDir}.lock`, String(process.ppid));
  const err = await openDatabase({ dataDir }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(AdapterError);
  expect((err as AdapterError).code).toBe('config-invalid');
  expect((err as AdapterError).message).toMatch(/in use by process \d+.*DATABASE_URL/);
});

test('startServiceForFhirServer gives a running FHIR server an API, a console and a worker in one call', async () => {
  const { startServiceForFhirServer } = await import('../../src/api/service.js');
  const demo = await startServiceForFhirServer({ fhirUrl: fhir.url, models: ['diabetes-progression'], app });
  try {
    expect(demo.db.kind).toBe('embedded');
    expect(demo.consoleUrl).toBe(`${demo.url}/console/`);
    const login = await fetch(`${demo.url}/console/login`, { method: 'POST', body: new URLSearchParams({ apiKey: demo.apiKey }), redirect: 'manual' });
    expect(login.status).toBe(303);
    expect(login.headers.get('set-cookie')).toMatch(/fhirml_session=.*HttpOnly.*SameSite=Strict/i);
    const started = await fetch(`${demo.url}/sources/demo/runs`, { method: 'POST', headers: { authorization: `Bearer ${demo.apiKey}`, 'content-type': 'application/json' }, body: '{}' });
    const { run } = (await started.json()) as { run: { id: string } };
    const runs = new RunStore(demo.db);
    await waitFor('the demo run', async () => (await runs.get(run.id))?.state === 'succeeded', 90_000);
  } finally {
    await demo.stop({ graceSeconds: 1 });
  }
});
