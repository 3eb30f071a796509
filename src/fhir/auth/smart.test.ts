/**
 * SMART Backend Services against a token endpoint of the suite's own (express + jose verifying the
 * assertions) and the embedded FHIR server behind a bearer-checking gate.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import express from 'express';
import type { Patient } from 'fhir/r4.js';
import type { Clock } from '../../core/clock.js';
import { AdapterError } from '../../core/errors.js';
import { createLogger, type Logger } from '../../core/log.js';
import { createFhirServer, FHIR_BASE_PATH, type FhirServer } from '../../server/index.js';
import { FhirClient, type FhirClientOptions } from '../client.js';
import { caught } from '../testing/assertions.js';
import { bearerGate, startSmartAuthServer, type BearerGateOptions, type SmartAuthServer } from '../testing/smart-auth-server.js';
import { publicJwks } from './keys.js';
import type { SmartAuthOptions } from './smart-options.js';

const CLIENT_ID = 'fhir-ml-adapter-test';
let dir: string;
let rsaFile: string;
let ecFile: string;
let strangerFile: string;
let auth: SmartAuthServer;
let fhir: FhirServer;
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'fhir-ml-smart-'));
  rsaFile = path.join(dir, 'rsa.pem');
  writeFileSync(rsaFile, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
  ecFile = path.join(dir, 'ec.jwk.json');
  writeFileSync(ecFile, JSON.stringify({ ...generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'jwk' }), kid: 'ec-key' }));
  strangerFile = path.join(dir, 'stranger.pem');
  writeFileSync(strangerFile, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
  // The EHR registered the adapter by the JWKS the adapter publishes.
  const jwks = await publicJwks([{ privateKeyFile: rsaFile, kid: 'rsa-key' }, { privateKeyFile: ecFile }]);
  auth = await startSmartAuthServer({ clients: [{ clientId: CLIENT_ID, jwks }] });
  fhir = createFhirServer();
  await fhir.load(['p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7', 'p8'].map((id) => ({ resourceType: 'Patient', id })) as Parameters<FhirServer['load']>[0]);
});
afterAll(async () => {
  await Promise.all(closers.map((c) => c()));
  await auth.close();
  await fhir.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The embedded FHIR server behind a gate that checks bearer tokens with the auth server. */
