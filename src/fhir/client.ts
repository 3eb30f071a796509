import { performance } from 'node:perf_hooks';
import { Client } from 'fhir-kit-client';
import type { Binary, Bundle, BundleEntry, CapabilityStatement, FhirResource, Resource } from 'fhir/r4.js';
import { z } from 'zod';
import { systemClock, type Clock } from '../core/clock.js';
import { AdapterError, type ErrorCode } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';

/**
 * The adapter's one way to talk to a FHIR server: fhir-kit-client for the HTTP exchange, wrapped with
 * per-request timeouts, retries with capped exponential backoff and full jitter, Retry-After, a
 * concurrency limit, same-origin paging and error wrapping into AdapterError.
 *
 * Log lines carry the operation, resource type, status, attempt and duration only: never URLs (search
 * query strings carry patient ids), bodies or credentials.
 */

export type FhirAuth =
  | { type: 'none' }
  | { type: 'bearer'; token: string }
  | { type: 'basic'; username: string; password: string };

export interface FhirClientOptions {
  baseUrl: string;
  auth?: FhirAuth;
  /** Per attempt, covering connect, headers and body. Default 30000. */
  timeoutMs?: number;
  /** Retries after the first attempt. Default 5. */
  maxRetries?: number;
  /** Capped exponential backoff with full jitter: delay = random(0, min(maxMs, baseMs * 2^retry)). */
  backoff?: { baseMs?: number; maxMs?: number };
  /** Upper bound on a server's Retry-After. Default 60000. */
  maxRetryAfterMs?: number;
  /** Requests in flight across this client. Default 4. */
  concurrency?: number;
  clock?: Clock;
  logger?: Logger;
  /** Source of jitter in [0, 1); tests inject a fixed one. Default Math.random. */
  random?: () => number;
}

/** One page of a search: the matches, and the resources the server added for `_include`/`_revinclude`. */
export interface SearchPage<T extends Resource = Resource> {
  resources: T[];
  included: Resource[];
  /** Bundle.total, when the server states it. */
  total?: number;
}

export type SearchParams = Record<string, string | string[]>;

const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;
const RESOURCE_TYPE = /^[A-Z][A-Za-z]{1,63}$/;

const optionsSchema = z.object({
  baseUrl: z
    .string()
    .refine((value) => {
      try {
        const url = new URL(value);
        return (url.protocol === 'http:' || url.protocol === 'https:') && !url.search && !url.hash;
      } catch {
        return false;
      }
    }, 'must be an absolute http(s) URL without query or fragment')
    .refine((value) => {
      try {
        const url = new URL(value);
        return !url.username && !url.password;
      } catch {
        return true;
      }
    }, 'must not embed credentials; use auth'),
  auth: z
    .discriminatedUnion('type', [
      z.object({ type: z.literal('none') }),
      z.object({ type: z.literal('bearer'), token: z.string().min(1, 'bearer token must not be empty') }),
      z.object({
        type: z.literal('basic'),
        username: z.string().min(1).refine((u) => !u.includes(':'), 'basic username must not contain ":"'),
        password: z.string(),
      }),
    ])
    .default({ type: 'none' }),
  timeoutMs: z.number().int().positive().max(600_000).default(30_000),
  maxRetries: z.number().int().min(0).max(20).default(5),
  backoff: z
    .object({ baseMs: z.number().int().positive().default(250), maxMs: z.number().int().positive().default(10_000) })
    .refine((b) => b.maxMs >= b.baseMs, 'backoff.maxMs must be >= backoff.baseMs')
    .default({ baseMs: 250, maxMs: 10_000 }),
  maxRetryAfterMs: z.number().int().min(0).default(60_000),
  concurrency: z.number().int().positive().max(256).default(4),
});

/** What a request does, for logs, error messages and the retry policy. */
interface Operation {
  name: 'read' | 'search' | 'page' | 'transaction' | 'capabilities' | 'binary';
  resourceType: string;
  /**
   * `idempotent`: safe to resend after any transient failure.
   * `unsent-only`: resend only when the server certainly did not process the request (see transaction()).
   */
  retry: 'idempotent' | 'unsent-only';
}

