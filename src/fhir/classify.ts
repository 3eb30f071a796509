import { AdapterError, type ErrorCode } from '../core/errors.js';

/**
 * Error classification for one failed HTTP attempt: what went wrong (an AdapterError with a code and a
 * transient flag) and whether the server can have acted on the request (`unprocessed`), which decides
 * whether a write may be sent again as it is or must first be read back.
 *
 * The classifier keeps nothing that may carry patient data: fhir-kit-client's errors hold the full URL
 * (query strings with patient ids) in their message and the response body in `response.data`, and pino
 * serialises causes, so a cause with the safe facts stands in for the original.
 */

/** What a request does, for logs, error messages and the retry policy. */
export interface Operation {
  name:
    | 'read'
    | 'search'
    | 'history'
    | 'page'
    | 'transaction'
    | 'capabilities'
    | 'binary'
    | 'discovery'
    | 'token'
    // Bulk Data $export (src/fhir/bulk/)
    | 'export-kickoff'
    | 'export-status'
    | 'export-file'
    | 'export-delete';
  resourceType: string;
}

/** A failed attempt, classified. */
export interface AttemptFailure {
  error: AdapterError;
  /**
   * The server certainly did not act on the request (connection never established, 401, 429, 503):
   * resending even a non-idempotent request is safe. When false, the outcome of a write is unknown.
   */
  unprocessed: boolean;
  /** The failure is a 401: fresh credentials may help (see AuthProvider.refresh). */
  unauthorized: boolean;
}

/**
 * An HTTP answer that is not a success, in the shape fhir-kit-client throws (`response.status`,
 * `response.data`, `config.headers`), so the transport's own requests (SMART discovery, token) classify
 * exactly like FHIR calls.
 */
export class HttpStatusError extends Error {
  readonly response: { status: number; data: unknown };
  readonly config: { headers: Headers };

  constructor(status: number, data: unknown, headers: Headers) {
    super(`HTTP ${status}`);
    this.name = 'HttpStatusError';
    this.response = { status, data };
    this.config = { headers };
  }
}

// Failures where no byte reached the server: safe to resend even a non-idempotent request.
const NEVER_CONNECTED = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);
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
// 429 and 503 say the server declined the request before doing anything with it (RFC 6585 §4, RFC 9110 §15.6.4).
const UNPROCESSED_STATUS = new Set([401, 429, 503]);

export interface ClassifyContext {
  /** The attempt's own timeout fired (its abort signal). */
  timedOut: boolean;
  op: Operation;
  timeoutMs: number;
  now: Date;
}

/** Turns whatever fhir-kit-client, fetch or the transport's own requests threw into an AttemptFailure. */
export function classifyFailure(raw: unknown, ctx: ClassifyContext): AttemptFailure {
  const { op } = ctx;
  const what = `${op.name} ${op.resourceType}`;
  if (raw instanceof AdapterError) {
    // Already decided where it was raised (e.g. a token endpoint's refusal): not sent again as it is.
    return { error: raw, unprocessed: true, unauthorized: false };
  }
  if (ctx.timedOut) {
    return {
      error: new AdapterError('fhir-unavailable', `FHIR ${what} timed out after ${ctx.timeoutMs} ms`, {
        transient: true,
        cause: new Error(`timeout after ${ctx.timeoutMs} ms`),
        details: { kind: 'timeout', op: op.name, resourceType: op.resourceType },
      }),
      unprocessed: false,
      unauthorized: false,
    };
  }

  const status = httpStatusOf(raw);
  if (status !== undefined) return classifyHttp(raw, status, op, ctx.now);

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
      unauthorized: false,
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
      unauthorized: false,
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
    unauthorized: false,
  };
}

function classifyHttp(raw: unknown, status: number, op: Operation, now: Date): AttemptFailure {
  const what = `${op.name} ${op.resourceType}`;
  const issueCodes = operationOutcomeIssueCodes(raw);
  const detailCodes = operationOutcomeDetailCodes(raw);
  const details = { kind: 'http', status, op: op.name, resourceType: op.resourceType, issueCodes, ...(detailCodes.length ? { detailCodes } : {}) };
  const cause = new Error(`HTTP ${status}`);
  const make = (code: ErrorCode, message: string, transient: boolean, retryAfterMs?: number): AttemptFailure => ({
    error: new AdapterError(code, message, { transient, status, retryAfterMs, cause, details }),
    unprocessed: UNPROCESSED_STATUS.has(status),
    unauthorized: status === 401,
  });

  if (status >= 200 && status < 300) {
    // fhir-kit-client throws with a 2xx status only when the body was not JSON.
    return make('fhir-invalid-response', `FHIR server answered ${what} with a body that is not JSON`, false);
  }
  if (RETRYABLE_STATUS.has(status)) {
    return make('fhir-unavailable', `FHIR server answered ${what} with HTTP ${status}`, true, retryAfterMsOf(raw, now));
  }
  if (status === 401 || status === 403) {
    return make(
      'fhir-auth',
      `FHIR server refused ${what} (HTTP ${status}); check the credentials${status === 403 ? ' and the scopes granted to them' : ''}`,
      false,
    );
  }
  if (status === 404 || status === 410) {
    // A search or transaction answered 404 means the endpoint itself is missing: most often a wrong base URL.
    const hint = op.name === 'read' ? '' : op.name.startsWith('export-') ? ' - the export or its file is gone (expired, deleted or never there)' : ' - is the base URL right (e.g. https://host/fhir/R4)?';
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

/**
 * Codes of `issue.details.coding` (e.g. a server's SINGLE_PATIENT_REQUIRED): identifiers of a rule, safe to
 * log; only short code-shaped values are kept, never free text.
 */
function operationOutcomeDetailCodes(raw: unknown): string[] {
  const data = (raw as { response?: { data?: unknown } } | null)?.response?.data as
    | { resourceType?: unknown; issue?: { details?: { coding?: { code?: unknown }[] } }[] }
    | undefined;
  if (data?.resourceType !== 'OperationOutcome' || !Array.isArray(data.issue)) return [];
  const codes = data.issue.flatMap((i) => (Array.isArray(i?.details?.coding) ? i.details.coding.map((c) => c?.code) : []));
  return codes.filter((c): c is string => typeof c === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(c));
}

function retryAfterMsOf(raw: unknown, now: Date): number | undefined {
  const headers = (raw as { config?: { headers?: unknown } } | null)?.config?.headers;
  const get = (headers as { get?: unknown } | undefined)?.get;
  const value = typeof get === 'function' ? (get.call(headers, 'retry-after') as string | null) : null;
  return parseRetryAfter(value, now);
}

/**
 * Retry-After as delta-seconds or HTTP-date (RFC 9110 §10.2.3), in ms from `now`; undefined when absent
 * or unparseable. The caller caps it (a server's value is never obeyed blindly).
 */
export function parseRetryAfter(value: string | null | undefined, now: Date): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now.getTime());
}
