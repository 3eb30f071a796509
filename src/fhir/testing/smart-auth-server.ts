import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JWK, type JWTPayload, type ProtectedHeaderParameters } from 'jose';

/**
 * A SMART Backend Services authorization server for tests: a token endpoint that verifies client
 * assertions with jose as the SMART App Launch IG requires (RS384/ES384 signature against the client's
 * registered JWKS, `kid` and `typ: JWT` in the header, iss = sub = client id, aud = this token endpoint,
 * exp at most five minutes ahead, a jti never seen before), and issues opaque bearer tokens it can later
 * check, expire or refuse. Plus `bearerGate`, an express middleware that guards a FHIR server with those
 * tokens and serves its `.well-known/smart-configuration`.
 */

export interface RegisteredClient {
  clientId: string;
  /** The client's public keys, as it registered them. */
  jwks: { keys: JWK[] };
  /** Scopes the client may be granted; default: anything asked. */
  allowedScopes?: string[];
}

export interface VerifiedAssertion {
  header: ProtectedHeaderParameters;
  payload: JWTPayload;
  /** The token request's form, without the assertion itself. */
  form: Record<string, string>;
}

export interface SmartAuthServerOptions {
  clients: RegisteredClient[];
  /** expires_in of issued tokens, seconds. Default 300. */
  tokenLifetimeS?: number;
  /** The server's clock (ms since epoch), for assertion checks and token expiry. Default Date.now. */
  now?: () => number;
}

export interface SmartAuthServer {
  /** The token endpoint URL. */
  tokenEndpoint: string;
  /** Assertions that passed verification, in order. */
  verified: VerifiedAssertion[];
  /** Every token request, with the answer's status and OAuth error. */
  requests: { status: number; error?: string }[];
  /** Tokens issued, in order. */
  issued: string[];
  /** Whether the token is one this server issued and has not expired or invalidated. */
  isValid(token: string | undefined): boolean;
  /** Invalidates a token as if it had expired. */
  expire(token: string): void;
  /** The next token requests answer with this status (and no token), then normal service resumes. */
  failNext(statuses: number[]): void;
  /** Error descriptions echo the client assertion (to test that a client never logs it). */
  echoAssertionInErrors: boolean;
  close(): Promise<void>;
}

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export async function startSmartAuthServer(options: SmartAuthServerOptions): Promise<SmartAuthServer> {
  const lifetimeS = options.tokenLifetimeS ?? 300;
  const clock = options.now ?? Date.now;
  const valid = new Map<string, number>(); // token -> expiry (ms)
  const seenJti = new Set<string>();
  const failures: number[] = [];
  const app = express();
  const state: SmartAuthServer = {
    tokenEndpoint: '',
    verified: [],
    requests: [],
    issued: [],
    isValid: (token) => !!token && (valid.get(token) ?? 0) > clock(),
    expire: (token) => void valid.delete(token),
    failNext: (statuses) => void failures.push(...statuses),
    echoAssertionInErrors: false,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };

  app.post('/token', express.urlencoded({ extended: false }), async (req: Request, res: Response) => {
    const form = (req.body ?? {}) as Record<string, string>;
    const refuse = (status: number, error: string, description: string) => {
      state.requests.push({ status, error });
      const echo = state.echoAssertionInErrors && form.client_assertion ? ` (assertion ${form.client_assertion})` : '';
      res.status(status).json({ error, error_description: `${description}${echo}` });
    };
    const failure = failures.shift();
    if (failure !== undefined) {
      state.requests.push({ status: failure });
      res.status(failure).type('text/html').send('<html><body>unavailable</body></html>');
      return;
    }
    if (form.grant_type !== 'client_credentials') return refuse(400, 'unsupported_grant_type', 'client_credentials only');
    if (form.client_assertion_type !== JWT_BEARER || !form.client_assertion) return refuse(400, 'invalid_request', 'a jwt-bearer client_assertion is required');

    let header: ProtectedHeaderParameters;
    try {
      header = decodeProtectedHeader(form.client_assertion);
    } catch {
      return refuse(400, 'invalid_request', 'client_assertion is not a JWS');
    }
    if (header.typ !== 'JWT' || !header.kid) return refuse(401, 'invalid_client', 'the assertion header needs typ JWT and a kid');
    let claims: JWTPayload | undefined;
    let client: RegisteredClient | undefined;
    for (const candidate of options.clients) {
      try {
        const { payload } = await jwtVerify(form.client_assertion, createLocalJWKSet(candidate.jwks), {
          algorithms: ['RS384', 'ES384'],
          issuer: candidate.clientId,
          subject: candidate.clientId,
          audience: state.tokenEndpoint,
          requiredClaims: ['exp', 'jti'],
          currentDate: new Date(clock()),
        });
        claims = payload;
        client = candidate;
        break;
      } catch {
        // not this client's key, or not valid for it
      }
    }
    if (!claims || !client) return refuse(401, 'invalid_client', 'the client assertion could not be verified with a registered key');
    const now = Math.floor(clock() / 1000);
    if (claims.exp! > now + 300) return refuse(401, 'invalid_client', 'exp is more than five minutes ahead');
    if (seenJti.has(claims.jti!)) return refuse(401, 'invalid_client', 'jti replayed');
    seenJti.add(claims.jti!);

    const requested = (form.scope ?? '').split(/\s+/).filter(Boolean);
    if (client.allowedScopes && requested.some((s) => !client.allowedScopes!.includes(s))) {
      return refuse(400, 'invalid_scope', 'a scope requested is not allowed for this client');
    }
    const { client_assertion: _assertion, ...rest } = form;
    state.verified.push({ header, payload: claims, form: rest });
    const token = randomBytes(24).toString('base64url');
    valid.set(token, clock() + lifetimeS * 1000);
    state.issued.push(token);
    state.requests.push({ status: 200 });
    res.json({ access_token: token, token_type: 'bearer', expires_in: lifetimeS, scope: requested.join(' ') });
  });

  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  state.tokenEndpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
  return state;
}

