import type { NextFunction, Request, Response } from 'express';
import { httpStatusFor, operationOutcomeFor } from '../core/error-mapping.js';
import { AdapterError, toAdapterError } from '../core/errors.js';
import type { Logger } from '../core/log.js';

/**
 * Errors of the HTTP API as FHIR OperationOutcomes, through the one table (core/error-mapping): 401
 * `unauthenticated` (with a WWW-Authenticate challenge), 409 `conflict`, 413 `too-large`, and every other
 * AdapterError code.
 */
export function sendOutcome(res: Response, err: unknown): void {
  const e = toAdapterError(err, 'internal', 'api');
  if (e.code === 'unauthenticated') res.set('WWW-Authenticate', 'Bearer realm="fhir-ml-adapter"');
  res.status(httpStatusFor(e)).type('application/fhir+json').send(JSON.stringify(operationOutcomeFor(e)));
}

/** The last express middleware: body parser failures, AdapterErrors, anything else (500). */
export function errorHandler(logger: Logger) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    const type = (err as { type?: string }).type;
    if (type === 'entity.too.large') return sendOutcome(res, new AdapterError('too-large', 'request body too large'));
    if (type === 'entity.parse.failed') return sendOutcome(res, new AdapterError('input-invalid', 'request body is not valid JSON'));
    if (type === 'encoding.unsupported' || type === 'charset.unsupported') return sendOutcome(res, new AdapterError('input-invalid', 'unsupported request body encoding'));
    const e = toAdapterError(err, 'internal', 'api');
    // The route pattern, never the URL (ids, query strings).
    if (httpStatusFor(e) >= 500) logger.error({ code: e.code, route: routeOf(req), method: req.method }, 'request failed');
    sendOutcome(res, e);
  };
}

export function routeOf(req: Request): string {
  const route = (req.route as { path?: string } | undefined)?.path;
  return route ? `${req.baseUrl}${route}` : req.baseUrl || '(unmatched)';
}
