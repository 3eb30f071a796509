import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import type { Clock } from '../../core/clock.js';
import { AdapterError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { HttpStatusError, type Operation } from '../classify.js';
import { Transport, type AttemptInit, type TransportOptions } from '../transport.js';
import { loadSigningKey, type SigningKey } from './keys.js';
import type { AuthProvider } from './provider.js';
import { DEFAULT_SMART_SCOPES, type SmartAuthOptions } from './smart-options.js';
import { noAuth } from './static.js';

/**
 * SMART Backend Services (SMART App Launch IG, client-confidential-asymmetric + client-credentials grant):
 *
 * - discovery: `{base}/.well-known/smart-configuration` gives the token endpoint, and the algorithms,
 *   grant types, auth methods and scopes the server supports (skipped when `tokenEndpoint` is set);
 * - each token request carries a fresh client assertion: a JWT signed RS384 or ES384 with `kid` and
 *   `typ: JWT` in its header, `iss` = `sub` = the client id, `aud` = the token endpoint, `exp` four
 *   minutes ahead (the IG allows at most five) and a unique `jti`;
 * - the access token is cached and renewed before it expires (a fifth of its lifetime, at most a minute,
 *   ahead); one renewal is in flight at a time and every concurrent request waits for it;
 * - a 401 from the FHIR server renews once (unless another request already renewed the token it was
 *   refused with) and the transport replays the request once;
 * - a refused client (invalid_client, a key the EHR does not know, ...) is a permanent `fhir-auth`
 *   error that says what to check; an unreachable or failing token endpoint is retried like any request.
 *
 * The access token and the assertion are never logged, nor put in errors: log lines carry the token's
 * lifetime and the scope names only.
 */

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** Assertion lifetime; the IG caps `exp` at five minutes ahead, so a minute is left for clock skew. */
const ASSERTION_LIFETIME_S = 240;
/** Token lifetime assumed when the token response states none. */
const DEFAULT_TOKEN_LIFETIME_S = 300;
const MAX_RENEW_AHEAD_MS = 60_000;

const DISCOVERY: Operation = { name: 'discovery', resourceType: 'smart-configuration' };
const TOKEN: Operation = { name: 'token', resourceType: 'access-token' };

export interface SmartAuthContext extends Omit<TransportOptions, 'auth' | 'concurrency'> {
  /** The FHIR base URL, for discovery. */
  fhirBaseUrl: string;
}

interface ServerConfig {
  tokenEndpoint: string;
}

interface CachedToken {
  value: string;
  /** When to renew (ms since epoch), ahead of expiry. */
  renewAt: number;
}

export class SmartBackendAuth implements AuthProvider {
  readonly kind = 'smart';
  private readonly transport: Transport;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly scopes: readonly string[];
  private key?: Promise<SigningKey>;
  private server?: Promise<ServerConfig>;
  private token?: CachedToken;
  private inflight?: Promise<string>;

  constructor(
    private readonly options: SmartAuthOptions,
    private readonly context: SmartAuthContext,
  ) {
    this.clock = context.clock;
    this.logger = context.logger.child({ component: 'smart-auth' });
    this.scopes = options.scopes ?? DEFAULT_SMART_SCOPES;
    // The token endpoint's requests go through a transport of their own: no credentials of ours on them,
    // the same timeouts and backoff as FHIR calls.
    this.transport = new Transport({ ...context, logger: this.logger, auth: noAuth(), concurrency: 2 });
    if (!isSecureOrLocal(context.fhirBaseUrl)) {
      this.logger.warn('the FHIR base URL is plain http on another machine: access tokens will travel unencrypted');
    }
  }

  async headers(): Promise<Record<string, string>> {
    const token = this.token && this.clock.now().getTime() < this.token.renewAt ? this.token.value : await this.renew();
    return { authorization: `Bearer ${token}` };
  }

  async refresh(rejected: Record<string, string>): Promise<boolean> {
    const refused = /^Bearer (.+)$/i.exec(rejected.authorization ?? '')?.[1];
    if (this.inflight) {
      await this.inflight;
      return true;
    }
    // Another request already replaced the token this one was refused with.
    if (this.token && this.token.value !== refused) return true;
    this.token = undefined;
    this.logger.info('access token refused by the FHIR server; renewing');
    await this.renew();
    return true;
  }

  /** The one renewal in flight, shared by every caller. */
  private renew(): Promise<string> {
    if (!this.inflight) {
      this.inflight = this.obtain().finally(() => {
        this.inflight = undefined;
      });
    }
    return this.inflight;
  }

  private async obtain(): Promise<string> {
    // A key file problem is permanent configuration: the rejection is kept.
    const key = await (this.key ??= loadSigningKey(this.options));
    const server = await this.serverConfig(key);
    const requestedAt = this.clock.now().getTime();
    const response = await this.transport.execute({
      op: TOKEN,
      retry: 'idempotent', // every attempt signs a new assertion (new jti), so a resend is never a replay
      send: (init) => this.requestToken(server.tokenEndpoint, key, init),
    });
    const lifetimeMs = response.expiresInS * 1000;
    this.token = { value: response.accessToken, renewAt: requestedAt + lifetimeMs - Math.min(MAX_RENEW_AHEAD_MS, lifetimeMs / 5) };
    const missing = response.grantedScopes ? this.scopes.filter((s) => !response.grantedScopes!.includes(s)) : [];
    this.logger.info({ expiresInS: response.expiresInS, scopesGranted: response.grantedScopes?.length, scopesNotGranted: missing.length ? missing : undefined }, 'smart access token obtained');
    if (missing.length) this.logger.warn({ scopesNotGranted: missing }, 'the token endpoint granted fewer scopes than requested; requests needing them will be refused');
    return response.accessToken;
  }

  private serverConfig(key: SigningKey): Promise<ServerConfig> {
    if (!this.server) {
      this.server = (this.options.tokenEndpoint ? Promise.resolve({ tokenEndpoint: checkTokenEndpoint(this.options.tokenEndpoint, 'tokenEndpoint') }) : this.discover(key)).catch(
        (err: unknown) => {
          this.server = undefined; // a transient discovery failure is tried again on the next request
          throw err;
        },
      );
    }
    return this.server;
  }

  private async discover(key: SigningKey): Promise<ServerConfig> {
    const url = `${this.context.fhirBaseUrl.replace(/\/+$/, '')}/.well-known/smart-configuration`;
    const config = await this.transport.execute({
      op: DISCOVERY,
      retry: 'idempotent',
      send: async (init) => {
        const res = await fetch(url, { headers: { accept: 'application/json' }, signal: init.signal, redirect: 'manual' });
        const data = await jsonBody(res);
        if (res.status === 404 || res.status === 410) {
          throw new AdapterError(
            'fhir-auth',
            `The FHIR server publishes no SMART configuration (HTTP ${res.status} for ${url}); set the SMART tokenEndpoint, or check the FHIR base URL`,
          );
        }
        if (!res.ok) throw new HttpStatusError(res.status, data, res.headers);
        if (!data || typeof data !== 'object') {
          throw new AdapterError('fhir-invalid-response', `${url} did not answer with a JSON SMART configuration`);
        }
        return data as Record<string, unknown>;
      },
    });

    const problem = (why: string) => new AdapterError('fhir-auth', `SMART configuration at ${url}: ${why}`);
    if (typeof config.token_endpoint !== 'string') throw problem('names no token_endpoint; set the SMART tokenEndpoint');
    const tokenEndpoint = checkTokenEndpoint(config.token_endpoint, `token_endpoint of ${url}`);
    const listed = (name: string): string[] | undefined => (Array.isArray(config[name]) ? (config[name] as unknown[]).filter((v): v is string => typeof v === 'string') : undefined);
    const grants = listed('grant_types_supported');
    if (grants && !grants.includes('client_credentials')) throw problem(`the server does not offer the client_credentials grant (it lists ${grants.join(', ') || 'none'})`);
    const methods = listed('token_endpoint_auth_methods_supported');
    if (methods && !methods.includes('private_key_jwt')) throw problem(`the server does not accept private_key_jwt client authentication (it lists ${methods.join(', ') || 'none'})`);
    const algs = listed('token_endpoint_auth_signing_alg_values_supported');
    if (algs && !algs.includes(key.alg)) throw problem(`the server does not accept ${key.alg} assertions (it lists ${algs.join(', ') || 'none'}); use a key for one of those`);
    const supported = listed('scopes_supported');
    if (supported) {
      const uncovered = this.scopes.filter((s) => !scopeCovered(s, supported));
      if (uncovered.length) this.logger.warn({ scopes: uncovered }, 'scopes requested that the SMART configuration does not list');
    }
    return { tokenEndpoint };
  }

  private async requestToken(tokenEndpoint: string, key: SigningKey, init: AttemptInit): Promise<TokenResponse> {
    const assertion = await this.sign(key, tokenEndpoint);
    const form = new URLSearchParams({
      grant_type: 'client_credentials',
      scope: this.scopes.join(' '),
      client_assertion_type: JWT_BEARER,
      client_assertion: assertion,
    });
    const res = await fetch(tokenEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: form.toString(),
      signal: init.signal,
      redirect: 'manual',
    });
    const data = await jsonBody(res);
    if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) throw this.refused(res.status, data, key, tokenEndpoint);
    if (!res.ok) throw new HttpStatusError(res.status, data, res.headers);
    return parseTokenResponse(data, tokenEndpoint);
  }

  private sign(key: SigningKey, audience: string): Promise<string> {
    const now = Math.floor(this.clock.now().getTime() / 1000);
    return new SignJWT({})
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
      .setIssuer(this.options.clientId)
      .setSubject(this.options.clientId)
      .setAudience(audience)
      .setIssuedAt(now)
      .setExpirationTime(now + ASSERTION_LIFETIME_S)
      .setJti(randomUUID())
      .sign(key.privateKey);
  }

  /** A token endpoint's refusal (RFC 6749 §5.2) as a permanent error that says what to check. */
  private refused(status: number, data: unknown, key: SigningKey, tokenEndpoint: string): AdapterError {
    const body = (data ?? {}) as { error?: unknown; error_description?: unknown };
    const code = typeof body.error === 'string' && /^[a-z_]{1,40}$/.test(body.error) ? body.error : undefined;
    const client = `client id "${this.options.clientId}"`;
    const hints: Record<string, string> = {
      invalid_client: `check that ${client} is registered with the EHR and that the public key with kid "${key.kid}" (${key.alg}) is registered for it (JWKS URL or uploaded key), and that ${tokenEndpoint} is the token endpoint it expects as the assertion's audience`,
      invalid_scope: `the scopes requested are not all allowed for ${client}: ${this.scopes.join(' ')}; request only the scopes the EHR granted`,
      invalid_grant: `the client assertion was refused; check this machine's clock (the assertion's iat/exp) and that ${client} and kid "${key.kid}" are the registered ones`,
      unauthorized_client: `${client} may not use the client_credentials grant; ask the EHR to enable SMART Backend Services for it`,
      unsupported_grant_type: 'the token endpoint does not support the client_credentials grant',
      invalid_request: 'the token endpoint found the token request malformed',
    };
    const description = safeDescription(body.error_description);
    return new AdapterError(
      'fhir-auth',
      `SMART token endpoint refused the token request (HTTP ${status}${code ? `, ${code}` : ''}): ${hints[code ?? ''] ?? `check ${client}, the key with kid "${key.kid}" and the scopes`}${description ? ` (server says: ${description})` : ''}`,
      { transient: false, status, details: { kind: 'oauth', oauthError: code ?? null, status } },
    );
  }
}

