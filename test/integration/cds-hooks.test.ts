import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Bundle, Patient } from 'fhir/r4.js';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import request from 'supertest';
import { createApiApp } from '../../src/api/app.js';
import { cardSchema, discoveryResponseSchema, hookResponseSchema, prefetchQueries } from '../../src/api/cds-hooks/index.js';
import { systemClock, type Clock } from '../../src/core/clock.js';
import { CdsHooksStore } from '../../src/db/cds-hooks.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import { FhirClient } from '../../src/fhir/client.js';
import { pullBatch } from '../../src/fhir/pull.js';
import { createServiceMetrics } from '../../src/jobs/metrics.js';
import { seedDemo } from '../../src/demo/demo.js';
import { loadDiabetesRows } from '../../src/demo/diabetes-rows.js';
import { startFhirServer, type RunningFhirServer } from '../../src/server/index.js';
import { scoreBatch } from '../../src/sync/batch.js';
import { pullSpecFor } from '../../src/sync/pull-step.js';
import { defaultMapContext } from '../../src/sync/run.js';
import type { App } from '../../src/app.js';
import { createTestDatabase, serviceConfig, testApp, type TestDatabase } from './support/service.js';

/**
 * The CDS Hooks service against the embedded FHIR server behind its bearer gate: discovery; patient-view
 * with full prefetch, partial prefetch and none (fetched with the request's fhirAuthorization token, never
 * the adapter's credentials), each giving the same score as the sync's pull; cards valid per the spec's
 * format; feedback recorded; a missing or bad JWT refused.
 */
const BASE = 'https://adapter.test';
const ISSUER = 'https://ehr.test';
const EHR_TOKEN = 'ehr-user-token-for-cds';
const MODEL = 'diabetes-progression';

let database: TestDatabase;
let adapter: App;
let db: Database;
let fhir: RunningFhirServer;
let jwksServer: Server;
let app: express.Express;
let shadowApp: express.Express;
let noCarePlansApp: express.Express;
type SigningKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
let ehrKey: SigningKey;
let otherKey: SigningKey;
const authorizations: (string | undefined)[] = [];
const now = new Date();
const clock: Clock = { now: () => new Date(now), sleep: systemClock.sleep };

beforeAll(async () => {
  adapter = testApp();
  database = await createTestDatabase('cds');
  db = await openDatabase({ url: database.url });
  await migrate(db);

  fhir = await startFhirServer({
    port: 0,
    authorize: (header) => {
      authorizations.push(header);
      return header === `Bearer ${EHR_TOKEN}`;
    },
  });
  await seedDemo(fhir, loadDiabetesRows().slice(0, 3), new Date(now.getTime() - 86_400_000));

  const pair = await generateKeyPair('ES384', { extractable: true });
  ehrKey = pair.privateKey;
  otherKey = (await generateKeyPair('ES384')).privateKey;
  const jwk: JWK = { ...(await exportJWK(pair.publicKey)), kid: 'ehr-1', alg: 'ES384', use: 'sig' };
  const jwksApp = express();
  jwksApp.get('/jwks.json', (_req, res) => res.json({ keys: [jwk] }));
  jwksServer = await new Promise<Server>((resolve) => {
    const s = jwksApp.listen(0, '127.0.0.1', () => resolve(s));
  });
  const jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;

  const apiFor = (options: Record<string, unknown>) =>
    createApiApp({
      db,
      config: serviceConfig(fhir.url, {
        databaseUrl: database.url,
        service: { cdsHooks: { baseUrl: BASE, clients: [{ issuer: ISSUER, jwksUrl, algorithms: ['ES384'], fhirServers: [fhir.url] }] } },
        source: { options },
      }),
      app: adapter,
      clientFor: () => new FhirClient({ baseUrl: fhir.url }),
      metrics: createServiceMetrics({ db }),
      clock,
    });
  app = apiFor({});
  // The same EHR as a source in shadow mode, and as one without CarePlan proposals.
  shadowApp = apiFor({ shadow: true });
  noCarePlansApp = apiFor({ carePlans: false });
});

afterAll(async () => {
  await new Promise((resolve) => jwksServer?.close(resolve));
  await fhir?.close();
  await db?.close();
  await database?.drop();
  await adapter?.close();
});

async function jwt(aud: string, options: { key?: SigningKey; iss?: string; jti?: string; exp?: number; kid?: string; typ?: string } = {}): Promise<string> {
  const iat = Math.floor(now.getTime() / 1000);
  return new SignJWT({ tenant: 'hospital-1' })
    .setProtectedHeader({ alg: 'ES384', kid: options.kid ?? 'ehr-1', typ: options.typ ?? 'JWT' })
    .setIssuer(options.iss ?? ISSUER)
    .setAudience(aud)
    .setIssuedAt(iat)
    .setExpirationTime(options.exp ?? iat + 300)
    .setJti(options.jti ?? randomUUID())
    .sign(options.key ?? ehrKey);
}

