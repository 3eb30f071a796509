/**
 * Integration: a sync authorised by SMART Backend Services, against the embedded FHIR server behind a
 * gate that accepts only tokens of the suite's own token endpoint. The first access token stops being
 * accepted in the middle of the sync (the server ends it early, as when a five-minute token lapses):
 * the sync completes with every patient scored and written, after exactly one token refresh.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import express from 'express';
import { packagePath } from '../../src/core/paths.js';
import { seedDemo } from '../../src/demo/demo.js';
import { loadDiabetesRows } from '../../src/demo/diabetes-rows.js';
import { DEMO_AS_OF } from '../../src/demo/seed.js';
import { publicJwks } from '../../src/fhir/auth/index.js';
import { FhirClient, type ExchangeEvent } from '../../src/fhir/client.js';
import { bearerGate, startSmartAuthServer, type SmartAuthServer } from '../../src/fhir/testing/smart-auth-server.js';
import { createFhirServer, FHIR_BASE_PATH, type FhirServer } from '../../src/server/index.js';
import { prepareModels } from '../../src/sync/models.js';
import { runSync } from '../../src/sync/sync.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../../src/writeback/identifiers.js';

const PATIENTS = 24;
/** FHIR requests the first token serves before the server stops accepting it. */
const FIRST_TOKEN_REQUESTS = 6;

describe('sync with SMART Backend Services (integration)', () => {
  let dir: string;
  let auth: SmartAuthServer;
  let fhir: FhirServer;
  let server: Server;
  let keyFile: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'fhir-ml-smart-sync-'));
    keyFile = path.join(dir, 'es384.pem');
    writeFileSync(keyFile, generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
    auth = await startSmartAuthServer({ clients: [{ clientId: 'nightly-sync', jwks: await publicJwks([{ privateKeyFile: keyFile, kid: 'sync-key' }]) }] });
    fhir = createFhirServer();
    await seedDemo(fhir, loadDiabetesRows().slice(0, PATIENTS));
  }, 60_000);

  afterAll(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await auth.close();
    await fhir.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('completes a sync through a token that expires midway, with exactly one refresh', async () => {
    const gate = bearerGate({ auth, basePath: FHIR_BASE_PATH });
    let servedWithFirst = 0;
    const app = express();
    app.use((req, _res, next) => {
      const first = auth.issued[0];
      if (first && req.get('authorization') === `Bearer ${first}` && ++servedWithFirst > FIRST_TOKEN_REQUESTS) auth.expire(first);
      next();
    });
    app.use(gate.middleware);
    app.use(fhir.app);
    server = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}${FHIR_BASE_PATH}`;
    // The server builds paging links from its own base URL: here, the gate's.
    fhir.setBaseUrl(baseUrl);

    const events: ExchangeEvent[] = [];
    const client = new FhirClient({
      baseUrl,
      auth: { type: 'smart', clientId: 'nightly-sync', privateKeyFile: keyFile, kid: 'sync-key' },
      onExchange: (e) => events.push(e),
    });
    const models = await prepareModels(['diabetes-progression'], { modelsDir: packagePath('models'), mappingsDir: packagePath('mappings') });
    const result = await runSync(client, models, { asOf: DEMO_AS_OF, identifierSystem: DEFAULT_IDENTIFIER_SYSTEM, batchSize: 4, explain: false });

    expect(result.aborted).toBeUndefined();
    expect(result.failed).toBe(0);
    expect(result.byModel['diabetes-progression']).toMatchObject({ scored: PATIENTS, created: PATIENTS });
    // The first token did expire midway and was refused; one refresh served the rest of the run.
    expect(servedWithFirst).toBeGreaterThan(FIRST_TOKEN_REQUESTS);
    expect(gate.counts.unauthorized).toBeGreaterThan(0);
    expect(auth.issued).toHaveLength(2);
    expect(auth.verified.every((v) => v.header.alg === 'ES384' && v.header.kid === 'sync-key')).toBe(true);
    // Every refused request was replayed once and then succeeded.
    const refused = events.filter((e) => e.status === 401);
    expect(refused.length).toBe(gate.counts.unauthorized);
    expect(refused.every((e) => e.outcome === 'retry')).toBe(true);
    expect(events.filter((e) => e.op === 'token')).toHaveLength(2);
  }, 120_000);
});
