import type { OperationOutcome } from 'fhir/r4.js';
import type { NextFunction, Request, Response } from 'express';
import { httpStatusFor, operationOutcomeFor } from '../core/error-mapping.js';
import { AdapterError, toAdapterError } from '../core/errors.js';
import type { Logger } from '../core/log.js';

/**
 * Errors of the HTTP API as FHIR OperationOutcomes. Adapter errors go through the one table
 * (core/error-mapping). Three situations have no code there yet and are answered here with the same
 * OperationOutcome shape: 401 (no or bad credentials), 409 (the source is already running) and 413
 * (body too large). (Proposed for the core table: `unauthenticated` 401/login, `conflict` 409/conflict,
 * `too-large` 413/too-costly.)
 */
export type ApiOnlyCode = 'unauthenticated' | 'conflict' | 'too-large';

const API_ONLY: Record<ApiOnlyCode, { http: number; issue: OperationOutcome['issue'][number]['code'] }> = {
  unauthenticated: { http: 401, issue: 'login' },
  conflict: { http: 409, issue: 'conflict' },
  'too-large': { http: 413, issue: 'too-costly' },
};

export class ApiError extends Error {
  constructor(
    readonly code: ApiOnlyCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export function outcomeOf(err: unknown): { status: number; outcome: OperationOutcome } {
  if (err instanceof ApiError) {
    const entry = API_ONLY[err.code];
    return {
      status: entry.http,
      outcome: {
        resourceType: 'OperationOutcome',
        issue: [{ severity: 'error', code: entry.issue, details: { coding: [{ system: 'https://fhir-ml-adapter.dev/error-code', code: err.code }], text: err.message } }],
      },
    };
  }
  return { status: httpStatusFor(err), outcome: operationOutcomeFor(err) };
}

export function sendOutcome(res: Response, err: unknown): void {
  const { status, outcome } = outcomeOf(err);
  if (err instanceof ApiError && err.code === 'unauthenticated') res.set('WWW-Authenticate', 'Bearer realm="fhir-ml-adapter"');
  res.status(status).type('application/fhir+json').send(JSON.stringify(outcome));
}

/** The last express middleware: body parser failures, ApiErrors, AdapterErrors, anything else (500). */
export function errorHandler(logger: Logger) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    const type = (err as { type?: string }).type;
    if (type === 'entity.too.large') return sendOutcome(res, new ApiError('too-large', 'request body too large'));
    if (type === 'entity.parse.failed') return sendOutcome(res, new AdapterError('input-invalid', 'request body is not valid JSON'));
    if (type === 'encoding.unsupported' || type === 'charset.unsupported') return sendOutcome(res, new AdapterError('input-invalid', 'unsupported request body encoding'));
    if (err instanceof ApiError) return sendOutcome(res, err);
    const e = toAdapterError(err, 'internal', 'api');
    const status = httpStatusFor(e);
    // The route pattern, never the URL (ids, query strings).
    if (status >= 500) logger.error({ code: e.code, route: routeOf(req), method: req.method }, 'request failed');
    sendOutcome(res, e);
  };
}

export function routeOf(req: Request): string {
  const route = (req.route as { path?: string } | undefined)?.path;
  return route ? `${req.baseUrl}${route}` : req.baseUrl || '(unmatched)';
}