const serviceUrl = `${BASE}/cds-services/${MODEL}`;
const fhirAuthorization = { access_token: EHR_TOKEN, token_type: 'Bearer', expires_in: 300, scope: 'user/Patient.read user/Observation.read', subject: 'fhir-ml' };

/** The prefetch a CDS Client would send: each template run against the FHIR server. */
async function prefetchFor(patientId: string, keys: string[]): Promise<Record<string, unknown>> {
  const [model] = await adapter.models([MODEL]);
  const out: Record<string, unknown> = {};
  for (const q of prefetchQueries(pullSpecFor([model], now))) {
    if (!keys.includes(q.key)) continue;
    const url = `${fhir.url}/${q.template.replace('{{context.patientId}}', patientId)}`;
    const response = await fetch(url, { headers: { authorization: `Bearer ${EHR_TOKEN}` } });
    out[q.key] = await response.json();
  }
  return out;
}

/** The score the sync's own pull gives this patient at the same as-of. */
async function syncProbability(patientId: string): Promise<number> {
  const [model] = await adapter.models([MODEL]);
  const client = new FhirClient({ baseUrl: fhir.url, auth: { type: 'bearer', token: EHR_TOKEN } });
  const pull = await pullBatch(client, [patientId], pullSpecFor([model], now), now);
  const scored = await scoreBatch([patientId], pull, { models: [model], asOf: now, identifierSystem: adapter.config.sync.identifierSystem, mapContext: defaultMapContext(), recorded: now, explain: false });
  return scored.entries[0].prediction!.probability;
}

function hookBody(patientId: string, extra: Record<string, unknown>) {
  return { hook: 'patient-view', hookInstance: randomUUID(), context: { userId: 'Practitioner/1', patientId }, ...extra };
}

describe('CDS Hooks discovery', () => {
  it('lists a patient-view service per model with prefetch templates from the mapping', async () => {
    const res = await request(app).get('/cds-services').set('authorization', `Bearer ${await jwt(`${BASE}/cds-services`)}`);
    expect(res.status).toBe(200);
    const body = discoveryResponseSchema.parse(res.body);
    const service = body.services.find((s) => s.id === MODEL)!;
    expect(service.hook).toBe('patient-view');
    expect(service.prefetch!.patient).toBe('Patient/{{context.patientId}}');
    expect(service.prefetch!.observations).toMatch(/^Observation\?patient=\{\{context\.patientId\}\}&code=http%3A%2F%2Floinc\.org%7C39156-5%2C/);
  });
});

