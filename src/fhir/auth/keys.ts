import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { AdapterError } from '../../core/errors.js';
import type { SmartAuthOptions, SmartSigningAlg } from './smart-options.js';

/**
 * Private keys for SMART client assertions, from files (PEM or JWK), and the public JWKS an EHR
 * registers the adapter by. Messages name the file and what is wrong with it, never its content.
 */

export interface SigningKey {
  kid: string;
  alg: SmartSigningAlg;
  privateKey: KeyObject;
  /** The public half as a JWK with kid, alg, use and key_ops. */
  publicJwk: JWK;
}

export async function loadSigningKey(options: Pick<SmartAuthOptions, 'privateKeyFile' | 'kid' | 'alg'>): Promise<SigningKey> {
  const file = options.privateKeyFile;
  const invalid = (why: string) => new AdapterError('config-invalid', `SMART private key file ${file}: ${why}`);
  let text: string;
  try {
    text = (await readFile(file, 'utf8')).trim();
  } catch (err) {
    throw invalid(`cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }

  let privateKey: KeyObject;
  let jwkKid: string | undefined;
  let jwkAlg: string | undefined;
  if (text.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw invalid('is neither PEM nor valid JSON');
    }
    const jwk = pickPrivateJwk(parsed, options.kid, invalid);
    jwkKid = typeof jwk.kid === 'string' ? jwk.kid : undefined;
    jwkAlg = typeof jwk.alg === 'string' ? jwk.alg : undefined;
    try {
      privateKey = createPrivateKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
    } catch {
      throw invalid('holds a JWK that is not a usable RSA or EC private key');
    }
  } else if (text.includes('-----BEGIN')) {
    if (/ENCRYPTED/.test(text)) throw invalid('holds an encrypted key; store it unencrypted with file permissions 0600 (or in a secrets mount)');
    if (!/PRIVATE KEY-----/.test(text)) throw invalid('holds a public key or certificate; the private key is needed to sign client assertions');
    try {
      privateKey = createPrivateKey({ key: text, format: 'pem' });
    } catch {
      throw invalid('holds PEM that is not a usable private key');
    }
  } else {
    throw invalid('is neither PEM (-----BEGIN PRIVATE KEY-----) nor a JWK (JSON)');
  }

  const alg = algFor(privateKey, options.alg ?? (isSigningAlg(jwkAlg) ? jwkAlg : undefined), invalid);
  const publicBase = createPublicKey(privateKey).export({ format: 'jwk' }) as JWK;
  const kid = options.kid ?? jwkKid ?? (await calculateJwkThumbprint(publicBase, 'sha256'));
  const publicJwk: JWK = { ...publicBase, kid, alg, use: 'sig', key_ops: ['verify'] };
  return { kid, alg, privateKey, publicJwk };
}

/**
 * The public JWKS for the configured keys (current and, during a rotation, next), as an EHR fetches it
 * from `/.well-known/jwks.json`. One entry per kid.
 */
export async function publicJwks(keys: Pick<SmartAuthOptions, 'privateKeyFile' | 'kid' | 'alg'>[]): Promise<{ keys: JWK[] }> {
  const byKid = new Map<string, JWK>();
  for (const options of keys) {
    const key = await loadSigningKey(options);
    const existing = byKid.get(key.kid);
    if (existing && JSON.stringify(existing) !== JSON.stringify(key.publicJwk)) {
      throw new AdapterError('config-invalid', `two different SMART keys share the kid "${key.kid}"`);
    }
    byKid.set(key.kid, key.publicJwk);
  }
  return { keys: [...byKid.values()] };
}

function isSigningAlg(value: string | undefined): value is SmartSigningAlg {
  return value === 'RS384' || value === 'ES384';
}

function pickPrivateJwk(parsed: unknown, kid: string | undefined, invalid: (why: string) => AdapterError): JWK {
  const candidates = Array.isArray((parsed as { keys?: unknown })?.keys) ? ((parsed as { keys: unknown[] }).keys as JWK[]) : [parsed as JWK];
  const privates = candidates.filter((k) => k && typeof k === 'object' && typeof k.d === 'string');
  if (privates.length === 0) throw invalid('holds no private JWK (a JWK with "d")');
  if (kid !== undefined) {
    const match = privates.find((k) => k.kid === kid);
    if (match) return match;
    if (privates.length > 1 || (privates[0].kid !== undefined && privates[0].kid !== kid)) {
      throw invalid(`holds no private JWK with kid "${kid}"`);
    }
    return privates[0];
  }
  if (privates.length > 1) throw invalid('holds several private JWKs; set kid to choose one');
  return privates[0];
}

/** RS384 needs RSA of at least 2048 bits; ES384 needs EC on P-384. */
function algFor(key: KeyObject, wanted: SmartSigningAlg | undefined, invalid: (why: string) => AdapterError): SmartSigningAlg {
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails ?? {};
  if (type === 'rsa') {
    if (wanted === 'ES384') throw invalid('holds an RSA key, but alg ES384 needs an EC P-384 key');
    if ((details.modulusLength ?? 0) < 2048) throw invalid(`holds an RSA key of ${details.modulusLength} bits; RS384 needs at least 2048`);
    return 'RS384';
  }
  if (type === 'ec') {
    if (wanted === 'RS384') throw invalid('holds an EC key, but alg RS384 needs an RSA key');
    if (details.namedCurve !== 'secp384r1') throw invalid(`holds an EC key on ${details.namedCurve ?? 'an unknown curve'}; ES384 needs P-384`);
    return 'ES384';
  }
  throw invalid(`holds a ${type ?? 'unknown'} key; SMART Backend Services signs with RS384 (RSA) or ES384 (EC P-384)`);
}
