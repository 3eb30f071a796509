import { Client, RESPONSE_KEY } from 'fhir-kit-client';
import type { Binary, Bundle, BundleEntry, CapabilityStatement, FhirResource, Resource } from 'fhir/r4.js';
import { z } from 'zod';
import { systemClock, type Clock } from '../core/clock.js';
import { AdapterError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { createAuthProvider, isAuthProvider, smartAuthSchema, type AuthProvider, type FhirAuth } from './auth/index.js';
import type { Operation } from './classify.js';
import { Transport, type AttemptInit, type Exchange, type ExchangeEvent } from './transport.js';

/**
 * The adapter's one way to make FHIR calls: read, search with same-origin paging, Binary, transaction,
 * CapabilityStatement. fhir-kit-client builds the requests; the Transport (transport.ts) runs each one
 * with a concurrency slot, auth headers, a timeout and retries; classify.ts turns failures into
 * AdapterErrors.
 *
 * The composition root builds one client per FHIR server from configuration, and passes what only it
 * may read from the environment (`debugNamespaces`, the DEBUG variable).
 */

export type { FhirAuth } from './auth/index.js';
export type { AttemptInit, Exchange, ExchangeEvent } from './transport.js';
export { parseRetryAfter } from './classify.js';

export interface FhirClientOptions {
  baseUrl: string;
  /** Configured credentials (none, bearer, basic, SMART Backend Services) or an AuthProvider. Default none. */
  auth?: FhirAuth | AuthProvider;
  /** Per attempt, covering connect, headers and body. Default 30000. */
  timeoutMs?: number;
  /** Retries after the first attempt. Default 5. */
  maxRetries?: number;
  /** Capped exponential backoff with full jitter: delay = random(0, min(maxMs, baseMs * 2^(retry-1))). Default 250 / 10000. */
  backoff?: { baseMs?: number; maxMs?: number };
  /** Upper bound on a server's Retry-After (seconds or HTTP-date). Default 60000. */
  maxRetryAfterMs?: number;
  /**
   * Least wait before reading back a write whose connection timed out or was lost, so an attempt still
   * committing on the server can finish first (see transport.ts). Default 1000.
   */
  unknownOutcomeSettleMs?: number;
  /** Requests in flight across this client. Default 4. */
  concurrency?: number;
  clock?: Clock;
  logger?: Logger;
  /** Source of jitter in [0, 1); tests inject a fixed one. Default Math.random. */
  random?: () => number;
  /** Called once per HTTP attempt (request counts, metrics); never carries URLs. */
  onExchange?: (event: ExchangeEvent) => void;
  /**
   * The value of the DEBUG environment variable, passed by the composition root (the only reader of the
   * environment). fhir-kit-client's `debug` tracing prints full URLs, headers (Authorization included)
   * and bodies to stderr and cannot be switched off from here: when DEBUG enables it, the client warns.
   */
  debugNamespaces?: string;
}

/** One page of a search: the matches, and the resources the server added for `_include`/`_revinclude`. */
export interface SearchPage<T extends Resource = Resource> {
  resources: T[];
  included: Resource[];
  /** Bundle.total, when the server states it. */
  total?: number;
}

export type SearchParams = Record<string, string | string[]>;

export interface TransactionOptions {
  /**
   * Makes a failure whose outcome is unknown (500, 502, 504, timeout, connection lost) retryable: after
   * the backoff, `reconcile` reads back what the failed attempt may have committed and returns the
   * Bundle still to send, or undefined when everything has landed (`transaction` then resolves
   * undefined). Only for transactions whose every entry can be recognised on the server afterwards
   * (conditional creates on identifiers, PUT under derived ids).
   */
  reconcile: () => Promise<Bundle | undefined>;
}

const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;
const RESOURCE_TYPE = /^[A-Z][A-Za-z]{1,63}$/;

const staticAuthSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('none') }),
  z.object({ type: z.literal('bearer'), token: z.string().min(1, 'bearer token must not be empty') }),
  z.object({
    type: z.literal('basic'),
    username: z.string().min(1).refine((u) => !u.includes(':'), 'basic username must not contain ":"'),
    password: z.string(),
  }),
  smartAuthSchema,
]);

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
  auth: z.union([z.custom<AuthProvider>(isAuthProvider), staticAuthSchema]).default({ type: 'none' }),
  timeoutMs: z.number().int().positive().max(600_000).default(30_000),
  maxRetries: z.number().int().min(0).max(20).default(5),
  backoff: z
    .object({ baseMs: z.number().int().positive().default(250), maxMs: z.number().int().positive().default(10_000) })
    .refine((b) => b.maxMs >= b.baseMs, 'backoff.maxMs must be >= backoff.baseMs')
    .default({ baseMs: 250, maxMs: 10_000 }),
  maxRetryAfterMs: z.number().int().min(0).default(60_000),
  unknownOutcomeSettleMs: z.number().int().min(0).max(600_000).default(1000),
  concurrency: z.number().int().positive().max(256).default(4),
  debugNamespaces: z.string().optional(),
});



