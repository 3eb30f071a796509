import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { OperationOutcome } from '@medplum/fhirtypes';

/**
 * The optional bearer-token gate. The embedded server has no users of its own: a test or a demo that
 * needs an authenticated FHIR server passes `authorize`, which sees the raw Authorization header (e.g.
 * to verify a token a test token endpoint issued) and says yes or no. Discovery stays open, as SMART
 * requires: `/metadata` and `/.well-known/smart-configuration` (they are routed before the gate).
 */
export type Authorize = (authorizationHeader: string | undefined) => boolean | Promise<boolean>;

export function authorizationGate(authorize: Authorize): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const header = req.get('authorization');
    Promise.resolve()
      .then(() => authorize(header))
      .then((allowed) => {
        if (allowed) return next();
        // RFC 6750: a request with no credentials gets the bare challenge, a refused token `invalid_token`.
        const challenge = header ? 'Bearer realm="fhir", error="invalid_token"' : 'Bearer realm="fhir"';
        res.status(401).set('WWW-Authenticate', challenge).type('application/fhir+json; charset=utf-8').send(JSON.stringify(unauthorized(!!header)));
      })
      .catch(next);
  };
}

function unauthorized(hadCredentials: boolean): OperationOutcome {
  const text = hadCredentials ? 'The access token was refused' : 'Authentication required: send Authorization: Bearer <token>';
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login', details: { text } }] };
}