describe('CDS Hooks patient-view', () => {
  const patientId = 'demo-0001';
  let expected: number;
  beforeAll(async () => {
    expected = await syncProbability(patientId);
  });

  async function call(body: object) {
    return request(app).post(`/cds-services/${MODEL}`).set('authorization', `Bearer ${await jwt(serviceUrl)}`).send(body);
  }

  it('scores from full prefetch without touching the FHIR server, with a card valid per the spec', async () => {
    const prefetch = await prefetchFor(patientId, ['patient', 'observations', 'conditions', 'reports', 'imaging']);
    const before = authorizations.length;
    const res = await call(hookBody(patientId, { prefetch }));
    expect(res.status).toBe(200);
    expect(authorizations.length).toBe(before);
    const body = hookResponseSchema.parse(res.body);
    expect(body.cards).toHaveLength(1);
    const card = cardSchema.parse(body.cards[0]);
    expect(card.summary).toMatch(/^Diabetes progression at 1 year: (negligible|low|moderate|high|certain) risk \(\d+(\.\d)?%\)/);
    expect(card.detail).toContain('**Why:**');
    expect(card.detail).toContain('**Applicability:**');
    expect(card.detail).toContain('nothing was written to the chart');
    // Without a token the patient's current care cannot be checked: nothing is proposed, and the card says so.
    expect(card.suggestions).toBeUndefined();
    expect(card.detail).toContain('Care plan proposals need read access');
    expect(card.overrideReasons!.length).toBeGreaterThan(0);
    const stored = await db.query<{ probability: number; patient_id: string }>('SELECT probability, patient_id FROM fhirml.cds_cards WHERE uuid = $1', [card.uuid]);
    expect(stored.rows[0].probability).toBeCloseTo(expected, 6);
    // Nothing written: no RiskAssessment on the server.
    const ras = (await (await fetch(`${fhir.url}/RiskAssessment`, { headers: { authorization: `Bearer ${EHR_TOKEN}` } })).json()) as Bundle;
    expect(ras.entry ?? []).toHaveLength(0);
  });

  it('an EHR whose source is in shadow mode sees no card; one whose source proposes no CarePlans gets no suggestion', async () => {
    const body = hookBody(patientId, { fhirServer: fhir.url, fhirAuthorization });
    const shadow = await request(shadowApp).post(`/cds-services/${MODEL}`).set('authorization', `Bearer ${await jwt(serviceUrl)}`).send(body);
    expect(shadow.status).toBe(200);
    expect(hookResponseSchema.parse(shadow.body).cards).toEqual([]);
    const plain = await request(noCarePlansApp).post(`/cds-services/${MODEL}`).set('authorization', `Bearer ${await jwt(serviceUrl)}`).send({ ...body, hookInstance: randomUUID() });
    const cards = hookResponseSchema.parse(plain.body).cards;
    expect(cards).toHaveLength(1);
    expect(cards[0].suggestions).toBeUndefined();
  });

  it('fetches what a partial prefetch lacks with the request\'s token, and gets the same score', async () => {
    const prefetch = await prefetchFor(patientId, ['patient']);
    const before = authorizations.length;
    const res = await call(hookBody(patientId, { prefetch, fhirServer: fhir.url, fhirAuthorization }));
    expect(res.status).toBe(200);
    const fetched = authorizations.slice(before);
    expect(fetched.length).toBeGreaterThan(0);
    expect(new Set(fetched)).toEqual(new Set([`Bearer ${EHR_TOKEN}`]));
    const card = cardSchema.parse(res.body.cards[0]);
    // With the token, the patient's care is read and the CarePlan proposal's activities come as suggestions.
    expect(card.selectionBehavior).toBe('any');
    expect(card.suggestions!.length).toBeGreaterThan(0);
    for (const s of card.suggestions!) {
      expect(s.actions![0]).toMatchObject({ type: 'create', resource: { resourceType: 'ServiceRequest', status: 'draft', intent: 'proposal', subject: { reference: `Patient/${patientId}` } } });
    }
    const stored = await db.query<{ probability: number }>('SELECT probability FROM fhirml.cds_cards WHERE uuid = $1', [card.uuid]);
    expect(stored.rows[0].probability).toBeCloseTo(expected, 6);
  });

  it('fetches everything without prefetch (a prefetch OperationOutcome counts as missing), and gets the same score', async () => {
    const res = await call(hookBody(patientId, { prefetch: { observations: { resourceType: 'OperationOutcome', issue: [] } }, fhirServer: fhir.url, fhirAuthorization }));
    expect(res.status).toBe(200);
    const card = cardSchema.parse(res.body.cards[0]);
    const stored = await db.query<{ probability: number }>('SELECT probability FROM fhirml.cds_cards WHERE uuid = $1', [card.uuid]);
    expect(stored.rows[0].probability).toBeCloseTo(expected, 6);
  });

  it('answers 412 when data is missing and there is no token to fetch it with; refuses a FHIR server not configured', async () => {
    const missing = await call(hookBody(patientId, { prefetch: await prefetchFor(patientId, ['patient']) }));
    expect(missing.status).toBe(412);
    expect(missing.body.resourceType).toBe('OperationOutcome');
    expect(missing.body.issue[0].details.text).toContain('observations');

    const elsewhere = await call(hookBody(patientId, { fhirServer: 'https://other.example/fhir', fhirAuthorization }));
    expect(elsewhere.status).toBe(412);
    expect(elsewhere.body.issue[0].details.text).toContain('not one configured');
  });

  it('gives no card for a patient the prefetch says does not exist', async () => {
    const res = await call(hookBody('nobody', { prefetch: { patient: null, observations: null, conditions: null } }));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ cards: [] });
  });

  it('refuses requests that are not CDS Hooks patient-view calls', async () => {
    const res = await call({ hook: 'order-sign', hookInstance: randomUUID(), context: { patientId } });
    expect(res.status).toBe(400);
    const bad = await call({ hook: 'patient-view', context: {} });
    expect(bad.status).toBe(400);
    expect(bad.body.issue[0].details.text).toMatch(/hookInstance.*context\.patientId/);
  });
});

