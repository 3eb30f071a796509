import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import express from 'express';
import type { App } from '../../src/app.js';
import { startService, type RunningService } from '../../src/api/service.js';
import { loadServiceConfig } from '../../src/config/sources.js';
import { AdapterError } from '../../src/core/errors.js';
import { seedDemo } from '../../src/demo/demo.js';
import { loadDiabetesRows } from '../../src/demo/diabetes-rows.js';
import { RunStore, type RunRow } from '../../src/db/runs.js';
import { publicJwks } from '../../src/fhir/auth/index.js';
import { bearerGate, startSmartAuthServer, type SmartAuthServer } from '../../src/fhir/testing/smart-auth-server.js';
import { createFhirServer, FHIR_BASE_PATH, type FhirServer } from '../../src/server/index.js';
import { API_KEY, API_KEY_SHA256, createTestDatabase, testApp, waitFor, type TestDatabase } from './support/service.js';

/**
 * A source of the sources file authorised by SMART Backend Services: the `smart` block (client id, a
 * private key file relative to the sources file, kid), discovery through the server's
 * .well-known/smart-configuration, and a FHIR server that accepts only the token endpoint's tokens.
 * A run completes with every RiskAssessment written, and the token requests show in the metrics.
 */
const PATIENTS = 6;
let dir: string;
let database: TestDatabase;
let auth: SmartAuthServer;
let fhir: FhirServer;
let server: Server;
let baseUrl: string;
let app: App;
let service: RunningService | undefined;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'fhirml-service-smart-'));
  mkdirSync(path.join(dir, 'secrets'));
  const keyFile = path.join(dir, 'secrets', 'fhir-ml.pem');
  writeFileSync(keyFile, generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
  auth = await startSmartAuthServer({ clients: [{ clientId: 'fhir-ml-service', jwks: await publicJwks([{ privateKeyFile: keyFile, kid: 'service-key' }]) }] });
  fhir = createFhirServer();
  await seedDemo(fhir, loadDiabetesRows().slice(0, PATIENTS), new Date(Date.now() - 86_400_000));
  const gated = express();
  gated.use(bearerGate({ auth, basePath: FHIR_BASE_PATH }).middleware);
  gated.use(fhir.app);
  server = await new Promise<Server>((resolve) => {
    const s = gated.listen(0, '127.0.0.1', () => resolve(s));
  });
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}${FHIR_BASE_PATH}`;
  fhir.setBaseUrl(baseUrl);
  database = await createTestDatabase('smart');
  app = testApp();
});

afterAll(async () => {
  await service?.stop({ graceSeconds: 1 });
  await app?.close();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await auth?.close();
  await fhir?.close();
  await database?.drop();
  rmSync(dir, { recursive: true, force: true });
});

function sourcesFile(name: string, keyFile: string): string {
  const file = path.join(dir, name);
  writeFileSync(
    file,
    `service:
  apiKeys: [{ name: ops, sha256: ${API_KEY_SHA256} }]
sources:
  - id: ehr
    baseUrl: ${baseUrl}
    auth:
      type: smart
      clientId: fhir-ml-service
      privateKeyFile: ${keyFile}
      kid: service-key
    models: [diabetes-progression]
`,
  );
  return file;
}

test('a SMART source runs end to end: discovery, a signed assertion, a token, every RiskAssessment written', async () => {
  // The key file's path is relative to the sources file.
  const config = loadServiceConfig(sourcesFile('sources.yaml', 'secrets/fhir-ml.pem'), { DATABASE_URL: database.url });
  expect(config.sources[0].auth).toMatchObject({ type: 'smart', privateKeyFile: path.join(dir, 'secrets', 'fhir-ml.pem') });
  service = await startService({ config, app, listen: { port: 0 } });
  const response = await fetch(`${service.url}/sources/ehr/runs`, { method: 'POST', headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' }, body: '{}' });
  expect(response.status).toBe(202);
  const { run } = (await response.json()) as { run: RunRow };
  const runs = new RunStore(service.db);
  const done = await waitFor('the run', async () => {
    const r = await runs.get(run.id);
    return r?.state === 'succeeded' || r?.state === 'failed' ? r : undefined;
  });
  expect(done).toMatchObject({ state: 'succeeded', patientsTotal: PATIENTS });
  const scored = (await runs.outcomes(run.id)).items.filter((o) => o.status === 'scored');
  expect(scored.length).toBeGreaterThan(0);
  // The FHIR server only answers with a token of the auth server: the writes went through with it.
  const token = auth.issued.at(-1)!;
  const written = ((await (await fetch(`${baseUrl}/RiskAssessment?_summary=count`, { headers: { authorization: `Bearer ${token}` } })).json()) as { total: number }).total;
  expect(written).toBe(scored.length);
  expect(auth.verified[0]).toMatchObject({ header: { alg: 'ES384', kid: 'service-key', typ: 'JWT' }, payload: { iss: 'fhir-ml-service', sub: 'fhir-ml-service' } });
  const metrics = await (await fetch(`${service.url}/metrics`, { headers: { authorization: `Bearer ${API_KEY}` } })).text();
  expect(metrics).toMatch(/fhirml_fhir_requests_total\{source="ehr",op="token",resource_type="access-token",outcome="ok"\} [1-9]/);
  expect(metrics).toMatch(/fhirml_fhir_requests_total\{source="ehr",op="discovery",resource_type="smart-configuration",outcome="ok"\} 1\n/);
  await service.stop({ graceSeconds: 1 });
  service = undefined;
  // Without a token the gate refuses (the server is not open by accident).
  expect((await fetch(`${baseUrl}/RiskAssessment?_summary=count`)).status).toBe(401);
});

test('a SMART key that is not a usable private key stops the start with the source and the file named', async () => {
  const bad = path.join(dir, 'secrets', 'not-a-key.pem');
  writeFileSync(bad, 'this is not a key');
  const config = loadServiceConfig(sourcesFile('bad.yaml', bad), { DATABASE_URL: database.url });
  const err = await startService({ config, app, listen: { port: 0 } }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(AdapterError);
  expect((err as AdapterError).code).toBe('config-invalid');
  expect((err as AdapterError).message).toMatch(/source ehr: SMART private key file .*not-a-key\.pem: is neither PEM/);
  expect((err as AdapterError).message).not.toContain('this is not a key');
});
