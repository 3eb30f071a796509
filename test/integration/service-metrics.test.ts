import type { App } from '../../src/app.js';
import type { ServiceConfig } from '../../src/config/sources.js';
import { startService, type RunningService } from '../../src/api/service.js';
import { RunStore } from '../../src/db/runs.js';
import { startFaultProxy, type FaultProxy } from '../../src/fhir/testing/fault-proxy.js';
import { triggerRun } from '../../src/jobs/trigger.js';
import type { RunningFhirServer } from '../../src/server/index.js';
import { API_KEY, API_KEY_SHA256, createTestDatabase, seededFhirServer, serviceConfig, testApp, waitFor, type TestDatabase } from './support/service.js';

/**
 * A worker-only process serves /metrics on a listener of its own, and the request metrics come from the
 * source's own FHIR client: every HTTP attempt of a real run (the selection and the batches, through a
 * proxy that fails one search once) with its outcome and latency, the retry included.
 */
const PATIENTS = 6;
let database: TestDatabase;
let fhir: RunningFhirServer;
let proxy: FaultProxy;
let app: App;
let worker: RunningService;
let config: ServiceConfig;

beforeAll(async () => {
  database = await createTestDatabase('metrics');
  ({ server: fhir } = await seededFhirServer(PATIENTS));
  const upstream = new URL(fhir.url);
  proxy = await startFaultProxy({
    target: upstream.origin,
    script: [{ match: (r) => r.method === 'GET' && r.url.startsWith(`${upstream.pathname}/Observation?`), faults: ['500'] }],
  });
  app = testApp();
  config = serviceConfig(`${proxy.origin}${upstream.pathname}`, { databaseUrl: database.url, apiKeySha256: API_KEY_SHA256 });
  worker = await startService({
    config,
    app,
    mode: 'worker',
    metricsListen: { port: 0 },
  });
});

afterAll(async () => {
  await worker?.stop({ graceSeconds: 1 });
  await app?.close();
  await proxy?.close();
  await fhir?.close();
  await database?.drop();
});

test('a worker-only process serves /healthz and, with the API credentials, /metrics; nothing else', async () => {
  expect(worker.url).toBeUndefined();
  expect(worker.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  expect((await fetch(`${worker.metricsUrl}/healthz`)).status).toBe(200);
  const refused = await fetch(`${worker.metricsUrl}/metrics`, { headers: { authorization: 'Bearer not-the-key' } });
  expect(refused.status).toBe(401);
  expect(refused.headers.get('www-authenticate')).toMatch(/^Bearer/);
  expect(((await refused.json()) as { issue: { code: string }[] }).issue[0].code).toBe('login');
  expect((await fetch(`${worker.metricsUrl}/runs`, { headers: { authorization: `Bearer ${API_KEY}` } })).status).toBe(404);
});

test('every FHIR exchange of a run is recorded per source with its outcome and latency, the retried one too', async () => {
  const started = await triggerRun({ db: worker.db, boss: worker.boss }, config.sources[0], { trigger: 'test', asOf: new Date() });
  if (!started.started) throw new Error('the run did not start');
  const runs = new RunStore(worker.db);
  const done = await waitFor('the run', async () => {
    const r = await runs.get(started.run.id);
    return r?.state === 'succeeded' || r?.state === 'failed' ? r : undefined;
  });
  expect(done.state).toBe('succeeded');
  expect(proxy.injected()).toEqual({ '500': 1 });

  const text = await (await fetch(`${worker.metricsUrl}/metrics`, { headers: { authorization: `Bearer ${API_KEY}` } })).text();
  const sum = (pattern: RegExp) => [...text.matchAll(pattern)].reduce((n, m) => n + Number(m[1]), 0);
  expect(text).toMatch(/fhirml_fhir_requests_total\{source="test",op="search",resource_type="Observation",outcome="retry"\} 1\n/);
  expect(text).toMatch(/fhirml_fhir_retries_total\{source="test",op="search",resource_type="Observation"\} 1\n/);
  expect(sum(/fhirml_fhir_request_duration_seconds_count\{source="test",op="search",resource_type="Observation"\} (\d+)/g)).toBeGreaterThanOrEqual(2);
  // Every attempt that reached the wire is counted once: the proxy saw exactly as many.
  expect(sum(/fhirml_fhir_requests_total\{source="test",[^}]*\} (\d+)/g)).toBe(proxy.log.length);
  // The batches' own tallies (their share of those exchanges, the retry included) are in the run history.
  const counts = await runs.counts(done.id);
  expect(counts.requests).toBeGreaterThan(0);
  expect(counts.requests).toBeLessThan(proxy.log.length);
  expect(text).toMatch(/fhirml_batches_total\{result="succeeded"\} 2\n/);
  expect(text).toMatch(/fhirml_runs_total\{source="test",state="succeeded"\} 1\n/);
  expect(sum(/fhirml_patients_total\{model="diabetes-progression",status="scored",reason=""\} (\d+)/g)).toBe(PATIENTS);
});
