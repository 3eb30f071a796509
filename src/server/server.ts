import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { OperationOutcomeError, getStatus, isOk } from '@medplum/core';
import { FhirRouter, type FhirRequest, type HttpMethod } from '@medplum/fhir-router';
import type { Binary, Bundle, BundleEntry, OperationOutcome, Resource } from '@medplum/fhirtypes';
import { AdapterError, toAdapterError } from '../core/errors.js';
import { httpStatusFor, operationOutcomeFor } from '../core/error-mapping.js';
import { silentLogger, type Logger } from '../core/log.js';
import { authorizationGate, type Authorize } from './auth.js';
import { BulkExports, type BulkExportOptions } from './bulk-export.js';
import { capabilityStatement } from './capability.js';
import { ensureR4Definitions, isR4ResourceType } from './definitions.js';
import { historyBundle } from './history.js';
import { patientScopeProblem } from './patient-scope.js';
import { IndexedMemoryRepository } from './repository.js';
import { decorateSearchset, formatQuery, normaliseSearch } from './search.js';
import { processTransaction } from './transaction.js';

/**
 * The embedded FHIR R4 server: medplum's FhirRouter and MemoryRepository behind express, with the gaps
 * that a real server must not have wrapped (see repository.ts, transaction.ts, search.ts, capability.ts):
 * validation on write, all-or-nothing transactions, paging links, a CapabilityStatement, indexed
 * subject/patient search and explicit refusal of searches the in-memory matcher cannot answer; plus
 * what the adapter's tests need of a real EHR-facing server: type-level history with deletions, Bulk
 * Data $export, vendor-style single-patient search rules and an optional bearer-token gate.
 *
 * Every URL the server writes (paging links, Location, fullUrl, export URLs) is built from its own base
 * URL, never from the request's Host header, which any client can set.
 */

export const FHIR_BASE_PATH = '/fhir/R4';
const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const SOFTWARE = { name: 'fhir-ml-adapter embedded FHIR server (medplum fhir-router 4.5)', version: '0.1.0' };

export interface FhirServerOptions {
  logger?: Logger;
  /** Validate every write against the R4 base StructureDefinitions (default true). */
  validate?: boolean;
  /** Upper bound for `_count` (default 1000). */
  maxPageSize?: number;
  /** Page size when `_count` is absent (default 100). */
  defaultPageSize?: number;
  /** Request body limit (default '100mb': loading sends whole patient bundles). */
  bodyLimit?: string;
  /**
   * The server's public base URL, ending in /fhir/R4 (e.g. behind a reverse proxy). Default: where
   * startFhirServer listens; an app that is not started says http://localhost/fhir/R4.
   */
  baseUrl?: string;
  /** Clock of `meta.lastUpdated` and export transaction times (default: system time). */
  clock?: () => Date;
  /**
   * Refuse searches on Observation, DiagnosticReport, ImagingStudy, Condition, Procedure,
   * ServiceRequest and CarePlan that do not name exactly one patient (400), as many EHR vendors' APIs do.
   */
  requireSinglePatient?: boolean;
  /** Refuse Observation searches without `category` (400), as some vendors do. */
  requireObservationCategory?: boolean;
  /**
   * Bearer-token gate: called with the Authorization header of every request but `/metadata` and
   * `/.well-known/smart-configuration`; false answers 401 with `WWW-Authenticate: Bearer`.
   */
  authorize?: Authorize;
  /** Served as JSON at `{base}/.well-known/smart-configuration` (SMART discovery) when given. */
  smartConfiguration?: Record<string, unknown>;
  /** Bulk Data $export behaviour (in-progress polls, Retry-After, file size). */
  bulkExport?: BulkExportOptions;
}

export interface LoadResult {
  /** Resources written (created or updated) per resource type. */
  counts: Record<string, number>;
  total: number;
}

export interface FhirServer {
  app: express.Express;
  repo: IndexedMemoryRepository;
  router: FhirRouter;
  /** The base URL every link is built from (see FhirServerOptions.baseUrl). */
  readonly baseUrl: string;
  /** Sets the base URL (startFhirServer does, once it knows its port). */
  setBaseUrl(url: string): void;
  /**
   * Loads a Bundle (transaction/batch run as one all-or-nothing transaction; any other type is turned
   * into one, keeping `urn:uuid:` fullUrls so references between entries resolve), one resource or an
   * array of resources (resources with an id are PUT, keeping the id). Throws OperationOutcomeError on
   * invalid input; nothing of that input is written then.
   */
  load(input: Bundle | Resource | Resource[]): Promise<LoadResult>;
  close(): Promise<void>;
}