export class FhirClient {
  readonly baseUrl: string;
  private readonly origin: string;
  private readonly fhir: Client;
  private readonly transport: Transport;
  private readonly logger: Logger;

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
    this.logger = (options.logger ?? silentLogger).child({ component: 'fhir-client' });
    const common = {
      timeoutMs: o.timeoutMs,
      maxRetries: o.maxRetries,
      backoff: o.backoff,
      maxRetryAfterMs: o.maxRetryAfterMs,
      unknownOutcomeSettleMs: o.unknownOutcomeSettleMs,
      clock: options.clock ?? systemClock,
      logger: this.logger,
      random: options.random ?? Math.random,
      onExchange: options.onExchange,
    };
    const auth = isAuthProvider(o.auth) ? o.auth : createAuthProvider(o.auth as FhirAuth, { ...common, fhirBaseUrl: this.baseUrl });
    this.transport = new Transport({ ...common, auth, concurrency: o.concurrency });
    // Credentials travel per attempt (AttemptInit.headers), never in the fhir-kit-client instance.
    this.fhir = new Client({ baseUrl: this.baseUrl });

    if (o.debugNamespaces !== undefined && /fhir-kit-client|^\*$|,\*/.test(o.debugNamespaces)) {
      this.logger.warn('DEBUG enables fhir-kit-client tracing, which writes URLs, credentials and bodies to stderr');
    }
  }

  /** The server's CapabilityStatement (GET [base]/metadata). */
  async capabilities(): Promise<CapabilityStatement> {
    const op: Operation = { name: 'capabilities', resourceType: 'CapabilityStatement' };
    const result = await this.run(op, 'idempotent', (options) => this.fhir.capabilityStatement(options));
    return expectResourceType<CapabilityStatement>(result, 'CapabilityStatement', op);
  }

  async read<T extends Resource = FhirResource>(resourceType: string, id: string): Promise<T> {
    assertResourceType(resourceType);
    if (!FHIR_ID.test(id)) throw new AdapterError('input-invalid', `Not a valid FHIR id for a ${resourceType} read`);
    const op: Operation = { name: 'read', resourceType };
    const result = await this.run(op, 'idempotent', (options) => this.fhir.read({ resourceType, id, options }));
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
   * Without options, the Bundle is resent only when the server certainly did not process it (connection
   * never established, 401, 429, 503); a 500, 502, 504, timeout or lost connection is reported as a
   * transient `fhir-unavailable` with its outcome unknown, because resending blindly could apply it
   * twice. With `reconcile`, such a failure is read back and what is missing is resent, with the same
   * backoff and retry budget as reads (see TransactionOptions and transport.ts for the race this leaves).
   */
  transaction(bundle: Bundle): Promise<Bundle>;
  transaction(bundle: Bundle, options: TransactionOptions): Promise<Bundle | undefined>;
  async transaction(bundle: Bundle, options?: TransactionOptions): Promise<Bundle | undefined> {
    assertTransaction(bundle);
    const op: Operation = { name: 'transaction', resourceType: 'Bundle' };
    let body = bundle;
    const reconcile = options?.reconcile;
    const exchange: Exchange<unknown> = {
      op,
      send: (attempt) => this.fhir.transaction({ body: body as unknown as Record<string, unknown> & { resourceType: string }, options: attempt }),
      statusOf: fhirKitStatus,
      retry: reconcile
        ? async () => {
            const remaining = await reconcile();
            if (remaining === undefined) return { settled: undefined };
            assertTransaction(remaining);
            body = remaining;
            return 'resend';
          }
        : 'unsent-only',
    };
    const result = await this.transport.execute(exchange);
    return result === undefined ? undefined : expectResourceType<Bundle>(result, 'Bundle', op);
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
    const first: Operation = { name: 'search', resourceType };
    const bundles = this.pages(first, (options) => this.fhir.resourceSearch({ resourceType, searchParams: params, options }));
    for await (const bundle of bundles) yield splitPage<T>(bundle, resourceType);
  }

  /**
   * History of a type (`[type]/_history`) or of one resource (`[type]/[id]/_history`), every page, as the
   * server gives it: newest first, a deletion as an entry with `request.method` DELETE and no resource.
   * `_since` bounds it (incremental runs look for deleted data this way). Paging as in search().
   */
  async *history(resourceType: string, params: SearchParams = {}, id?: string): AsyncGenerator<Bundle, void, undefined> {
    assertResourceType(resourceType);
    if (id !== undefined && !FHIR_ID.test(id)) throw new AdapterError('input-invalid', `Not a valid FHIR id for a ${resourceType} history`);
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) for (const v of Array.isArray(value) ? value : [value]) query.append(name, v);
    const url = `${this.baseUrl}/${resourceType}${id === undefined ? '' : `/${id}`}/_history${query.size ? `?${query}` : ''}`;
    const first: Operation = { name: 'history', resourceType };
    yield* this.pages(first, (options) => this.fhir.request(url, { options }));
  }

  /** The first Bundle, then every `next` page (same origin only, never a page twice). */
  private async *pages(first: Operation, send: (options: AttemptInit) => Promise<unknown>): AsyncGenerator<Bundle, void, undefined> {
    const { resourceType } = first;
    const next: Operation = { name: 'page', resourceType };
    let bundle = expectResourceType<Bundle>(await this.run(first, 'idempotent', send), 'Bundle', first);
    const seen = new Set<string>();
    let pages = 0;
    for (;;) {
      pages += 1;
      yield bundle;
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
        await this.run(next, 'idempotent', (options) => this.fhir.request(url, { options })),
        'Bundle',
        next,
      );
    }
  }

  /**
   * Runs one HTTP exchange that is not a plain FHIR REST call (Bulk Data `$export`, its status polls and
   * files: src/fhir/bulk/) through this client's transport, so it gets the same credentials, concurrency
   * bound, timeout, retries, backoff, Retry-After cap and 401 renewal as every other call. `send` makes
   * one attempt with the AttemptInit it is given (abort signal, auth headers) and throws
   * `HttpStatusError` for an answer that is not a success, so it is classified like any FHIR answer.
   */
  execute<T>(exchange: Exchange<T>): Promise<T> {
    return this.transport.execute(exchange);
  }

  private run(op: Operation, retry: 'idempotent', send: (options: AttemptInit) => Promise<unknown>): Promise<unknown> {
    return this.transport.execute({ op, retry, send, statusOf: fhirKitStatus });
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
}

function assertTransaction(bundle: Bundle): void {
  if (bundle?.resourceType !== 'Bundle' || (bundle.type !== 'transaction' && bundle.type !== 'batch')) {
    throw new AdapterError('input-invalid', 'transaction() needs a Bundle of type transaction or batch');
  }
}

/** fhir-kit-client keeps the fetch Response on a hidden property of the parsed result. */
function fhirKitStatus(result: unknown): number | undefined {
  const response = (result as Record<string, unknown> | null)?.[RESPONSE_KEY] as { status?: unknown } | undefined;
  return typeof response?.status === 'number' ? response.status : undefined;
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

