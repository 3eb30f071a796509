/**
 * The one error type of the adapter. Every third-party throw is wrapped into it where it enters
 * (fhir-kit-client throws plain objects, onnxruntime throws strings), so callers only ever see
 * `AdapterError` with a stable `code` and a `transient` flag that says whether a retry can help.
 * Mapping to exit codes, HTTP statuses and OperationOutcomes lives in `error-mapping.ts`.
 */
export type ErrorCode =
  | 'config-invalid'
  | 'mapping-invalid'
  | 'model-invalid'
  | 'model-mismatch'
  | 'model-selftest-failed'
  | 'inference-failed'
  | 'fhir-unavailable' // network errors, timeouts, 5xx, 429
  | 'fhir-rejected' // 4xx other than auth / not found
  | 'fhir-auth' // 401/403
  | 'fhir-not-found'
  | 'fhir-invalid-response' // unparseable or unexpected body
  | 'fhir-unsafe-link' // paging link to another origin
  | 'input-invalid' // bad CLI/API input
  | 'not-found'
  | 'unauthenticated' // no or bad credentials of a caller of the adapter's API
  | 'conflict' // the request clashes with the current state (a source that is already running)
  | 'too-large' // a request body over the configured limit
  | 'internal';

export interface AdapterErrorOptions {
  transient?: boolean;
  cause?: unknown;
  /** HTTP status of the upstream response, when there was one. */
  status?: number;
  /** Milliseconds the upstream asked us to wait (Retry-After), when it did. */
  retryAfterMs?: number;
  /** Extra structured detail safe to log (never resource bodies, tokens or query strings). */
  details?: Record<string, unknown>;
}

export class AdapterError extends Error {
  readonly code: ErrorCode;
  readonly transient: boolean;
  readonly status?: number;
  readonly retryAfterMs?: number;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: AdapterErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AdapterError';
    this.code = code;
    this.transient = options.transient ?? false;
    this.status = options.status;
    this.retryAfterMs = options.retryAfterMs;
    this.details = options.details;
  }

  static is(err: unknown, code?: ErrorCode): err is AdapterError {
    return err instanceof AdapterError && (code === undefined || err.code === code);
  }
}

/** Wraps anything thrown by a third party into an AdapterError, keeping the original as `cause`. */
export function toAdapterError(err: unknown, fallback: ErrorCode = 'internal', context?: string): AdapterError {
  if (err instanceof AdapterError) return err;
  const text =
    err instanceof Error ? err.message : typeof err === 'string' ? err : safeStringify(err);
  return new AdapterError(fallback, context ? `${context}: ${text}` : text, { cause: err });
}

function safeStringify(value: unknown): string {
  try {
    return JSON.stringify(value)?.slice(0, 300) ?? String(value);
  } catch {
    return String(value);
  }
}
