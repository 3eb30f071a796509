import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AdapterError } from '../../core/errors.js';
import { loadSigningKey, publicJwks } from './keys.js';
import { DEFAULT_SMART_SCOPES, isSmartSystemScope, smartAuthOptionsSchema, smartAuthSchema } from './smart-options.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'fhir-ml-keys-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, content: string): string {
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
}
const rsa = () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const ec = (namedCurve = 'P-384') => generateKeyPairSync('ec', { namedCurve }).privateKey;
const pkcs8 = (key: KeyObject) => key.export({ format: 'pem', type: 'pkcs8' }) as string;
const jwkOf = (key: KeyObject, extra: Record<string, string> = {}) => ({ ...key.export({ format: 'jwk' }), ...extra });

async function refusal(promise: Promise<unknown>): Promise<AdapterError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(AdapterError);
    expect((err as AdapterError).code).toBe('config-invalid');
    expect((err as AdapterError).message).not.toMatch(/MII|"d":/); // never key material
    return err as AdapterError;
  }
  throw new Error('expected a refusal');
}

describe('loadSigningKey', () => {
  it('reads a PKCS#8 RSA PEM as RS384 with an RFC 7638 thumbprint as kid', async () => {
    const key = await loadSigningKey({ privateKeyFile: file('rsa.pem', pkcs8(rsa())) });
    expect(key.alg).toBe('RS384');
    expect(key.kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(key.publicJwk).toMatchObject({ kty: 'RSA', kid: key.kid, alg: 'RS384', use: 'sig' });
  });

  it('reads PKCS#1 RSA and SEC1 EC PEM', async () => {
    const pkcs1 = rsa().export({ format: 'pem', type: 'pkcs1' }) as string;
    expect(pkcs1).toMatch(/BEGIN RSA PRIVATE KEY/);
    expect((await loadSigningKey({ privateKeyFile: file('rsa1.pem', pkcs1), kid: 'k1' })).kid).toBe('k1');
    const sec1 = ec().export({ format: 'pem', type: 'sec1' }) as string;
    expect(sec1).toMatch(/BEGIN EC PRIVATE KEY/);
    expect((await loadSigningKey({ privateKeyFile: file('ec1.pem', sec1) })).alg).toBe('ES384');
  });

  it('reads a private JWK, taking its kid and alg, and picks a key from a JWKS by kid', async () => {
    const key = await loadSigningKey({ privateKeyFile: file('ec.json', JSON.stringify(jwkOf(ec(), { kid: 'ec-1', alg: 'ES384' }))) });
    expect(key).toMatchObject({ kid: 'ec-1', alg: 'ES384' });
    const set = file('set.json', JSON.stringify({ keys: [jwkOf(rsa(), { kid: 'a' }), jwkOf(ec(), { kid: 'b' })] }));
    expect((await loadSigningKey({ privateKeyFile: set, kid: 'b' })).alg).toBe('ES384');
    expect((await refusal(loadSigningKey({ privateKeyFile: set }))).message).toMatch(/several private JWKs; set kid/);
    expect((await refusal(loadSigningKey({ privateKeyFile: set, kid: 'c' }))).message).toMatch(/no private JWK with kid "c"/);
  });

  it.each([
    ['a missing file', () => path.join(dir, 'absent.pem'), {}, /cannot be read \(ENOENT\)/],
    ['a public key', () => file('pub.pem', createPrivateKey(pkcs8(rsa())).export({ format: 'pem', type: 'pkcs8' }).toString().replace(/PRIVATE/g, 'PUBLIC')), {}, /public key or certificate/],
    ['an encrypted key', () => file('enc.pem', rsa().export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'pw' }) as string), {}, /encrypted/],
    ['neither PEM nor JSON', () => file('junk.txt', 'hello'), {}, /neither PEM/],
    ['a P-256 key', () => file('p256.pem', pkcs8(ec('P-256'))), {}, /needs P-384/],
    ['an RSA key asked to sign ES384', () => file('rsa-es.pem', pkcs8(rsa())), { alg: 'ES384' as const }, /RSA key, but alg ES384/],
    ['an EC key asked to sign RS384', () => file('ec-rs.pem', pkcs8(ec())), { alg: 'RS384' as const }, /EC key, but alg RS384/],
    ['a public JWK', () => file('pub.json', JSON.stringify({ kty: 'EC', crv: 'P-384', x: 'x', y: 'y' })), {}, /no private JWK/],
  ])('refuses %s, naming the file and the problem', async (_what, make, extra, message) => {
    const privateKeyFile = make();
    const err = await refusal(loadSigningKey({ privateKeyFile, ...extra }));
    expect(err.message).toContain(privateKeyFile);
    expect(err.message).toMatch(message);
  });

  it('refuses an RSA key under 2048 bits', async () => {
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    expect((await refusal(loadSigningKey({ privateKeyFile: file('small.pem', pkcs8(small)) }))).message).toMatch(/1024 bits; RS384 needs at least 2048/);
  });
});