describe('CDS Hooks feedback', () => {
  it('records accepted and overridden outcomes by card id, without the clinician\'s comment', async () => {
    const prefetch = await prefetchFor('demo-0002', ['patient', 'observations', 'conditions', 'reports', 'imaging']);
    const scored = await request(app).post(`/cds-services/${MODEL}`).set('authorization', `Bearer ${await jwt(serviceUrl)}`).send(hookBody('demo-0002', { prefetch }));
    const cardId = scored.body.cards[0].uuid as string;
    const res = await request(app)
      .post(`/cds-services/${MODEL}/feedback`)
      .set('authorization', `Bearer ${await jwt(`${serviceUrl}/feedback`)}`)
      .send({
        feedback: [
          { card: cardId, outcome: 'overridden', overrideReason: { reason: { system: 'https://fhir-ml-adapter.dev/cds-override-reason', code: 'clinical-judgement' }, userComment: 'Patient Jane told me' }, outcomeTimestamp: '2025-01-15T10:00:00Z' },
          { card: randomUUID(), outcome: 'accepted', acceptedSuggestions: [{ id: randomUUID() }], outcomeTimestamp: '2025-01-15T10:01:00Z' },
        ],
      });
    expect(res.status).toBe(200);
    const store = new CdsHooksStore(db);
    expect(await store.feedbackFor(cardId)).toEqual([{ outcome: 'overridden', acceptedSuggestions: [], overrideCode: 'clinical-judgement', hasComment: true, cardKnown: true }]);
    const all = await db.query<{ n: string }>("SELECT count(*)::text AS n FROM fhirml.cds_feedback WHERE card_known = false AND outcome = 'accepted'");
    expect(all.rows[0].n).toBe('1');
    const text = await db.query<{ t: string }>('SELECT string_agg(row_to_json(f)::text, \'\') AS t FROM fhirml.cds_feedback f');
    expect(text.rows[0].t).not.toContain('Jane');

    const invalid = await request(app).post(`/cds-services/${MODEL}/feedback`).set('authorization', `Bearer ${await jwt(`${serviceUrl}/feedback`)}`).send({ feedback: [{ card: cardId, outcome: 'accepted', outcomeTimestamp: 'yesterday' }] });
    expect(invalid.status).toBe(400);
  });
});

describe('CDS Hooks from a browser (CORS)', () => {
  it('answers a preflight without a JWT, and lets the browser read a refusal', async () => {
    const preflight = await request(app).options(`/cds-services/${MODEL}`).set('origin', 'https://sandbox.cds-hooks.org').set('access-control-request-method', 'POST');
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBe('*');
    expect(preflight.headers['access-control-allow-headers']).toContain('Authorization');
    const refused = await request(app).get('/cds-services').set('origin', 'https://sandbox.cds-hooks.org');
    expect(refused.status).toBe(401);
    expect(refused.headers['access-control-allow-origin']).toBe('*');
  });
});

describe('CDS Client authentication', () => {
  const discovery = `${BASE}/cds-services`;
  const get = (token?: string) => {
    const r = request(app).get('/cds-services');
    return token === undefined ? r : r.set('authorization', `Bearer ${token}`);
  };

  it('refuses a missing JWT', async () => {
    const res = await get();
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
    expect(res.body.issue[0].details.text).toContain('Authorization: Bearer <JWT>');
  });

  it.each([
    ['a signature by another key', async () => jwt(discovery, { key: otherKey }), 'signature'],
    ['another audience', async () => jwt(serviceUrl), 'audience'],
    ['an unknown issuer', async () => jwt(discovery, { iss: 'https://intruder.test' }), 'not a configured CDS client'],
    ['an expired token', async () => jwt(discovery, { exp: Math.floor(now.getTime() / 1000) - 3600 }), 'expired'],
    ['a header without typ JWT', async () => jwt(discovery, { typ: 'at+jwt' }), 'typ'],
    ['not a JWT', async () => 'abc.def', 'Bearer <JWT>'],
  ])('refuses %s', async (_what, make, message) => {
    const res = await get(await make());
    expect(res.status).toBe(401);
    expect(res.body.issue[0].details.text).toContain(message);
  });

  it('refuses an HMAC-signed JWT and a replayed one', async () => {
    const hmac = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256', kid: 'ehr-1', typ: 'JWT' })
      .setIssuer(ISSUER)
      .setAudience(discovery)
      .setIssuedAt()
      .setExpirationTime('5m')
      .setJti(randomUUID())
      .sign(new TextEncoder().encode('a shared secret of thirty-two bytes!'));
    expect((await get(hmac)).status).toBe(401);

    const token = await jwt(discovery);
    expect((await get(token)).status).toBe(200);
    const replay = await get(token);
    expect(replay.status).toBe(401);
    expect(replay.body.issue[0].details.text).toContain('already used');
  });
});

export type { Patient };
