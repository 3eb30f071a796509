import { createHash, scryptSync, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { ApiKeyConfig, JwtIssuerConfig } from '../config/sources.js';
import type { SessionStore } from '../db/sessions.js';
import { AdapterError } from '../core/errors.js';

/**
 * Who may call the API: a bearer API key (compared against the configured hashes in constant time), a
 * bearer JWT from a configured issuer (signature from its JWKS, issuer, audience and expiry checked with
 * jose), or, for the console in a browser, a session cookie obtained by logging in with an API key.
 * Tokens are never logged; the principal (key name, or issuer + subject) is.
 */
export const SESSION_COOKIE = 'fhirml_session';

export interface Principal {
  /** `key:<name>`, `jwt:<issuer>#<sub>` or `session:<principal>` */
  id: string;
  via: 'api-key' | 'jwt' | 'session';
}

export interface Authenticator {
  /** Checks an API key; the key's name when it matches one. */
  apiKey(key: string): string | undefined;
  bearer(token: string): Promise<Principal | undefined>;
  middleware(): (req: Request, res: Response, next: NextFunction) => void;
}

interface StoredKey {
  name: string;
  check(key: string): boolean;
}

function storedKey(config: ApiKeyConfig): StoredKey {
  if (config.sha256) {
    const expected = Buffer.from(config.sha256, 'hex');
    return { name: config.name, check: (key) => timingSafeEqual(createHash('sha256').update(key).digest(), expected) };
  }
  const [, n, r, p, salt, hash] = config.scrypt!.split('$');
  const expected = Buffer.from(hash, 'base64');
  const params = { N: Number(n), r: Number(r), p: Number(p), maxmem: 256 * Number(n) * Number(r) + 1024 * 1024 };
  return { name: config.name, check: (key) => timingSafeEqual(scryptSync(key, Buffer.from(salt, 'base64'), expected.length, params), expected) };
}

/** `sha256:<hex>` for a key, as the sources file wants it (`fhir-ml serve --hash-key` prints it). */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

export function createAuthenticator(options: { apiKeys: ApiKeyConfig[]; jwtIssuers: JwtIssuerConfig[]; sessions?: SessionStore }): Authenticator {
  const keys = options.apiKeys.map(storedKey);
  const issuers = options.jwtIssuers.map((i) => ({ config: i, jwks: createRemoteJWKSet(new URL(i.jwksUrl)) as JWTVerifyGetKey }));

  const apiKey = (key: string): string | undefined => {
    // Every key is compared (no early exit), so timing does not tell which key came close.
    let match: string | undefined;
    for (const k of keys) if (k.check(key) && !match) match = k.name;
    return match;
  };

  const bearer = async (token: string): Promise<Principal | undefined> => {
    const name = apiKey(token);
    if (name) return { id: `key:${name}`, via: 'api-key' };
    if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(token) || !issuers.length) return undefined;
    for (const issuer of issuers) {
      try {
        const { payload } = await jwtVerify(token, issuer.jwks, {
          issuer: issuer.config.issuer,
          audience: issuer.config.audience,
          algorithms: issuer.config.algorithms,
          clockTolerance: 30,
        });
        return { id: `jwt:${issuer.config.issuer}#${payload.sub ?? '?'}`, via: 'jwt' };
      } catch {
        // not this issuer's, or invalid: try the next one
      }
    }
    return undefined;
  };

  const middleware = () => (req: Request, res: Response, next: NextFunction) => {
    const header = req.get('authorization');
    const fail = (message: string) => next(new AdapterError('unauthenticated', message));
    if (header) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (!m) return fail('the Authorization header must be "Bearer <API key or JWT>"');
      bearer(m[1]).then(
        (principal) => {
          if (!principal) return fail('the bearer token is not a valid API key or JWT of a configured issuer');
          res.locals.principal = principal;
          next();
        },
        (err) => next(err),
      );
      return;
    }
    const session = cookieValue(req.get('cookie'), SESSION_COOKIE);
    if (session && options.sessions) {
      // A session may change state only with a header a cross-site form cannot send (SameSite=Strict is
      // the first line of defence against cross-site requests, this the second).
      if (req.method !== 'GET' && req.method !== 'HEAD' && req.get('x-requested-with') !== 'fhir-ml-console') {
        return fail('requests authenticated by the console session must carry X-Requested-With: fhir-ml-console');
      }
      options.sessions.principalOf(session).then(
        (principal) => {
          if (!principal) return fail('the console session has expired; log in again');
          res.locals.principal = { id: `session:${principal}`, via: 'session' } satisfies Principal;
          next();
        },
        (err) => next(err),
      );
      return;
    }
    fail('authentication required: send "Authorization: Bearer <API key or JWT>"');
  };

  return { apiKey, bearer, middleware };
}

export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
  }
  return undefined;
}