export interface BearerGateOptions {
  auth: Pick<SmartAuthServer, 'isValid' | 'tokenEndpoint'>;
  /** The FHIR base path the gate guards, e.g. /fhir/R4. */
  basePath: string;
  /** What `.well-known/smart-configuration` says beyond the token endpoint; `null` answers 404. */
  smartConfiguration?: Record<string, unknown> | null;
  /** Refuse every request, even with a valid token (a client the server no longer authorises). */
  refuseAll?: () => boolean;
}

/** Express middleware: serves the SMART configuration and answers 401 to requests without a valid bearer token. */
export function bearerGate(options: BearerGateOptions): { middleware: express.RequestHandler; counts: { unauthorized: number; authorized: number } } {
  const counts = { unauthorized: 0, authorized: 0 };
  const middleware = (req: Request, res: Response, next: NextFunction) => {
    if (req.path === `${options.basePath}/.well-known/smart-configuration`) {
      if (options.smartConfiguration === null) return void res.status(404).json({});
      return void res.json({
        token_endpoint: options.auth.tokenEndpoint,
        grant_types_supported: ['client_credentials'],
        token_endpoint_auth_methods_supported: ['private_key_jwt'],
        token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
        scopes_supported: ['system/*.rs', 'system/*.cruds'],
        capabilities: ['client-confidential-asymmetric', 'permission-v2'],
        ...options.smartConfiguration,
      });
    }
    const token = /^Bearer (.+)$/.exec(req.get('authorization') ?? '')?.[1];
    if (!options.auth.isValid(token) || options.refuseAll?.()) {
      counts.unauthorized++;
      res.set('www-authenticate', 'Bearer error="invalid_token"');
      return void res.status(401).json({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login' }] });
    }
    counts.authorized++;
    next();
  };
  return { middleware, counts };
}
