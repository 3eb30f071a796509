import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Writable } from 'node:stream';
import express from 'express';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';

type KeyLike = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
import { startService, type RunningService } from '../../src/api/service.js';
import { createLogger } from '../../src/core/log.js';
import type { FhirResource } from 'fhir/r4.js';
import { buildDemoPatient, putTransaction } from '../../src/demo/seed.js';
import { loadDiabetesRows } from '../../src/demo/diabetes-rows.js';
import { createServiceMetrics, fhirExchangeRecorder } from '../../src/jobs/metrics.js';
import { seedDemo } from '../../src/demo/demo.js';
import { startFhirServer, type RunningFhirServer } from '../../src/server/index.js';
import type { App } from '../../src/app.js';
import { API_KEY, API_KEY_SHA256, allRiskAssessments, createTestDatabase, seededFhirServer, serviceConfig, testApp, type TestDatabase } from './support/service.js';

/**
 * The HTTP API (API-only process): authentication on every route but /healthz (API key, JWT of a
 * configured issuer with its JWKS), validation and size limits answered with OperationOutcomes,
 * readiness of the database and each source, prediction from a source (with and without write-back)
 * and from a posted Bundle, Prometheus metrics, and logs without patient ids or tokens.
 */
let database: TestDatabase;
let fhir: RunningFhirServer;
let singlePatient: RunningFhirServer;
let patientIds: string[];
let service: RunningService;
let app: App;
let jwks: Server;
let issuerKey: KeyLike;
let otherKey: KeyLike;
const logLines: string[] = [];
const ISSUER = 'https://idp.test.example';
const AUDIENCE = 'fhir-ml-adapter';
const RUN_ID = '00000000-0000-4000-8000-000000000000';