export function createFhirServer(options: FhirServerOptions = {}): FhirServer {
  ensureR4Definitions();
  const logger = options.logger ?? silentLogger;
  const maxPageSize = options.maxPageSize ?? 1000;
  const defaultPageSize = Math.min(options.defaultPageSize ?? 100, maxPageSize);
  const repo = new IndexedMemoryRepository({ validate: options.validate ?? true, clock: options.clock });
  const router = new FhirRouter();
  let baseUrl = trimBase(options.baseUrl ?? `http://localhost${FHIR_BASE_PATH}`);
  const base = (): string => baseUrl;
  const exports = new BulkExports({ repo, logger, baseUrl: base, requiresAccessToken: !!options.authorize, options: options.bulkExport ?? {} });

  const app = express();
  app.disable('x-powered-by');
  const fhir = express.Router();

  // Per-request log: method, resource type, status, duration. Never the query string or the body.
  fhir.use((req, res, next) => {
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const resourceType = req.path.split('/')[1] || (req.method === 'POST' ? 'Bundle' : undefined);
      logger.debug({ method: req.method, resourceType, status: res.statusCode, ms: Math.round(ms * 10) / 10 }, 'fhir request');
    });
    next();
  });

  // Discovery is open (SMART clients read it before they have a token).
  fhir.get('/metadata', (_req, res) => {
    send(res, 200, capabilityStatement(baseUrl, SOFTWARE, { smartConfiguration: options.smartConfiguration }));
  });
  fhir.get('/.well-known/smart-configuration', (_req, res) => {
    if (!options.smartConfiguration) return sendOutcome(res, notFoundOutcome('This server publishes no SMART configuration'));
    res.status(200).type('application/json').send(JSON.stringify(options.smartConfiguration));
  });

  // The gate comes before body parsing: an unauthenticated client gets 401, not 100 MB parsed.
  if (options.authorize) fhir.use(authorizationGate(options.authorize));

  fhir.use(express.json({ type: ['application/json', 'application/fhir+json', 'application/json-patch+json', 'application/*+json'], limit: options.bodyLimit ?? '100mb' }));
  fhir.use(express.urlencoded({ extended: false, limit: options.bodyLimit ?? '100mb' }));

  exports.register(fhir);

  const history = (req: Request, res: Response, resourceType?: string, id?: string): void => {
    if (resourceType !== undefined && !isR4ResourceType(resourceType)) return sendOutcome(res, unknownType(resourceType));
    const lenient = /handling\s*=\s*lenient/i.test(req.get('prefer') ?? '');
    send(res, 200, historyBundle(repo, queryParams(req), { resourceType, id, baseUrl, defaultPageSize, maxPageSize, lenient }));
  };
  fhir.get('/_history', (req, res) => history(req, res));
  fhir.get('/:resourceType/_history', (req, res) => history(req, res, String(req.params.resourceType)));
  // A resource's history from the change log when it has one (deletions included); else medplum's.
  fhir.get('/:resourceType/:id/_history', (req, res, next) => {
    const { resourceType, id } = req.params as { resourceType: string; id: string };
    if (!isR4ResourceType(resourceType) || !repo.changesSince(undefined, { inclusive: true, resourceType }).some((c) => c.id === id)) return next();
    history(req, res, resourceType, id);
  });

  const search = async (req: Request, res: Response, resourceType: string, params: URLSearchParams): Promise<void> => {
    if (!isR4ResourceType(resourceType)) return sendOutcome(res, unknownType(resourceType));
    const refused = patientScopeProblem(resourceType, params, options);
    if (refused) return sendOutcome(res, refused);
    const lenient = /handling\s*=\s*lenient/i.test(req.get('prefer') ?? '');
    const paging = normaliseSearch(resourceType, params, { baseUrl, defaultPageSize, maxPageSize, lenient });
    const [outcome, bundle] = await router.handleRequest(fhirRequest(req, 'GET', `${resourceType}?${formatQuery(paging.params)}`), repo);
    if (!isOk(outcome) || !bundle) return sendOutcome(res, outcome);
    send(res, 200, decorateSearchset(bundle as Bundle, resourceType, paging, baseUrl));
  };

  fhir.get('/:resourceType', async (req, res) => {
    await search(req, res, String(req.params.resourceType), queryParams(req));
  });

  fhir.post('/:resourceType/_search', async (req, res) => {
    // POST _search carries parameters in a form body (and possibly the URL); both count.
    const params = queryParams(req);
    if (!req.is('application/x-www-form-urlencoded') && req.body && Object.keys(req.body as object).length > 0) {
      return sendOutcome(res, badRequestOutcome('POST _search needs an application/x-www-form-urlencoded body'));
    }
    for (const [k, v] of Object.entries((req.body ?? {}) as Record<string, string | string[]>)) {
      for (const value of Array.isArray(v) ? v : [v]) params.append(k, value);
    }
    await search(req, res, String(req.params.resourceType), params);
  });

  fhir.post('/', async (req, res) => {
    const started = Date.now();
    const bundle = req.body as Bundle;
    const response = await processTransaction(bundle, { repo, router, request: { headers: req.headers } });
    decorateBatchResponse(response, baseUrl);
    logger.info({ bundleType: bundle.type, entries: bundle.entry?.length ?? 0, ms: Date.now() - started }, 'fhir bundle processed');
    send(res, 200, response);
  });

  fhir.get('/Binary/:id', async (req, res) => {
    const [outcome, resource] = await router.handleRequest(fhirRequest(req, 'GET', `Binary/${req.params.id}`), repo);
    if (!isOk(outcome) || !resource) return sendOutcome(res, outcome);
    const binary = resource as Binary;
    // FHIR JSON unless the client asks for the Binary's own content type and not for FHIR.
    const wantsRaw = binary.contentType && binary.data !== undefined && !req.accepts(['application/fhir+json', 'application/json']) && req.accepts(binary.contentType);
    if (wantsRaw) {
      res.status(200).type(binary.contentType as string).send(Buffer.from(binary.data as string, 'base64'));
      return;
    }
    sendResource(res, 200, binary, baseUrl);
  });

  // Everything else (read, vread, history, create, update, patch, delete, conditional variants) is
  // medplum's FhirRouter as is; only the type check, server-assigned create ids and headers are added.
  fhir.use(async (req, res) => {
    const path = req.path.replace(/^\/+/, '');
    const resourceType = path.split('/')[0];
    if (!resourceType || !isR4ResourceType(resourceType)) return sendOutcome(res, resourceType ? unknownType(resourceType) : notFoundOutcome());
    const method = req.method as HttpMethod;
    const body = req.body as Resource | undefined;
    const isPlainCreate = method === 'POST' && !path.includes('/');
    if (isPlainCreate && body && typeof body === 'object' && 'id' in body) {
      // FHIR: the server assigns the id on create. MemoryRepository would keep a client id and could
      // silently overwrite an existing resource with it.
      delete (body as { id?: string }).id;
    }
    let existedBefore = true;
    if (method === 'PUT' && /^[A-Za-z]+\/[^/]+$/.test(path)) {
      existedBefore = await repo.readResource(resourceType, path.split('/')[1]).then(() => true, () => false);
    }
    const query = req.url.includes('?') ? req.url.slice(req.url.indexOf('?')) : '';
    const [outcome, resource] = await router.handleRequest(fhirRequest(req, method, `${path}${query}`), repo);
    if (!resource) return sendOutcome(res, outcome);
    let status = getStatus(outcome);
    if (method === 'PUT' && !existedBefore && status === 200) status = 201; // update-as-create
    sendResource(res, status, resource, baseUrl);
  });

  fhir.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    if ((err as { type?: string }).type === 'entity.parse.failed') {
      // The parser's message can quote the body: say where, not what.
      return sendOutcome(res, badRequestOutcome('Request body is not valid JSON'));
    }
    if ((err as { type?: string }).type === 'entity.too.large') {
      return send(res, 413, badRequestOutcome('Request body too large'));
    }
    if (err instanceof OperationOutcomeError) return sendOutcome(res, err.outcome);
    const adapterError = toAdapterError(err, 'internal', 'FHIR server');
    logger.error({ code: adapterError.code, method: req.method, err: adapterError.message }, 'fhir request failed');
    send(res, httpStatusFor(adapterError), operationOutcomeFor(adapterError));
  });

  app.use(FHIR_BASE_PATH, fhir);
  app.use((_req, res) => send(res, 404, notFoundOutcome(`Not found: the FHIR base is ${FHIR_BASE_PATH}`)));

  const load = async (input: Bundle | Resource | Resource[]): Promise<LoadResult> => {
    const bundle = toTransaction(input);
    const response = await processTransaction(bundle, { repo, router });
    const counts: Record<string, number> = {};
    let total = 0;
    for (const entry of response.entry ?? []) {
      const type = entry.resource?.resourceType ?? entry.response?.location?.split('/')[0];
      if (!type) continue;
      counts[type] = (counts[type] ?? 0) + 1;
      total++;
    }
    return { counts, total };
  };

  return {
    app,
    repo,
    router,
    get baseUrl() {
      return baseUrl;
    },
    setBaseUrl: (url: string) => {
      baseUrl = trimBase(url);
    },
    load,
    close: async () => {
      exports.clear();
      repo.clear();
    },
  };
}