async function gatedServer(options: Partial<BearerGateOptions> = {}) {
  const gate = bearerGate({ auth, basePath: FHIR_BASE_PATH, ...options });
  const app = express();
  app.use(gate.middleware);
  app.use(fhir.app);
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  closers.push(() => new Promise((resolve) => server.close(() => resolve())));
  return { baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}${FHIR_BASE_PATH}`, counts: gate.counts };
}

function smartClient(baseUrl: string, smart: Partial<SmartAuthOptions> = {}, extra: Partial<FhirClientOptions> = {}): FhirClient {
  return new FhirClient({
    baseUrl,
    auth: { type: 'smart', clientId: CLIENT_ID, privateKeyFile: rsaFile, kid: 'rsa-key', ...smart },
    random: () => 0,
    ...extra,
  });
}

function capture(): { logger: Logger; text: () => string } {
  const stream = new PassThrough();
  const lines: string[] = [];
  stream.on('data', (chunk: Buffer) => lines.push(chunk.toString('utf8')));
  const logger = createLogger({ level: 'trace', destination: stream });
  return { logger, text: () => (logger.flush(), lines.join('')) };
}

describe('SMART Backend Services client assertion', () => {
  it.each([
    ['RS384', { privateKeyFile: undefined, kid: 'rsa-key' }, 'rsa-key'],
    ['ES384', { privateKeyFile: 'ec', kid: undefined }, 'ec-key'],
  ])('signs %s assertions with the claims the IG requires, found through discovery', async (alg, key, kid) => {
    const { baseUrl } = await gatedServer();
    const before = auth.verified.length;
    const client = smartClient(baseUrl, { ...(key.privateKeyFile ? { privateKeyFile: ecFile } : {}), kid: key.kid });
    const startedS = Math.floor(Date.now() / 1000);
    expect((await client.read<Patient>('Patient', 'p1')).id).toBe('p1');

    expect(auth.verified).toHaveLength(before + 1); // the token endpoint's jose verification passed
    const { header, payload, form } = auth.verified[before];
    expect(header).toEqual({ alg, kid, typ: 'JWT' });
    expect(payload.iss).toBe(CLIENT_ID);
    expect(payload.sub).toBe(CLIENT_ID);
    expect(payload.aud).toBe(auth.tokenEndpoint);
    expect(payload.exp! - startedS).toBeLessThanOrEqual(300);
    expect(payload.exp! - startedS).toBeGreaterThan(60);
    expect(payload.jti).toMatch(/^[0-9a-f-]{36}$/);
    expect(form).toEqual({
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      scope: expect.stringContaining('system/Observation.rs') as string,
    });
    expect(form.scope.split(' ')).toEqual(expect.arrayContaining(['system/RiskAssessment.crs', 'system/Provenance.cu']));
  });

  it('uses a new jti on every token request', async () => {
    const { baseUrl } = await gatedServer();
    const before = auth.verified.length;
    const clients = [smartClient(baseUrl), smartClient(baseUrl), smartClient(baseUrl)];
    for (const c of clients) await c.read('Patient', 'p1');
    const jtis = auth.verified.slice(before).map((v) => v.payload.jti);
    expect(new Set(jtis).size).toBe(3);
  });

  it('requests the configured scopes, v1 forms included', async () => {
    const { baseUrl } = await gatedServer();
    const before = auth.verified.length;
    await smartClient(baseUrl, { scopes: ['system/Patient.read', 'system/RiskAssessment.write'] }).read('Patient', 'p1');
    expect(auth.verified[before].form.scope).toBe('system/Patient.read system/RiskAssessment.write');
  });
});

describe('SMART discovery', () => {
  it('refuses a server that does not accept the key’s algorithm, saying so', async () => {
    const { baseUrl, counts } = await gatedServer({ smartConfiguration: { token_endpoint_auth_signing_alg_values_supported: ['ES384'] } });
    const err = await caught(smartClient(baseUrl).read('Patient', 'p1'));
    expect(err.code).toBe('fhir-auth');
    expect(err.message).toMatch(/does not accept RS384 assertions \(it lists ES384\)/);
    expect(counts.authorized + counts.unauthorized).toBe(0);
  });

  it('says what to do when the server publishes no SMART configuration, and works with tokenEndpoint set', async () => {
    const { baseUrl } = await gatedServer({ smartConfiguration: null });
    const err = await caught(smartClient(baseUrl).read('Patient', 'p1'));
    expect(err.code).toBe('fhir-auth');
    expect(err.message).toMatch(/publishes no SMART configuration \(HTTP 404.*set the SMART tokenEndpoint/);
    expect((await smartClient(baseUrl, { tokenEndpoint: auth.tokenEndpoint }).read('Patient', 'p1')).id).toBe('p1');
  });

  it('refuses a token endpoint that would receive assertions over plain http elsewhere than this machine', async () => {
    const { baseUrl } = await gatedServer({ smartConfiguration: { token_endpoint: 'http://ehr.example/token' } });
    const err = await caught(smartClient(baseUrl).read('Patient', 'p1'));
    expect(err.code).toBe('config-invalid');
    expect(err.message).toMatch(/must be an https URL/);
  });
});

describe('SMART access token lifecycle', () => {
  it('caches the token, and renews it before it expires without a refused request', async () => {
    let now = Date.now();
    const clock: Clock = { now: () => new Date(now), sleep: async () => undefined };
    // Client, token endpoint and FHIR server share one clock that the test moves on.
    const timed = await startSmartAuthServer({ clients: [{ clientId: CLIENT_ID, jwks: await publicJwks([{ privateKeyFile: rsaFile, kid: 'rsa-key' }]) }], now: () => now });
    closers.push(() => timed.close());
    const { baseUrl, counts } = await gatedServer({ auth: timed });
    const client = smartClient(baseUrl, {}, { clock });
    const issued = timed.issued.length;
    await client.read('Patient', 'p1');
    await client.read('Patient', 'p2');
    expect(timed.issued.length).toBe(issued + 1);
    now += 200_000; // still valid (300 s), not yet due
    await client.read('Patient', 'p3');
    expect(timed.issued.length).toBe(issued + 1);
    now += 50_000; // within the last minute of the token's life: renewed before use
    await client.read('Patient', 'p4');
    expect(timed.issued.length).toBe(issued + 2);
    now += 400_000; // long after: the old token would be refused; a new one is used
    await client.read('Patient', 'p5');
    expect(timed.issued.length).toBe(issued + 3);
    expect(counts.unauthorized).toBe(0);
  });

  it('shares one token request among concurrent first requests, and one refresh among requests refused together', async () => {
    const { baseUrl, counts } = await gatedServer();
    const client = smartClient(baseUrl, {}, { concurrency: 8 });
    const ids = ['p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7', 'p8'];
    const issued = auth.issued.length;
    await Promise.all(ids.map((id) => client.read('Patient', id)));
    expect(auth.issued.length).toBe(issued + 1);

    auth.expire(auth.issued.at(-1)!); // the server ends the token's life early
    const read = await Promise.all(ids.map((id) => client.read<Patient>('Patient', id)));
    expect(read.map((p) => p.id)).toEqual(ids);
    expect(counts.unauthorized).toBe(8);
    expect(auth.issued.length).toBe(issued + 2);
  });

  it('replays a refused request once with a fresh token, then lets a second 401 stand', async () => {
    let refuse = false;
    const { baseUrl, counts } = await gatedServer({ refuseAll: () => refuse });
    const client = smartClient(baseUrl);
    await client.read('Patient', 'p1');
    const issued = auth.issued.length;
    refuse = true;
    const err = await caught(client.read('Patient', 'p2'));
    expect(err.code).toBe('fhir-auth');
    expect(err.transient).toBe(false);
    expect(err.message).toMatch(/refused read Patient \(HTTP 401\) again with renewed smart credentials, after 2 attempts/);
    expect(counts.unauthorized).toBe(2);
    expect(auth.issued.length).toBe(issued + 1);
  });

  it('retries a token endpoint that is briefly unavailable', async () => {
    const { baseUrl } = await gatedServer();
    auth.failNext([503, 502]);
    const requests = auth.requests.length;
    expect((await smartClient(baseUrl).read('Patient', 'p1')).id).toBe('p1');
    expect(auth.requests.slice(requests).map((r) => r.status)).toEqual([503, 502, 200]);
  });
});

describe('SMART refused client', () => {
  it('is a permanent fhir-auth error naming what to check, without retries or FHIR requests', async () => {
    const { baseUrl, counts } = await gatedServer();
    const requests = auth.requests.length;
    const err = await caught(smartClient(baseUrl, { privateKeyFile: strangerFile, kid: 'rsa-key' }).read('Patient', 'p1'));
    expect(err.code).toBe('fhir-auth');
    expect(err.transient).toBe(false);
    expect(err.message).toMatch(/refused the token request \(HTTP 401, invalid_client\)/);
    expect(err.message).toContain(`client id "${CLIENT_ID}"`);
    expect(err.message).toMatch(/public key with kid "rsa-key" \(RS384\) is registered/);
    expect(auth.requests.slice(requests)).toEqual([{ status: 401, error: 'invalid_client' }]);
    expect(counts.authorized + counts.unauthorized).toBe(0);
  });

  it('names refused scopes', async () => {
    const narrow = await startSmartAuthServer({
      clients: [{ clientId: CLIENT_ID, jwks: await publicJwks([{ privateKeyFile: rsaFile, kid: 'rsa-key' }]), allowedScopes: ['system/Patient.rs'] }],
    });
    closers.push(() => narrow.close());
    const { baseUrl } = await gatedServer();
    const err = await caught(smartClient(baseUrl, { tokenEndpoint: narrow.tokenEndpoint }).read('Patient', 'p1'));
    expect(err.message).toMatch(/invalid_scope.*not all allowed.*system\/Observation.rs/);
  });
});

describe('SMART secrets in logs', () => {
  it('never logs an access token or a client assertion, even when the server echoes one', async () => {
    const { logger, text } = capture();
    const { baseUrl } = await gatedServer();
    const issued = auth.issued.length;
    const client = smartClient(baseUrl, {}, { logger });
    await client.read('Patient', 'p1');
    auth.expire(auth.issued.at(-1)!);
    await client.read('Patient', 'p2'); // refused, refreshed, replayed
    auth.echoAssertionInErrors = true;
    let err: AdapterError;
    try {
      err = await caught(smartClient(baseUrl, { privateKeyFile: strangerFile, kid: 'rsa-key' }, { logger }).read('Patient', 'p3'));
    } finally {
      auth.echoAssertionInErrors = false;
    }
    logger.error({ err }, 'a caller logs the error it got');
    const logged = text();

    expect(logged).toContain('smart access token obtained'); // the capture works
    expect(logged).toContain('renewing');
    const tokens = auth.issued.slice(issued);
    expect(tokens).toHaveLength(2);
    for (const token of tokens) expect(logged).not.toContain(token);
    const jwt = /eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/;
    expect(logged).not.toMatch(jwt);
    expect(err.message).not.toMatch(jwt);
    expect(err.message).toMatch(/\[jwt\]/); // the echoed assertion was cut out of the server's description
  });
});