describe('publicJwks', () => {
  it('publishes the public halves of the configured keys, one per kid, without private parameters', async () => {
    const a = file('a.pem', pkcs8(rsa()));
    const b = file('b.json', JSON.stringify(jwkOf(ec(), { kid: 'next' })));
    const jwks = await publicJwks([{ privateKeyFile: a, kid: 'current' }, { privateKeyFile: b }, { privateKeyFile: a, kid: 'current' }]);
    expect(jwks.keys.map((k) => [k.kid, k.alg, k.kty, k.use])).toEqual([
      ['current', 'RS384', 'RSA', 'sig'],
      ['next', 'ES384', 'EC', 'sig'],
    ]);
    for (const k of jwks.keys) for (const secret of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(k).not.toHaveProperty(secret);
    await refusal(publicJwks([{ privateKeyFile: a, kid: 'same' }, { privateKeyFile: b, kid: 'same' }]));
  });
});

describe('SMART auth options', () => {
  it('accepts a full configuration and leaves the scopes to the default when absent', () => {
    const parsed = smartAuthSchema.parse({ type: 'smart', clientId: 'c', privateKeyFile: '/k.pem', kid: 'k', alg: 'ES384', tokenEndpoint: 'https://ehr.example/token' });
    expect(parsed.scopes).toBeUndefined();
    expect(DEFAULT_SMART_SCOPES.every(isSmartSystemScope)).toBe(true);
    expect(DEFAULT_SMART_SCOPES).toEqual(expect.arrayContaining(['system/Observation.rs', 'system/RiskAssessment.crs', 'system/Provenance.cu', 'system/Device.crs']));
  });

  it('accepts v2 and v1 system scopes and explains what is wrong with others, every problem at once', () => {
    expect(smartAuthOptionsSchema.safeParse({ clientId: 'c', privateKeyFile: 'f', scopes: ['system/Patient.rs', 'system/Observation.read', 'system/*.cruds', 'system/RiskAssessment.write', 'system/Observation.rs?category=laboratory'] }).success).toBe(true);
    const result = smartAuthOptionsSchema.safeParse({
      clientId: '',
      privateKeyFile: 'f',
      alg: 'RS256',
      scopes: ['patient/Observation.rs', 'system/Observation.sr', 'openid'],
      tokenEndpoint: 'ftp://x',
      extra: 1,
    });
    expect(result.success).toBe(false);
    const messages = result.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n');
    expect(messages).toMatch(/clientId: the SMART client id must not be empty/);
    expect(messages).toMatch(/alg:/);
    expect(messages).toMatch(/scopes.0: "patient\/Observation.rs": a backend service asks for system\/ scopes/);
    expect(messages).toMatch(/scopes.1: "system\/Observation.sr" is not a SMART system scope/);
    expect(messages).toMatch(/scopes.2: "openid" is not a SMART system scope/);
    expect(messages).toMatch(/tokenEndpoint: must be an http\(s\) URL/);
    expect(messages).toMatch(/extra/);
  });
});