/** A failed attempt, classified. */
interface AttemptFailure {
  error: AdapterError;
  /** The server certainly did not act on the request (connection refused, 429, 503). */
  unprocessed: boolean;
}

// Failures where no byte reached the server: safe to resend even a non-idempotent request.
const NEVER_CONNECTED = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
]);
// The connection broke mid-exchange: the server may or may not have acted.
const CONNECTION_LOST = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);
const TLS_CODE = /CERT|TLS|SSL|SELF_SIGNED/;
const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);

export class FhirClient {
  readonly baseUrl: string;
  private readonly origin: string;
  private readonly fhir: Client;
  private readonly timeoutMs: number;
  private readonly maxRetries: number;
  private readonly backoff: { baseMs: number; maxMs: number };
  private readonly maxRetryAfterMs: number;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly random: () => number;
  private readonly slots: Semaphore;

  constructor(options: FhirClientOptions) {
    const parsed = optionsSchema.safeParse(options);
    if (!parsed.success) {
      // Issue paths and messages only: zod does not echo input values, so secrets stay out.
      const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'options'}: ${i.message}`);
      throw new AdapterError('config-invalid', `Invalid FHIR client options: ${problems.join('; ')}`, {
        details: { problems },
      });
    }
    const o = parsed.data;
    this.baseUrl = o.baseUrl.replace(/\/+$/, '');
    this.origin = new URL(this.baseUrl).origin;
    this.timeoutMs = o.timeoutMs;
    this.maxRetries = o.maxRetries;
    this.backoff = o.backoff;
    this.maxRetryAfterMs = o.maxRetryAfterMs;
    this.slots = new Semaphore(o.concurrency);
    this.clock = options.clock ?? systemClock;
    this.logger = (options.logger ?? silentLogger).child({ component: 'fhir-client' });
    this.random = options.random ?? Math.random;

    const auth = o.auth;
    this.fhir = new Client({
      baseUrl: this.baseUrl,
      bearerToken: auth.type === 'bearer' ? auth.token : undefined,
      customHeaders:
        auth.type === 'basic'
          ? { authorization: `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}` }
          : {},
    });

    // fhir-kit-client's `debug` output prints full URLs, headers (the Authorization header included)
    // and bodies to stderr. We cannot switch it off from here, so say so loudly.
    if (/fhir-kit-client|^\*$|,\*/.test(process.env.DEBUG ?? '')) {
      this.logger.warn('DEBUG enables fhir-kit-client tracing, which writes URLs, credentials and bodies to stderr');
    }
  }

  /** The server's CapabilityStatement (GET [base]/metadata). */
  async capabilities(): Promise<CapabilityStatement> {
    const op: Operation = { name: 'capabilities', resourceType: 'CapabilityStatement', retry: 'idempotent' };
    const result = await this.execute(op, (options) => this.fhir.capabilityStatement(options));
    return expectResourceType<CapabilityStatement>(result, 'CapabilityStatement', op);
  }

  async read<T extends Resource = FhirResource>(resourceType: string, id: string): Promise<T> {
    assertResourceType(resourceType);
    if (!FHIR_ID.test(id)) throw new AdapterError('input-invalid', `Not a valid FHIR id for a ${resourceType} read`);
    const op: Operation = { name: 'read', resourceType, retry: 'idempotent' };
    const result = await this.execute(op, (options) => this.fhir.read({ resourceType, id, options }));
    return expectResourceType<T>(result, resourceType, op);
  }

  /**
   * Reads a Binary by `Binary/<id>` or by an absolute URL on this server. A URL on any other origin is
   * refused (`fhir-unsafe-link`) because the request would carry our credentials there.
   */
  async readBinary(reference: string): Promise<Binary> {
    const id = this.binaryIdOf(reference);
    if (id === undefined) {
      throw new AdapterError('fhir-unsafe-link', 'Binary reference is not a Binary on the configured FHIR server', {
        details: { resourceType: 'Binary' },
      });
    }
    return this.read<Binary>('Binary', id);
  }

  /**
   * The id of a Binary that lives on this server, from `Binary/<id>`, `/Binary/<id>`-style relative URLs
   * or an absolute URL under the base; undefined for anything else.
   */
  binaryIdOf(reference: string): string | undefined {
    let url: URL;
    try {
      url = new URL(reference, `${this.baseUrl}/`);
    } catch {
      return undefined;
    }
    if (url.origin !== this.origin || url.search || url.hash) return undefined;
    const match = /\/Binary\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/.exec(url.pathname);
    return match?.[1];
  }

  /**
   * POSTs a transaction Bundle to the base and returns the transaction-response.
   *
   * Retry policy: only failures where the server certainly did not process the request are retried
   * here (connection never established, 429, 503). A timeout, dropped connection, 500, 502 or 504 may
   * come while the first attempt is still committing; resending then would run two conditional creates
   * concurrently, which servers do not serialise, and could duplicate resources. Those failures are
   * returned as transient `fhir-unavailable` so the batch is retried later, when the earlier attempt
   * has settled and `ifNoneExist` makes the resend a no-op.
   */
  async transaction(bundle: Bundle): Promise<Bundle> {
    if (bundle?.resourceType !== 'Bundle' || (bundle.type !== 'transaction' && bundle.type !== 'batch')) {
      throw new AdapterError('input-invalid', 'transaction() needs a Bundle of type transaction or batch');
    }
    const op: Operation = { name: 'transaction', resourceType: 'Bundle', retry: 'unsent-only' };
    const result = await this.execute(op, (options) =>
      this.fhir.transaction({ body: bundle as unknown as Record<string, unknown> & { resourceType: string }, options }),
    );
    return expectResourceType<Bundle>(result, 'Bundle', op);
  }

  /**
   * Searches `resourceType` and yields every page, following `Bundle.link[relation=next]` (absolute or
   * relative to the base). A next link to another origin is refused with `fhir-unsafe-link`: following
   * it would hand our credentials to a third party.
   *
   * Array values repeat the parameter (AND: `date=ge…&date=le…`); OR lists are comma-joined by the caller.
   */
  async *search<T extends Resource = FhirResource>(
    resourceType: string,
    params: SearchParams = {},
  ): AsyncGenerator<SearchPage<T>, void, undefined> {
    assertResourceType(resourceType);
    const first: Operation = { name: 'search', resourceType, retry: 'idempotent' };
    const next: Operation = { name: 'page', resourceType, retry: 'idempotent' };
    let bundle = expectResourceType<Bundle>(
      await this.execute(first, (options) => this.fhir.resourceSearch({ resourceType, searchParams: params, options })),
      'Bundle',
      first,
    );
    const seen = new Set<string>();
    let pages = 0;
    for (;;) {
      pages += 1;
      yield splitPage<T>(bundle, resourceType);
      const link = bundle.link?.find((l) => l.relation === 'next')?.url;
      if (!link) break;
      const url = this.sameOriginUrl(link, resourceType);
      if (seen.has(url)) {
        throw new AdapterError('fhir-invalid-response', `Search paging for ${resourceType} loops back to a page already read`, {
          details: { resourceType, pages },
        });
      }
      seen.add(url);
      bundle = expectResourceType<Bundle>(
        // fhir-kit-client's nextPage() would glue a relative or path-absolute link onto the base as a
        // string; resolving it here with URL and handing request() an absolute URL avoids that.
        await this.execute(next, (options) => this.fhir.request(url, { options })),
        'Bundle',
        next,
      );
    }
  }

  private sameOriginUrl(link: string, resourceType: string): string {
    let url: URL;
    try {
      url = new URL(link, `${this.baseUrl}/`);
    } catch {
      throw new AdapterError('fhir-invalid-response', `Search for ${resourceType} returned an unparseable next link`, {
        details: { resourceType },
      });
    }
    if (url.origin !== this.origin) {
      this.logger.error({ op: 'page', resourceType }, 'refused next link to another origin');
      throw new AdapterError(
        'fhir-unsafe-link',
        `Search for ${resourceType} returned a next link to another origin; not followed so credentials stay with the configured server`,
        { details: { resourceType } },
      );
    }
    return url.href;
  }

  /**
   * Runs one request with timeout, concurrency slot and retries. `send` gets the fetch options for one
   * attempt (its own abort signal).
   */
  private async execute(
    op: Operation,
    send: (options: { signal: AbortSignal; keepalive: false; redirect: 'manual' }) => Promise<unknown>,
  ): Promise<unknown> {
    for (let attempt = 1; ; attempt++) {
      const started = performance.now();
      let failure: AttemptFailure;
      await this.slots.acquire();
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), this.timeoutMs);
      try {
        // keepalive: fhir-kit-client defaults it to true, which caps request bodies at 64 KiB (transactions
        // exceed that). redirect: 'manual' so a redirect never carries the Authorization header elsewhere.
        const result = await send({ signal: controller.signal, keepalive: false, redirect: 'manual' });
        this.logger.debug(
          { op: op.name, resourceType: op.resourceType, attempt, durationMs: Math.round(performance.now() - started) },
          'fhir request ok',
        );
        return result;
      } catch (raw) {
        failure = classify(raw, controller.signal.aborted, op, this.timeoutMs, this.clock);
      } finally {
        clearTimeout(timer);
        this.slots.release();
      }

      const { error } = failure;
      const logFields = {
        op: op.name,
        resourceType: op.resourceType,
        attempt,
        status: error.status,
        code: error.code,
        kind: error.details?.kind,
        durationMs: Math.round(performance.now() - started),
      };
      const retryable = error.transient && (op.retry === 'idempotent' || failure.unprocessed);
      if (!retryable) {
        this.logger.warn(logFields, 'fhir request failed');
        throw error;
      }
      if (attempt > this.maxRetries) {
        this.logger.warn(logFields, 'fhir request failed; retries exhausted');
        throw new AdapterError(
          'fhir-unavailable',
          `FHIR server unavailable: ${op.name} ${op.resourceType} failed ${attempt === 1 ? 'once' : `${attempt} times`} (last: ${error.message})`,
          {
            transient: true,
            cause: error,
            status: error.status,
            retryAfterMs: error.retryAfterMs,
            details: { ...error.details, attempts: attempt },
          },
        );
      }
      const delayMs = this.delayBeforeRetry(attempt, error.retryAfterMs);
      this.logger.warn({ ...logFields, delayMs }, 'fhir request failed; retrying');
      await this.clock.sleep(delayMs);
    }
  }

  /** Retry-After when the server sent one (capped), else capped exponential backoff with full jitter. */
  private delayBeforeRetry(attempt: number, retryAfterMs: number | undefined): number {
    if (retryAfterMs !== undefined) return Math.min(retryAfterMs, this.maxRetryAfterMs);
    const ceiling = Math.min(this.backoff.maxMs, this.backoff.baseMs * 2 ** (attempt - 1));
    return Math.floor(this.random() * ceiling);
  }
}

/** Splits a searchset page into matches and includes; OperationOutcome entries (mode 'outcome') are dropped. */
function splitPage<T extends Resource>(bundle: Bundle, resourceType: string): SearchPage<T> {
  const resources: T[] = [];
  const included: Resource[] = [];
  for (const entry of bundle.entry ?? ([] as BundleEntry[])) {
    const resource = entry.resource;
    if (!resource) continue;
    const mode = entry.search?.mode;
    if (mode === 'outcome') continue;
    // Servers that omit search.mode still return matches of the searched type first-class.
    if (mode === 'include' || (mode === undefined && resource.resourceType !== resourceType)) included.push(resource);
    else resources.push(resource as unknown as T);
  }
  return typeof bundle.total === 'number' ? { resources, included, total: bundle.total } : { resources, included };
}

function assertResourceType(resourceType: string): void {
  if (!RESOURCE_TYPE.test(resourceType)) throw new AdapterError('input-invalid', 'Not a FHIR resource type name');
}

function expectResourceType<T>(result: unknown, resourceType: string, op: Operation): T {
  const actual = (result as { resourceType?: unknown } | null)?.resourceType;
  if (actual !== resourceType) {
    throw new AdapterError(
      'fhir-invalid-response',
      `FHIR server answered ${op.name} ${op.resourceType} with ${typeof actual === 'string' ? actual : 'something that is not a FHIR resource'}, expected ${resourceType}`,
      { details: { op: op.name, resourceType: op.resourceType, received: typeof actual === 'string' ? actual : null } },
    );
  }
  return result as T;
}

/**
 * Turns whatever fhir-kit-client or fetch threw into an AdapterError.
 *
 * fhir-kit-client's HTTP errors are `Error`s with `response: {status, data}` and `config: {headers, url}`;
 * fetch's network failures are `TypeError('fetch failed')` with a `cause` carrying the socket error code.
 * The original is not kept as `cause`: its message holds the full URL (query string with patient ids)
 * and its `response.data` the body, and pino serialises causes. A cause with the safe facts stands in.
 */
function classify(raw: unknown, timedOut: boolean, op: Operation, timeoutMs: number, clock: Clock): AttemptFailure {
  const what = `${op.name} ${op.resourceType}`;
  if (timedOut) {
    return {
      error: new AdapterError('fhir-unavailable', `FHIR ${what} timed out after ${timeoutMs} ms`, {
        transient: true,
        cause: new Error(`timeout after ${timeoutMs} ms`),
        details: { kind: 'timeout', op: op.name, resourceType: op.resourceType },
      }),
      unprocessed: false,
    };
  }

  const status = httpStatusOf(raw);
  if (status !== undefined) return classifyHttp(raw, status, op, clock);

  const codes = errorCodesOf(raw);
  const netCode = codes.find((c) => NEVER_CONNECTED.has(c) || CONNECTION_LOST.has(c));
  const tlsCode = codes.find((c) => TLS_CODE.test(c));
  const details = { kind: 'network', errorCode: netCode ?? tlsCode ?? null, op: op.name, resourceType: op.resourceType };
  if (tlsCode && !netCode) {
    return {
      error: new AdapterError('fhir-unavailable', `TLS handshake with the FHIR server failed (${tlsCode}); check the certificate`, {
        transient: false,
        cause: new Error(`tls ${tlsCode}`),
        details,
      }),
      unprocessed: true,
    };
  }
  if (isFetchFailure(raw)) {
    return {
      error: new AdapterError('fhir-unavailable', `FHIR ${what}: network error${netCode ? ` (${netCode})` : ''}`, {
        transient: true,
        cause: new Error(`network ${netCode ?? 'error'}`),
        details,
      }),
      unprocessed: netCode !== undefined && NEVER_CONNECTED.has(netCode),
    };
  }
  // fhir-kit-client's own synchronous validation errors and anything else unexpected.
  const rawName = (raw as { name?: unknown } | null)?.name;
  const name = typeof rawName === 'string' ? rawName : typeof raw;
  return {
    error: new AdapterError('internal', `FHIR ${what} failed before reaching the server (${name})`, {
      transient: false,
      cause: new Error(name),
      details: { kind: 'client', op: op.name, resourceType: op.resourceType },
    }),
    unprocessed: true,
  };
}

function classifyHttp(raw: unknown, status: number, op: Operation, clock: Clock): AttemptFailure {
  const what = `${op.name} ${op.resourceType}`;
  const issueCodes = operationOutcomeIssueCodes(raw);
  const details = { kind: 'http', status, op: op.name, resourceType: op.resourceType, issueCodes };
  const cause = new Error(`HTTP ${status}`);
  const make = (code: ErrorCode, message: string, transient: boolean, retryAfterMs?: number): AttemptFailure => ({
    error: new AdapterError(code, message, { transient, status, retryAfterMs, cause, details }),
    unprocessed: status === 429 || status === 503,
  });

  if (status >= 200 && status < 300) {
    // fhir-kit-client throws with a 2xx status only when the body was not JSON.
    return make('fhir-invalid-response', `FHIR server answered ${what} with a body that is not JSON`, false);
  }
  if (RETRYABLE_STATUS.has(status)) {
    return make(
      'fhir-unavailable',
      `FHIR server answered ${what} with HTTP ${status}`,
      true,
      retryAfterMsOf(raw, clock),
    );
  }
  if (status === 401 || status === 403) {
    return make('fhir-auth', `FHIR server refused ${what} (HTTP ${status}); check the credentials and their scopes`, false);
  }
  if (status === 404 || status === 410) {
    // A search or transaction answered 404 means the endpoint itself is missing: most often a wrong base URL.
    const hint = op.name === 'read' ? '' : ' - is the base URL right (e.g. https://host/fhir/R4)?';
    return make('fhir-not-found', `FHIR server has no such ${op.resourceType}${op.name === 'read' ? '' : ' endpoint'} (HTTP ${status})${hint}`, false);
  }
  if (status >= 300 && status < 400) {
    return make('fhir-rejected', `FHIR server redirected ${what} (HTTP ${status}); set baseUrl to the final location`, false);
  }
  return make('fhir-rejected', `FHIR server rejected ${what} (HTTP ${status})`, false);
}

function httpStatusOf(raw: unknown): number | undefined {
  const status = (raw as { response?: { status?: unknown } } | null)?.response?.status;
  return typeof status === 'number' ? status : undefined;
}

function isFetchFailure(raw: unknown): boolean {
  // undici: 'fetch failed' before/while receiving headers, 'terminated' when the body stream breaks.
  // Duck-typed: fetch's TypeError may come from another realm (jest, vm), where instanceof fails.
  const { name, message } = (raw ?? {}) as { name?: unknown; message?: unknown };
  return name === 'TypeError' && typeof message === 'string' && /fetch failed|terminated/i.test(message);
}

function errorCodesOf(raw: unknown): string[] {
  const codes: string[] = [];
  let current: unknown = raw;
  for (let depth = 0; depth < 5 && current && typeof current === 'object'; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') codes.push(code);
    const errors = (current as { errors?: unknown }).errors; // AggregateError from happy-eyeballs connects
    if (Array.isArray(errors)) {
      for (const e of errors) {
        const c = (e as { code?: unknown } | null)?.code;
        if (typeof c === 'string') codes.push(c);
      }
    }
    current = (current as { cause?: unknown }).cause;
  }
  return codes;
}

/** Issue codes are a closed vocabulary, safe to log; diagnostics text may echo patient data and is not kept. */
function operationOutcomeIssueCodes(raw: unknown): string[] {
  const data = (raw as { response?: { data?: unknown } } | null)?.response?.data as
    | { resourceType?: unknown; issue?: { code?: unknown }[] }
    | undefined;
  if (data?.resourceType !== 'OperationOutcome' || !Array.isArray(data.issue)) return [];
  return data.issue.map((i) => i?.code).filter((c): c is string => typeof c === 'string' && /^[a-z-]{1,32}$/.test(c));
}

/** Retry-After as delta-seconds or HTTP-date (RFC 9110 §10.2.3), in ms from the clock's now. */
function retryAfterMsOf(raw: unknown, clock: Clock): number | undefined {
  const headers = (raw as { config?: { headers?: unknown } } | null)?.config?.headers;
  const get = (headers as { get?: unknown } | undefined)?.get;
  const value = typeof get === 'function' ? (get.call(headers, 'retry-after') as string | null) : null;
  return parseRetryAfter(value, clock.now());
}

export function parseRetryAfter(value: string | null | undefined, now: Date): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now.getTime());
}

/** Counting semaphore: at most `limit` holders; waiters are served in arrival order. */
class Semaphore {
  private available: number;
  private readonly waiters: (() => void)[] = [];

  constructor(limit: number) {
    this.available = limit;
  }

  acquire(): Promise<void> {
    if (this.available > 0) {
      this.available -= 1;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    // Hand the slot straight to the next waiter so a newcomer cannot overtake it.
    if (next) next();
    else this.available += 1;
  }
}