function trimBase(url: string): string {
  return url.replace(/\/+$/, '');
}

export interface StartFhirServerOptions extends FhirServerOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
}

export interface RunningFhirServer {
  /** Base URL, e.g. http://127.0.0.1:41234/fhir/R4 */
  url: string;
  server: Server;
  repo: IndexedMemoryRepository;
  load: FhirServer['load'];
  app: express.Express;
  close(): Promise<void>;
}

export async function startFhirServer(options: StartFhirServerOptions = {}): Promise<RunningFhirServer> {
  const fhir = createFhirServer(options);
  const host = options.host ?? '127.0.0.1';
  const server = await new Promise<Server>((resolve, reject) => {
    const s = fhir.app.listen(options.port ?? 0, host, (err?: Error) => (err ? reject(err) : resolve(s)));
    s.once('error', reject);
  }).catch((err: unknown) => {
    throw new AdapterError('input-invalid', `Cannot listen on ${host}:${options.port ?? 0}: ${(err as Error).message}`, { cause: err });
  });
  // Benchmarks hold many keep-alive connections; don't let idle ones keep close() waiting.
  server.keepAliveTimeout = 5000;
  const { port } = server.address() as AddressInfo;
  const hostForUrl = host.includes(':') ? `[${host}]` : host;
  const url = `http://${hostForUrl}:${port}${FHIR_BASE_PATH}`;
  if (!options.baseUrl) fhir.setBaseUrl(url);
  let closed: Promise<void> | undefined;
  return {
    url,
    server,
    repo: fhir.repo,
    load: fhir.load,
    app: fhir.app,
    close: () =>
      (closed ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeIdleConnections();
      }).then(() => fhir.close())),
  };
}