interface TokenResponse {
  accessToken: string;
  expiresInS: number;
  grantedScopes?: string[];
}

function parseTokenResponse(data: unknown, tokenEndpoint: string): TokenResponse {
  const body = (data ?? {}) as { access_token?: unknown; token_type?: unknown; expires_in?: unknown; scope?: unknown };
  const bad = (why: string) => new AdapterError('fhir-invalid-response', `SMART token endpoint ${tokenEndpoint} answered without ${why}`);
  if (typeof body.access_token !== 'string' || body.access_token.length === 0) throw bad('an access_token');
  if (typeof body.token_type !== 'string' || body.token_type.toLowerCase() !== 'bearer') throw bad('token_type "bearer"');
  const expires = typeof body.expires_in === 'string' ? Number(body.expires_in) : body.expires_in;
  const expiresInS = typeof expires === 'number' && Number.isFinite(expires) && expires > 0 ? expires : DEFAULT_TOKEN_LIFETIME_S;
  const grantedScopes = typeof body.scope === 'string' ? body.scope.split(/\s+/).filter(Boolean) : undefined;
  return { accessToken: body.access_token, expiresInS, grantedScopes };
}

/**
 * The token endpoint receives signed assertions: plain http only on this machine (tests, a local
 * gateway). Anything else must be https.
 */
