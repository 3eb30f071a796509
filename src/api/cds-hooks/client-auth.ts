import { readFileSync } from 'node:fs';
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, decodeProtectedHeader, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { Clock } from '../../core/clock.js';
import { AdapterError } from '../../core/errors.js';
import type { CdsClientConfig, CdsHooksConfig } from '../../config/cds-hooks.js';

/**
 * "Trusting CDS Clients" (CDS Hooks 2.0): every request carries `Authorization: Bearer <JWT>` signed by
 * the EHR with an asymmetric key. Checked here with jose against the configured clients:
 * - header: `typ` JWT, a `kid`, an `alg` the client is configured for (never `none` or HMAC), and a `jku`,
 *   if present, that is the client's configured JWKS URL (a JWKS is never fetched from a URL the token names);
 * - claims: `iss` a configured client, `aud` the URL of the endpoint being called, `exp` not passed,
 *   `iat` present, `jti` present and never seen before from that issuer (replays are refused);
 * - signature against the issuer's JWK Set (fetched from its URL and cached by jose, or from a file).
 * A missing or bad JWT is a 401 whose message says what is wrong; the token is never logged.
 */

export interface VerifiedCdsClient {
  issuer: string;
  client: CdsClientConfig;
  tenant?: string;
}

export interface JwtIdRegistry {
  rememberJwtId(issuer: string, jti: string, expiresAt: Date): Promise<boolean>;
}

export type CdsClientVerifier = (authorization: string | undefined, audiences: string[]) => Promise<VerifiedCdsClient>;

export function createCdsClientVerifier(config: CdsHooksConfig, deps: { jwtIds: JwtIdRegistry; clock: Clock }): CdsClientVerifier {
  const clients = new Map<string, { client: CdsClientConfig; keys: JWTVerifyGetKey }>();
  for (const client of config.clients) {
    let keys: JWTVerifyGetKey;
    if (client.jwksFile) {
      try {
        keys = createLocalJWKSet(JSON.parse(readFileSync(client.jwksFile, 'utf8')));
      } catch (err) {
        throw new AdapterError('config-invalid', `service.cdsHooks: the JWK Set file ${client.jwksFile} of ${client.issuer} cannot be used (${(err as NodeJS.ErrnoException).code ?? (err as Error).name})`);
      }
    } else {
      keys = createRemoteJWKSet(new URL(client.jwksUrl!), { timeoutDuration: 5000, cooldownDuration: 30_000 });
    }
    clients.set(client.issuer, { client, keys });
  }
  const refuse = (why: string): never => {
    throw new AdapterError('unauthenticated', `CDS Client authentication failed: ${why}`);
  };

  return async (authorization, audiences) => {
    if (!authorization) refuse('send "Authorization: Bearer <JWT>" signed by the EHR (CDS Hooks: Trusting CDS Clients)');
    const token = /^Bearer\s+([\w-]+\.[\w-]+\.[\w-]+)\s*$/i.exec(authorization!)?.[1];
    if (!token) refuse('the Authorization header is not "Bearer <JWT>"');
    let header: ReturnType<typeof decodeProtectedHeader>;
    let claims: JWTPayload;
    try {
      header = decodeProtectedHeader(token!);
      claims = decodeJwt(token!);
    } catch {
      return refuse('the bearer token is not a JWT');
    }
    if (typeof header.typ !== 'string' || header.typ.toUpperCase() !== 'JWT') refuse('the JWT header must have typ "JWT"');
    if (typeof header.kid !== 'string' || !header.kid) refuse('the JWT header must name its key (kid)');
    const trusted = typeof claims.iss === 'string' ? clients.get(claims.iss) : undefined;
    if (!trusted) return refuse(`the issuer ${typeof claims.iss === 'string' ? `"${claims.iss.slice(0, 100)}" ` : ''}is not a configured CDS client`);
    const { client, keys } = trusted;
    if (!client.algorithms.includes(header.alg as never)) refuse(`alg ${String(header.alg).slice(0, 20)} is not one this client is configured for (${client.algorithms.join(', ')})`);
    if (header.jku !== undefined && header.jku !== client.jwksUrl) refuse('the JWT names a JWK Set (jku) other than the one configured for its issuer');
    try {
      await jwtVerify(token!, keys, {
        issuer: client.issuer,
        audience: audiences,
        algorithms: client.algorithms,
        clockTolerance: config.clockToleranceSeconds,
        currentDate: deps.clock.now(),
        requiredClaims: ['exp', 'iat', 'jti'],
      });
    } catch (err) {
      refuse(describeJoseError(err, audiences));
    }
    if (typeof claims.jti !== 'string' || !claims.jti) refuse('the JWT has no jti');
    const fresh = await deps.jwtIds.rememberJwtId(client.issuer, claims.jti!.slice(0, 200), new Date(claims.exp! * 1000));
    if (!fresh) refuse('this JWT (its jti) was already used; each request needs a new one');
    return { issuer: client.issuer, client, ...(typeof claims.tenant === 'string' ? { tenant: claims.tenant } : {}) };
  };
}

function describeJoseError(err: unknown, audiences: string[]): string {
  if (err instanceof errors.JWTExpired) return 'the JWT has expired';
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return `the JWT audience (aud) must be the endpoint called: ${audiences[0]}`;
    return `the JWT claim ${err.claim} is missing or invalid`;
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'the JWT signature does not verify with the issuer\'s keys';
  if (err instanceof errors.JWKSNoMatchingKey) return 'no key of the issuer\'s JWK Set matches the JWT (kid, alg)';
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JOSEError) return `the JWT could not be verified (${(err as errors.JOSEError).code})`;
  return 'the JWT could not be verified';
}