beforeAll(async () => {
  database = await createTestDatabase('api');
  let dataAsOf: Date;
  ({ server: fhir, patientIds, dataAsOf } = await seededFhirServer(4));
  const pair = await generateKeyPair('ES256');
  issuerKey = pair.privateKey;
  otherKey = (await generateKeyPair('ES256')).privateKey;
  const jwk: JWK = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  const idp = express();
  idp.get('/jwks', (_req, res) => res.json({ keys: [jwk] }));
  jwks = await new Promise<Server>((resolve) => {
    const s = idp.listen(0, '127.0.0.1', () => resolve(s));
  });
  const jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks`;
  const base = serviceConfig(fhir.url, {
    databaseUrl: database.url,
    apiKeySha256: API_KEY_SHA256,
    service: { jwtIssuers: [{ issuer: ISSUER, jwksUrl, audience: AUDIENCE }], api: { bodyLimit: '64kb' } },
  });
  const dead = { ...base.sources[0], id: 'unreachable', baseUrl: 'http://127.0.0.1:9/fhir', options: { ...base.sources[0].options, maxRetries: 0, timeoutMs: 2000 } };
  // An EHR API that answers one patient per search only, with the same patients.
  singlePatient = await startFhirServer({ port: 0, requireSinglePatient: true });
  await seedDemo(singlePatient, loadDiabetesRows().slice(0, 4), dataAsOf);
  const single = { ...base.sources[0], id: 'single', baseUrl: singlePatient.url };
  const config = { ...base, sources: [...base.sources, dead, single] };
  const logger = createLogger({
    level: 'info',
    destination: new Writable({
      write(chunk, _enc, done) {
        logLines.push(chunk.toString());
        done();
      },
    }),
  });
  app = testApp();
  service = await startService({ config, app, mode: 'api', listen: { port: 0 }, logger });
});

afterAll(async () => {
  await service?.stop();
  await app?.close();
  jwks?.closeAllConnections();
  await new Promise((r) => jwks?.close(r));
  await fhir?.close();
  await singlePatient?.close();
  await database?.drop();
});

const jwt = (key: KeyLike, claims: { aud?: string; iss?: string } = {}) =>
  new SignJWT({ scope: 'runs' })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .setIssuer(claims.iss ?? ISSUER)
    .setAudience(claims.aud ?? AUDIENCE)
    .setSubject('ops-robot')
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(key);

async function call(method: string, path: string, options: { token?: string; body?: unknown; raw?: string } = {}): Promise<Response> {
  return fetch(`${service.url}${path}`, {
    method,
    headers: {
      ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
      ...(options.body !== undefined || options.raw !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body)),
  });
}

const PROTECTED: [string, string, unknown?][] = [
  ['GET', '/readyz'],
  ['GET', '/metrics'],
  ['GET', '/sources'],
  ['POST', '/sources/test/runs', {}],
  ['GET', '/sources/test/trend?model=diabetes-progression'],
  ['GET', '/runs'],
  ['GET', `/runs/${RUN_ID}`],
  ['GET', `/outcomes/${RUN_ID}`],
  ['GET', '/models'],
  ['POST', '/models/diabetes-progression/predict', { source: 'test', patientId: 'demo-0001' }],
];

test('/healthz needs no credentials', async () => {
  const res = await call('GET', '/healthz');
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ status: 'ok' });
});

// Objects, not arrays: a row function of arity 3 would be taken for a done-callback test.
test.each(PROTECTED.map(([method, path, body]) => ({ method, path, body })))('$method $path refuses a missing token, a wrong API key and a JWT of another key with 401', async ({ method, path, body }) => {
  const wrongJwt = await jwt(otherKey);
  for (const token of [undefined, 'not-the-key', `${API_KEY}x`, wrongJwt]) {
    const res = await call(method, path, { token, body });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
    const outcome = (await res.json()) as { resourceType: string; issue: { code: string }[] };
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue[0].code).toBe('login');
  }
});

test('an API key or a JWT of the configured issuer is accepted; a JWT for another audience or issuer is not', async () => {
  expect((await call('GET', '/models', { token: API_KEY })).status).toBe(200);
  expect((await call('GET', '/models', { token: await jwt(issuerKey) })).status).toBe(200);
  expect((await call('GET', '/models', { token: await jwt(issuerKey, { aud: 'someone-else' }) })).status).toBe(401);
  expect((await call('GET', '/models', { token: await jwt(issuerKey, { iss: 'https://evil.example' }) })).status).toBe(401);
  const models = (await (await call('GET', '/models', { token: API_KEY })).json()) as { models: { id: string; status: string; usedBySources: string[] }[] };
  expect(models.models.find((m) => m.id === 'diabetes-progression')).toMatchObject({ status: 'ok', usedBySources: ['test', 'unreachable', 'single'] });
});

test('/readyz reports the database and every source, and 503 while one is unreachable', async () => {
  const res = await call('GET', '/readyz', { token: API_KEY });
  expect(res.status).toBe(503);
  const body = (await res.json()) as { checks: { name: string; ok: boolean; error?: string }[] };
  expect(body.checks.find((c) => c.name === 'database')?.ok).toBe(true);
  expect(body.checks.find((c) => c.name === 'source:test')?.ok).toBe(true);
  expect(body.checks.find((c) => c.name === 'source:unreachable')).toMatchObject({ ok: false, error: expect.stringMatching(/^fhir-unavailable/) });
});

test('predict scores a patient from its source without writing, then with write-back, idempotently', async () => {
  const before = (await allRiskAssessments(fhir.url)).length;
  const dry = (await (await call('POST', '/models/diabetes-progression/predict', { token: API_KEY, body: { source: 'test', patientId: patientIds[0] } })).json()) as Record<string, unknown>;
  expect(dry).toMatchObject({ modelId: 'diabetes-progression', patientId: patientIds[0], status: 'scored', write: 'not-requested' });
  expect(dry.probability).toEqual(expect.any(Number));
  expect((await allRiskAssessments(fhir.url)).length).toBe(before);
  const body = { source: 'test', patientId: patientIds[0], write: true, asOf: new Date().toISOString() };
  const written = (await (await call('POST', '/models/diabetes-progression/predict', { token: API_KEY, body })).json()) as Record<string, unknown>;
  expect(written).toMatchObject({ status: 'scored', write: 'created', probability: dry.probability });
  const again = (await (await call('POST', '/models/diabetes-progression/predict', { token: API_KEY, body })).json()) as Record<string, unknown>;
  expect(again.write).toBe('already-present');
  expect((await allRiskAssessments(fhir.url)).length).toBe(before + 1);
});

test('predict from a source that answers one patient per search: the same score, and its CarePlan proposal written', async () => {
  const asOf = new Date(Date.now() - 60_000).toISOString();
  const reference = (await (await call('POST', '/models/diabetes-progression/predict', { token: API_KEY, body: { source: 'test', patientId: patientIds[2], asOf } })).json()) as Record<string, unknown>;
  const res = await call('POST', '/models/diabetes-progression/predict', { token: API_KEY, body: { source: 'single', patientId: patientIds[2], asOf, write: true } });
  expect(res.status).toBe(200);
  const single = (await res.json()) as Record<string, unknown>;
  expect(single).toMatchObject({ status: 'scored', write: 'created', probability: reference.probability, band: reference.band });
  expect((await allRiskAssessments(singlePatient.url)).length).toBe(1);
});

test('predict scores the patient of a posted Bundle, the same as from the server, and refuses resources of another subject', async () => {
  const row = loadDiabetesRows()[1];
  const dataAsOf = new Date(Date.now() - 86_400_000);
  const resources = buildDemoPatient(row, 1, dataAsOf).map((r) => ({ ...r, id: `b-${r.id}` }));
  for (const r of resources) if ('subject' in r && r.subject) r.subject = { reference: `Patient/b-${patientIds[1]}` };
  const asOf = new Date().toISOString();
  const bundle = { resourceType: 'Bundle', type: 'collection', entry: resources.map((resource) => ({ resource })) };
  const res = await call('POST', '/models/diabetes-progression/predict', { token: API_KEY, body: { bundle, asOf } });
  expect(res.status).toBe(200);
  const scored = (await res.json()) as { status: string; probability: number; features: { id: string; unit?: string; transforms?: string }[] };
  expect(scored.status).toBe('scored');
  const fromServer = (await (await call('POST', '/models/diabetes-progression/predict', { token: API_KEY, body: { source: 'test', patientId: patientIds[1], asOf } })).json()) as { probability: number };
  expect(scored.probability).toBeCloseTo(fromServer.probability, 6);
  expect(scored.features.find((f) => f.id === 'glucose')?.unit).toBe('mg/dL');
  expect(scored.features.find((f) => f.id === 'ln_tg')).toMatchObject({ unit: 'mg/dL', transforms: expect.stringMatching(/^log, standardize\(/) });

  const foreign = { ...bundle, entry: [...bundle.entry, { resource: { ...resources.find((r) => r.resourceType === 'Observation')!, id: 'x1', subject: { reference: 'Patient/other' } } }] };
  const refused = await call('POST', '/models/diabetes-progression/predict', { token: API_KEY, body: { bundle: foreign } });
  expect(refused.status).toBe(400);
  expect(JSON.stringify(await refused.json())).toMatch(/not about the bundle's Patient/);
});

/** A CURB-65 patient (score 3: confusion in the report, systolic 89, age 80), with data hours before `asOf`. */
function curb65Patient(id: string, asOf: Date): FhirResource[] {
  const before = (h: number) => new Date(asOf.getTime() - h * 3_600_000).toISOString();
  const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');
  const loinc = (code: string, display: string) => ({ coding: [{ system: 'http://loinc.org', code, display }], text: display });
  const quantity = (suffix: string, code: string, display: string, value: number, unit: string): FhirResource => ({
    resourceType: 'Observation',
    id: `${id}-${suffix}`,
    status: 'final',
    code: loinc(code, display),
    subject: { reference: `Patient/${id}` },
    effectiveDateTime: before(3),
    valueQuantity: { value, unit, system: 'http://unitsofmeasure.org', code: unit },
  });
  const report =
    'EXAM: XR chest portable.\nINDICATION: New confusion, fever.\nFINDINGS: Patchy right lower lobe consolidation.\nIMPRESSION: Right lower lobe pneumonia.';
  return [
    { resourceType: 'Patient', id, birthDate: '1944-01-15', gender: 'female' },
    {
      resourceType: 'DiagnosticReport',
      id: `${id}-xr`,
      status: 'final',
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0074', code: 'RAD', display: 'Radiology' }] }],
      code: loinc('30746-2', 'XR Chest Portable Single view'),
      subject: { reference: `Patient/${id}` },
      effectiveDateTime: before(20),
      issued: before(19),
      presentedForm: [{ contentType: 'text/plain', data: b64(report), title: 'XR Chest Portable Single view' }],
    },
    quantity('bun', '3094-0', 'Urea nitrogen [Mass/volume] in Serum or Plasma', 15, 'mg/dL'),
    quantity('rr', '9279-1', 'Respiratory rate', 22, '/min'),
    quantity('sbp', '8480-6', 'Systolic blood pressure', 89, 'mm[Hg]'),
    quantity('dbp', '8462-4', 'Diastolic blood pressure', 70, 'mm[Hg]'),
  ];
}

test('predict maps report findings with the clinical NLP, as a run does: CURB-65 from a posted Bundle and from the source', async () => {
  const asOf = new Date(Date.now() - 3_600_000);
  const resources = curb65Patient('curb-api', asOf);
  const bundle = { resourceType: 'Bundle', type: 'collection', entry: resources.map((resource) => ({ resource })) };
  const res = await call('POST', '/models/curb65/predict', { token: API_KEY, body: { bundle, asOf: asOf.toISOString() } });
  expect(res.status).toBe(200);
  const posted = (await res.json()) as { status: string; probability: number; outputs: { score: number }; features: { id: string; value: number | null }[] };
  // Confusion is affirmed in the report: only the report analyzer of the composition root finds it.
  expect(posted.features.find((f) => f.id === 'confusion')?.value).toBe(1);
  expect(posted).toMatchObject({ status: 'scored', outputs: { score: 3 } });
  expect(posted.probability).toBeCloseTo(0.17, 6);

  await fhir.load(putTransaction(resources) as Parameters<RunningFhirServer['load']>[0]);
  const fromSource = (await (await call('POST', '/models/curb65/predict', { token: API_KEY, body: { source: 'test', patientId: 'curb-api', asOf: asOf.toISOString() } })).json()) as {
    status: string;
    probability: number;
    outputs: { score: number };
    write: string;
  };
  expect(fromSource).toMatchObject({ status: 'scored', outputs: { score: 3 }, write: 'not-requested' });
  expect(fromSource.probability).toBeCloseTo(posted.probability, 6);
});

test('bodies are validated with every problem named, and limited in size', async () => {
  const both = await call('POST', '/models/diabetes-progression/predict', { token: API_KEY, body: { source: 'test', bundle: { resourceType: 'Bundle' }, write: 'yes' } });
  expect(both.status).toBe(400);
  const text = ((await both.json()) as { issue: { details: { text: string } }[] }).issue[0].details.text;
  expect(text).toMatch(/body.write/);
  expect(text).toMatch(/not both/);
  expect((await call('POST', '/sources/test/runs', { token: API_KEY, body: { asOf: 'tomorrow' } })).status).toBe(400);
  // A bad as-of is named with the body's other problems, not on a second try.
  const several = await call('POST', '/sources/test/runs', { token: API_KEY, body: { asOf: 'tomorrow', full: 'yes' } });
  expect(several.status).toBe(400);
  const severalText = ((await several.json()) as { issue: { details: { text: string } }[] }).issue[0].details.text;
  expect(severalText).toMatch(/body\.full/);
  expect(severalText).toMatch(/body\.asOf: "tomorrow" is not a date/);
  // A body that is not JSON is a 400 naming what is expected, not an internal error.
  const plain = await fetch(`${service.url}/models/diabetes-progression/predict`, { method: 'POST', headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'text/plain' }, body: 'x' });
  expect(plain.status).toBe(400);
  expect(((await plain.json()) as { issue: { details: { text: string } }[] }).issue[0].details.text).toMatch(/expected a JSON object \(Content-Type: application\/json/);
  expect((await call('POST', '/sources/test/runs', { token: API_KEY, body: { unknown: 1 } })).status).toBe(400);
  expect((await call('POST', '/sources/nope/runs', { token: API_KEY, body: {} })).status).toBe(404);
  expect((await call('POST', '/sources/test/runs', { token: API_KEY, raw: '{"asOf":' })).status).toBe(400);
  const big = await call('POST', '/models/diabetes-progression/predict', { token: API_KEY, raw: JSON.stringify({ bundle: { resourceType: 'Bundle', pad: 'x'.repeat(70_000) } }) });
  expect(big.status).toBe(413);
  expect(((await big.json()) as { resourceType: string }).resourceType).toBe('OperationOutcome');
  expect((await call('GET', '/runs/not-a-uuid', { token: API_KEY })).status).toBe(404);
});

test('a run started through the API shows in /runs and /sources; queue depth and FHIR exchanges show in /metrics', async () => {
  const started = await call('POST', '/sources/test/runs', { token: API_KEY, body: {} });
  expect(started.status).toBe(202);
  const { run } = (await started.json()) as { run: { id: string } };
  const list = (await (await call('GET', '/runs?source=test', { token: API_KEY })).json()) as { runs: { id: string; state: string }[] };
  expect(list.runs[0]).toMatchObject({ id: run.id, state: 'queued' });
  const sources = (await (await call('GET', '/sources', { token: API_KEY })).json()) as { sources: { id: string; activeRunId: string | null }[] };
  expect(sources.sources.find((s) => s.id === 'test')?.activeRunId).toBe(run.id);

  const recorder = fhirExchangeRecorder(service.metrics, 'recorded');
  recorder({ op: 'search', resourceType: 'Observation', attempt: 1, status: 503, outcome: 'retry', durationMs: 40 });
  recorder({ op: 'search', resourceType: 'Observation', attempt: 2, status: 200, outcome: 'ok', durationMs: 25 });
  const metrics = await (await call('GET', '/metrics', { token: API_KEY })).text();
  expect(metrics).toMatch(/fhirml_queue_depth\{queue="source-run\.test"\} 1/);
  expect(metrics).toMatch(/fhirml_run_triggers_total\{source="test",result="started"\} 1/);
  expect(metrics).toMatch(/fhirml_fhir_requests_total\{source="recorded",op="search",resource_type="Observation",outcome="retry"\} 1/);
  expect(metrics).toMatch(/fhirml_fhir_retries_total\{source="recorded",op="search",resource_type="Observation"\} 1/);
  expect(metrics).toMatch(/fhirml_fhir_request_duration_seconds_count\{source="recorded",op="search",resource_type="Observation"\} 2/);
  // The sources' own clients record every real exchange: the searches of the predictions above, and the
  // unreachable source's failed CapabilityStatement reads of /readyz.
  expect(metrics).toMatch(/fhirml_fhir_requests_total\{source="test",op="search",resource_type="Observation",outcome="ok"\} [1-9]/);
  expect(metrics).toMatch(/fhirml_fhir_request_duration_seconds_count\{source="test",op="search",resource_type="Patient"\} [1-9]/);
  expect(metrics).toMatch(/fhirml_fhir_requests_total\{source="unreachable",op="capabilities",resource_type="CapabilityStatement",outcome="failed"\} [1-9]/);
});

test('the metrics registry is per service, so two services in one process do not collide', () => {
  const a = createServiceMetrics({ defaultMetrics: false });
  const b = createServiceMetrics({ defaultMetrics: false });
  a.batches.inc({ result: 'succeeded' });
  expect(a.registry).not.toBe(b.registry);
});

test('logs name routes, statuses and principals, never patient ids, tokens or query strings', () => {
  const text = logLines.join('');
  expect(text).toMatch(/"route":"\/models\/:id\/predict"/);
  expect(text).toMatch(/"principal":"key:test"/);
  expect(text).toMatch(/"principal":"jwt:https:\/\/idp.test.example#ops-robot"/);
  for (const id of patientIds) expect(text).not.toContain(id);
  expect(text).not.toContain(API_KEY);
  expect(text).not.toContain('model=diabetes-progression');
});
