import type { OperationOutcome } from 'fhir/r4.js';
import { AdapterError, toAdapterError, type ErrorCode } from './errors.js';

/** The one place that maps error codes to CLI exit codes, HTTP statuses and OperationOutcome codes. */
const TABLE: Record<ErrorCode, { exit: number; http: number; issue: OperationOutcome['issue'][number]['code'] }> = {
  'config-invalid': { exit: 78, http: 500, issue: 'invalid' }, // EX_CONFIG
  'mapping-invalid': { exit: 65, http: 500, issue: 'invalid' }, // EX_DATAERR
  'model-invalid': { exit: 65, http: 500, issue: 'invalid' },
  'model-mismatch': { exit: 65, http: 500, issue: 'invalid' },
  'model-selftest-failed': { exit: 65, http: 500, issue: 'exception' },
  'inference-failed': { exit: 70, http: 500, issue: 'exception' }, // EX_SOFTWARE
  'fhir-unavailable': { exit: 69, http: 503, issue: 'transient' }, // EX_UNAVAILABLE
  'fhir-rejected': { exit: 76, http: 502, issue: 'processing' }, // EX_PROTOCOL
  'fhir-auth': { exit: 77, http: 502, issue: 'security' }, // EX_NOPERM
  'fhir-not-found': { exit: 66, http: 404, issue: 'not-found' },
  'fhir-invalid-response': { exit: 76, http: 502, issue: 'processing' },
  'fhir-unsafe-link': { exit: 76, http: 502, issue: 'security' },
  'input-invalid': { exit: 64, http: 400, issue: 'invalid' }, // EX_USAGE
  'not-found': { exit: 66, http: 404, issue: 'not-found' },
  unauthenticated: { exit: 77, http: 401, issue: 'login' }, // EX_NOPERM
  conflict: { exit: 75, http: 409, issue: 'conflict' }, // EX_TEMPFAIL: try again when the other work is done
  'too-large': { exit: 65, http: 413, issue: 'too-costly' },
  internal: { exit: 70, http: 500, issue: 'exception' },
};

export const EXIT_OK = 0;
/** Sync finished but some patients could not be processed. */
export const EXIT_PARTIAL = 3;
/** Stopped by a signal (128 + its number, as shells report it): the summary says `interrupted`. */
export const EXIT_INTERRUPTED = { SIGINT: 130, SIGTERM: 143 } as const;
/** Standard output closed by its reader (`| head`): ended quietly, as a process ended by SIGPIPE (128 + 13). */
export const EXIT_OUTPUT_CLOSED = 141;

export function exitCodeFor(err: unknown): number {
  return TABLE[toAdapterError(err).code].exit;
}

export function httpStatusFor(err: unknown): number {
  return TABLE[toAdapterError(err).code].http;
}

export function operationOutcomeFor(err: unknown): OperationOutcome {
  const e = toAdapterError(err);
  return {
    resourceType: 'OperationOutcome',
    issue: [
      {
        severity: 'error',
        code: TABLE[e.code].issue,
        details: { coding: [{ system: 'https://fhir-ml-adapter.dev/error-code', code: e.code }], text: e.message },
        diagnostics: e.transient ? 'transient: retry may succeed' : undefined,
      },
    ],
  };
}

export function describeError(err: unknown): string {
  const e = toAdapterError(err);
  return `${e.code}: ${e.message}`;
}

export { AdapterError };
