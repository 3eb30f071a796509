import express from 'express';
import type { Logger } from '../core/log.js';
import { AdapterError } from '../core/errors.js';
import type { ServiceConfig } from '../config/sources.js';
import type { ServiceMetrics } from '../jobs/metrics.js';
import { createAuthenticator } from './auth.js';
import { errorHandler } from './errors.js';

/**
 * What a worker-only process serves over HTTP: `GET /healthz` (no authentication, for liveness probes)
 * and `GET /metrics` (Prometheus text; the same bearer API keys and JWT issuers as the API, so a scraper
 * sends `Authorization: Bearer ...`). Its counters are this process's: batches, patient outcomes, FHIR
 * requests, retries and latency; the queue gauges are read from the shared database.
 */
export function createMetricsApp(deps: { config: ServiceConfig; metrics: ServiceMetrics; logger: Logger }): express.Express {
  const logger = deps.logger.child({ component: 'metrics' });
  const auth = createAuthenticator({ apiKeys: deps.config.apiKeys, jwtIssuers: deps.config.jwtIssuers });
  const app = express();
  app.disable('x-powered-by');
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/metrics', auth.middleware(), async (_req, res) => {
    res.set('Content-Type', deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
  app.use((_req, _res, next) => next(new AdapterError('not-found', 'this worker serves /metrics and /healthz only')));
  app.use(errorHandler(logger));
  return app;
}
