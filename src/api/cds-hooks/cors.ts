import type { NextFunction, Request, Response } from 'express';

/**
 * CORS for the CDS Hooks endpoints: the spec has CDS Services implement CORS so that browser-based CDS
 * Clients (EHR web front ends, the CDS Hooks sandbox) can call them. Requests carry the EHR's signed JWT
 * in `Authorization`, never cookies, so no credentials are allowed; an origin is answered only when the
 * configuration lists it (`service.cdsHooks.corsOrigins`, `*` for any). A preflight (OPTIONS) is answered
 * here, before authentication, as browsers send it without the JWT.
 */
export function cdsCors(allowed: readonly string[]): (req: Request, res: Response, next: NextFunction) => void {
  const any = allowed.includes('*');
  const origins = new Set(allowed.filter((o) => o !== '*'));
  return (req, res, next) => {
    const origin = req.get('origin');
    res.vary('Origin');
    if (origin && (any || origins.has(origin))) {
      res.set('Access-Control-Allow-Origin', any ? '*' : origin);
      if (req.method === 'OPTIONS') {
        res.set('Access-Control-Allow-Methods', 'GET, POST, OPTIONS');
        res.set('Access-Control-Allow-Headers', 'Authorization, Content-Type');
        res.set('Access-Control-Max-Age', '600');
      }
    }
    if (req.method === 'OPTIONS') {
      res.status(204).end();
      return;
    }
    next();
  };
}
