import request from 'supertest';
import type { CapabilityStatement, OperationOutcome } from 'fhir/r4.js';
import { createFhirServer, type FhirServer } from './server.js';

const BASE = '/fhir/R4';
const TOKEN = 'test-token-123';
const SMART = {
  token_endpoint: 'http://127.0.0.1:9999/token',
  token_endpoint_auth_methods_supported: ['private_key_jwt'],
  token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
  grant_types_supported: ['client_credentials'],
  scopes_supported: ['system/Patient.rs', 'system/Observation.rs'],
  capabilities: ['client-confidential-asymmetric'],
};

describe('bearer-token gate and SMART discovery', () => {
  let server: FhirServer;
  const seen: (string | undefined)[] = [];
  beforeEach(async () => {
    seen.length = 0;
    server = createFhirServer({
      // Async, as a real verifier (JWKS, introspection) would be.
      authorize: async (header) => {
        seen.push(header);
        return header === `Bearer ${TOKEN}`;
      },
      smartConfiguration: SMART,
      bulkExport: { inProgressPolls: 0 },
    });
    await server.load([{ resourceType: 'Patient', id: 'p1' }] as never);
  });
  afterEach(() => server.close());

  test('no token or a wrong one: 401 with WWW-Authenticate: Bearer, for reads, searches, writes and exports', async () => {
    for (const [method, url] of [
      ['get', '/Patient/p1'],
      ['get', '/Patient?_id=p1'],
      ['post', '/Patient'],
      ['post', ''],
      ['get', '/Patient/_history'],
      ['get', '/$export'],
    ] as const) {
      const missing = await request(server.app)[method](`${BASE}${url}`).set('content-type', 'application/fhir+json').send('{"resourceType":"Patient"}');
      expect({ url, status: missing.status }).toEqual({ url, status: 401 });
      expect(missing.headers['www-authenticate']).toBe('Bearer realm="fhir"');
      expect((missing.body as OperationOutcome).issue[0].code).toBe('login');
      const wrong = await request(server.app)[method](`${BASE}${url}`).set('authorization', 'Bearer nope');
      expect(wrong.status).toBe(401);
      expect(wrong.headers['www-authenticate']).toMatch(/^Bearer .*error="invalid_token"/);
    }
    expect(server.repo.count('Patient')).toBe(1);
    expect(seen).toContain('Bearer nope');
  });

  test('the right token passes; /metadata and /.well-known/smart-configuration stay open', async () => {
    const ok = await request(server.app).get(`${BASE}/Patient/p1`).set('authorization', `Bearer ${TOKEN}`);
    expect(ok.status).toBe(200);
    const metadata = await request(server.app).get(`${BASE}/metadata`);
    expect(metadata.status).toBe(200);
    const security = (metadata.body as CapabilityStatement).rest?.[0].security;
    expect(security?.service?.[0].coding?.[0].code).toBe('SMART-on-FHIR');
    expect(security?.extension?.[0].extension).toEqual([{ url: 'token', valueUri: SMART.token_endpoint }]);
    const smart = await request(server.app).get(`${BASE}/.well-known/smart-configuration`);
    expect(smart.status).toBe(200);
    expect(smart.headers['content-type']).toMatch(/^application\/json/);
    expect(smart.body).toEqual(SMART);
    expect(seen).toEqual([`Bearer ${TOKEN}`]); // discovery never consulted the gate
  });

  test('exports say requiresAccessToken, and their files need the token too', async () => {
    const auth = { authorization: `Bearer ${TOKEN}`, prefer: 'respond-async' };
    const kick = await request(server.app).get(`${BASE}/$export?_type=Patient`).set(auth);
    expect(kick.status).toBe(202);
    const status = (kick.headers['content-location'] as string).replace(/^https?:\/\/[^/]+/, '');
    const manifest = await request(server.app).get(status).set(auth);
    expect(manifest.body.requiresAccessToken).toBe(true);
    const file = (manifest.body.output[0].url as string).replace(/^https?:\/\/[^/]+/, '');
    expect((await request(server.app).get(file)).status).toBe(401);
    expect((await request(server.app).get(file).set(auth)).status).toBe(200);
  });

  test('without smartConfiguration the well-known document is 404 and nothing is gated', async () => {
    const open = createFhirServer();
    expect((await request(open.app).get(`${BASE}/.well-known/smart-configuration`)).status).toBe(404);
    expect((await request(open.app).get(`${BASE}/Patient`)).status).toBe(200);
    expect(((await request(open.app).get(`${BASE}/metadata`)).body as CapabilityStatement).rest?.[0].security).toBeUndefined();
    await open.close();
  });
});