/** Wraps any loadable input into a transaction Bundle, keeping fullUrls so urn:uuid references resolve. */
export function toTransaction(input: Bundle | Resource | Resource[]): Bundle {
  if (!Array.isArray(input) && input?.resourceType === 'Bundle') {
    const bundle = input as Bundle;
    if (bundle.type === 'transaction') return bundle;
    if (bundle.type === 'batch') return { ...bundle, type: 'transaction' };
    return {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: (bundle.entry ?? []).filter((e) => e.resource).map((e) => toEntry(e.resource as Resource, e.fullUrl)),
    };
  }
  const resources = Array.isArray(input) ? input : [input];
  return { resourceType: 'Bundle', type: 'transaction', entry: resources.map((r) => toEntry(r)) };
}

function toEntry(resource: Resource, fullUrl?: string): BundleEntry {
  if (resource?.id && typeof resource.resourceType === 'string') {
    return { ...(fullUrl ? { fullUrl } : {}), resource, request: { method: 'PUT', url: `${resource.resourceType}/${resource.id}` } };
  }
  return { ...(fullUrl ? { fullUrl } : {}), resource, request: { method: 'POST', url: String(resource?.resourceType) } };
}

function fhirRequest(req: Request, method: HttpMethod, url: string): FhirRequest {
  return { method, url, pathname: '', body: req.body, params: {}, query: {}, headers: req.headers, config: { transactions: false } };
}

function queryParams(req: Request): URLSearchParams {
  const i = req.originalUrl.indexOf('?');
  return new URLSearchParams(i < 0 ? '' : req.originalUrl.slice(i + 1));
}

function send(res: Response, status: number, body: unknown): void {
  res.status(status).type(FHIR_JSON).send(JSON.stringify(body));
}

function sendOutcome(res: Response, outcome: OperationOutcome): void {
  send(res, getStatus(outcome), outcome);
}

function sendResource(res: Response, status: number, resource: Resource, baseUrl: string): void {
  const vid = resource.meta?.versionId;
  if (vid) res.set('ETag', `W/"${vid}"`);
  if (resource.meta?.lastUpdated) res.set('Last-Modified', new Date(resource.meta.lastUpdated).toUTCString());
  if (status === 201 && resource.id) {
    res.set('Location', `${baseUrl}/${resource.resourceType}/${resource.id}${vid ? `/_history/${vid}` : ''}`);
  }
  send(res, status, resource);
}

function decorateBatchResponse(response: Bundle, baseUrl: string): void {
  for (const entry of response.entry ?? []) {
    const r = entry.resource;
    if (!r?.id || !entry.response) continue;
    entry.fullUrl = `${baseUrl}/${r.resourceType}/${r.id}`;
    const vid = r.meta?.versionId;
    if (vid) {
      entry.response.location = `${r.resourceType}/${r.id}/_history/${vid}`;
      entry.response.etag = `W/"${vid}"`;
    }
    if (r.meta?.lastUpdated) entry.response.lastModified = r.meta.lastUpdated;
  }
}

function unknownType(resourceType: string): OperationOutcome {
  return notFoundOutcome(`Unknown R4 resource type: ${resourceType}`);
}

function notFoundOutcome(text = 'Not found'): OperationOutcome {
  return { resourceType: 'OperationOutcome', id: 'not-found', issue: [{ severity: 'error', code: 'not-found', details: { text } }] };
}

function badRequestOutcome(text: string): OperationOutcome {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid', details: { text } }] };
}