function checkTokenEndpoint(value: string, what: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new AdapterError('config-invalid', `SMART ${what} is not an absolute URL`);
  }
  if (!isSecureOrLocal(url.href)) {
    throw new AdapterError('config-invalid', `SMART ${what} must be an https URL (client assertions must not travel in clear)`);
  }
  if (url.hash) throw new AdapterError('config-invalid', `SMART ${what} must not have a fragment`);
  return url.href;
}

function isSecureOrLocal(value: string): boolean {
  const url = new URL(value);
  return url.protocol === 'https:' || (url.protocol === 'http:' && ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname));
}

async function jsonBody(res: Response): Promise<unknown> {
  const text = await res.text();
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** An error_description is the server's prose: kept short, without anything shaped like a JWT or a long token. */
function safeDescription(value: unknown): string | undefined {
  if (typeof value !== 'string' || !value.trim()) return undefined;
  return value
    .replace(/[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g, '[jwt]')
    .replace(/[A-Za-z0-9+/_=-]{40,}/g, '[redacted]')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 200);
}

const PERMISSION_ORDER = 'cruds';

/** Whether `scope` is listed in `supported`, directly or by a wildcard type with at least its permissions (v1 or v2). */
function scopeCovered(scope: string, supported: string[]): boolean {
  if (supported.includes(scope)) return true;
  const wanted = parseScope(scope);
  if (!wanted) return false;
  return supported.some((s) => {
    const offered = parseScope(s);
    return !!offered && (offered.type === '*' || offered.type === wanted.type) && [...wanted.permissions].every((p) => offered.permissions.has(p));
  });
}

function parseScope(scope: string): { type: string; permissions: Set<string> } | undefined {
  const m = /^system\/(\*|[A-Za-z]+)\.([a-z*]+)(?:\?.*)?$/.exec(scope);
  if (!m) return undefined;
  const [, type, perms] = m;
  const expanded = perms === 'read' ? 'rs' : perms === 'write' ? 'cud' : perms === '*' ? PERMISSION_ORDER : perms;
  return { type, permissions: new Set(expanded) };
}
