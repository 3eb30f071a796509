import { createHash, randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import type PgBoss from 'pg-boss';
import type { App } from '../app.js';
import { systemClock, type Clock } from '../core/clock.js';
import { AdapterError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { fhirSourceOf, parseServiceConfig, type ServiceConfig } from '../config/sources.js';
import { openDatabase, type Database } from '../db/database.js';
import { migrate } from '../db/migrate.js';
import { PatientScoreStore } from '../db/patient-scores.js';
import { loadSigningKey } from '../fhir/auth/index.js';
import type { FhirClient } from '../fhir/client.js';
import { startBoss, stopBoss } from '../jobs/boss.js';
import type { BatchExecutor } from '../jobs/executor.js';
import { createServiceMetrics, fhirExchangeRecorder, type ServiceMetrics } from '../jobs/metrics.js';
import { ensureQueues } from '../jobs/queues.js';
import { serviceBulkPulls, servicePullStrategy } from '../sync/pull-strategies.js';
import { createSyncExecutor } from '../jobs/sync-executor.js';
import { startWorker, type Worker } from '../jobs/worker.js';
import { createApiApp } from './app.js';
import { createMetricsApp } from './metrics-app.js';

/**
 * The service's composition, on top of the adapter's composition root (`app`: configuration, logger,
 * models loaded once, the mapper's services, FHIR clients): database (PostgreSQL from DATABASE_URL, else
 * embedded), migrations, the job queue, the worker and/or the HTTP API with its console. Each source of
 * the sources file gets one FHIR client (`app.fhirClientFor`) whose every HTTP attempt feeds the
 * request metrics. `fhir-ml serve` calls it; so does `fhir-ml demo --serve` (`startServiceForFhirServer`).
 */
export interface ServiceOptions {
  config: ServiceConfig;
  /** The composition root: models, mapper services, client settings, identifier system, logger. Closed by the caller. */
  app: App;
  mode?: 'all' | 'api' | 'worker';
  /** Wraps the sync executor (tests pause batches or inject failures around the real one). */
  wrapExecutor?: (real: BatchExecutor) => BatchExecutor;
  /** An open database (tests); otherwise opened from `config.database` and closed on stop. */
  db?: Database;
  clock?: Clock;
  /** Default: the app's logger. */
  logger?: Logger;
  /** Test knobs for pg-boss's maintenance and cron intervals (seconds). */
  boss?: { maintenanceIntervalSeconds?: number; cronMonitorIntervalSeconds?: number };
  /** Override the API port/host of the config (0: any free port). */
  listen?: { port?: number; host?: string };
  /** Worker-only processes: override where /metrics is served (`service.metrics` of the config). */
  metricsListen?: { port?: number; host?: string };
}

export interface RunningService {
  /** Base URL of the API when it listens (e.g. http://127.0.0.1:8787). */
  url?: string;
  /** Base URL of a worker-only process's metrics listener (`/metrics`, `/healthz`). */
  metricsUrl?: string;
  db: Database;
  boss: PgBoss;
  worker?: Worker;
  server?: Server;
  metrics: ServiceMetrics;
  clientFor(sourceId: string): FhirClient;
  stop(options?: { graceSeconds?: number }): Promise<void>;
}

export async function startService(options: ServiceOptions): Promise<RunningService> {
  const { config, app } = options;
  const logger = options.logger ?? app.logger;
  const clock = options.clock ?? systemClock;
  const mode = options.mode ?? 'all';
  // Every source's models load (and self-test) and every SMART key is read before anything else: a
  // broken model or key stops the start, not a run in the night.
  await app.models([...new Set(config.sources.flatMap((s) => s.models))]);
  await checkSigningKeys(config);

  const ownDb = !options.db;
  const db = options.db ?? (await openDatabase({ url: config.database.url, dataDir: config.database.dataDir, poolSize: config.database.poolSize, logger }));
  let boss: PgBoss | undefined;
  const servers: Server[] = [];
  try {
    await migrate(db, { logger });
    const metrics = createServiceMetrics({ db });
    const clients = new Map<string, FhirClient>();
    const sources = new Map(config.sources.map((s) => [s.id, s]));
    const clientFor = (sourceId: string): FhirClient => {
      const source = sources.get(sourceId);
      if (!source) throw new AdapterError('not-found', `no source "${sourceId.slice(0, 40)}" in the sources file`);
      let client = clients.get(sourceId);
      if (!client) {
        client = app.fhirClientFor(fhirSourceOf(source, app.config.fhir), { onExchange: fhirExchangeRecorder(metrics, sourceId) });
        clients.set(sourceId, client);
      }
      return client;
    };

    boss = await startBoss(db, { role: mode === 'api' ? 'api' : 'worker', logger, ...options.boss });
    await ensureQueues(boss, config, { schedules: mode !== 'api' });
    let worker: Worker | undefined;
    // How each source's patients are pulled, by the worker's batches and by the API's one-patient reads.
    const pulls = new Map(config.sources.map((s) => [s.id, servicePullStrategy(s)]));
    if (mode !== 'api') {
      const bulk = serviceBulkPulls({ db, sources, models: (ids) => app.models(ids), clientFor, logger });
      const real = createSyncExecutor({ app, clientFor, scores: new PatientScoreStore(db), pullStrategyFor: (id) => pulls.get(id)!, stagedPullFor: bulk.staged, sources, clock, logger });
      const executor = options.wrapExecutor ? options.wrapExecutor(real) : real;
      worker = await startWorker({ db, boss, config, executor, clientFor, bulk, clock, logger, metrics });
    }
    let url: string | undefined;
    let metricsUrl: string | undefined;
    if (mode !== 'worker') {
      const api = createApiApp({ db, boss, config, app, clientFor, pullStrategyFor: (id) => pulls.get(id)!, metrics, logger, clock, onRunQueued: (sourceId) => worker?.wake(sourceId) });
      const server = await listen(api, options.listen?.host ?? config.api.host, options.listen?.port ?? config.api.port, 'the API');
      servers.push(server);
      url = baseUrlOf(server, options.listen?.host ?? config.api.host);
      logger.info({ url, mode }, 'API listening');
    } else {
      // No API here, so no /metrics on it: the worker's own counters (batches, patients, FHIR requests and
      // retries of this process) are served by a small listener of their own.
      const host = options.metricsListen?.host ?? config.metrics.host;
      const server = await listen(createMetricsApp({ config, metrics, logger }), host, options.metricsListen?.port ?? config.metrics.port, 'the metrics listener');
      servers.push(server);
      metricsUrl = baseUrlOf(server, host);
      logger.info({ url: metricsUrl }, 'metrics listening');
    }
    const theBoss = boss;
    let stopping: Promise<void> | undefined;
    return {
      url,
      metricsUrl,
      db,
      boss: theBoss,
      worker,
      server: mode !== 'worker' ? servers[0] : undefined,
      metrics,
      clientFor,
      stop: (stopOptions = {}) =>
        (stopping ??= (async () => {
          await Promise.all(servers.map(close));
          if (worker) await worker.stop({ graceSeconds: stopOptions.graceSeconds });
          else await stopBoss(theBoss);
          if (ownDb) await db.close();
        })()),
    };
  } catch (err) {
    await Promise.all(servers.map(close));
    if (boss) await stopBoss(boss, { graceful: false }).catch(() => undefined);
    if (ownDb) await db.close().catch(() => undefined);
    throw err;
  }
}

/** Reads every SMART source's private key once, so a missing or unusable key is a start-up error naming it. */
async function checkSigningKeys(config: ServiceConfig): Promise<void> {
  const problems: string[] = [];
  await Promise.all(
    config.sources.map(async (s) => {
      if (s.auth.type !== 'smart') return;
      try {
        await loadSigningKey(s.auth);
      } catch (err) {
        problems.push(`source ${s.id}: ${(err as Error).message}`);
      }
    }),
  );
  if (problems.length) throw new AdapterError('config-invalid', problems.join('; '), { details: { problems } });
}

async function listen(app: Express, host: string, port: number, what: string): Promise<Server> {
  return new Promise<Server>((resolve, reject) => {
    const s = app.listen(port, host, (err?: Error) => (err ? reject(err) : resolve(s)));
    s.once('error', reject);
  }).catch((err: unknown) => {
    throw new AdapterError('config-invalid', `${what} cannot listen on ${host}:${port}: ${(err as Error).message}`, { cause: err });
  });
}

function baseUrlOf(server: Server, host: string): string {
  const { port } = server.address() as AddressInfo;
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

function close(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

/**
 * API, console and worker for an already running FHIR server (the demo's embedded one): one source
 * `demo` over `fhirUrl` with the given models, manual runs only, and its own embedded database in memory
 * unless `dataDir` names a directory (a demo never touches the site's DATABASE_URL). Returns the running
 * service; `consoleUrl` is the console and `apiKey` signs in (generated for the session when not given).
 */
export async function startServiceForFhirServer(options: {
  fhirUrl: string;
  models: string[];
  app: App;
  apiKey?: string;
  port?: number;
  host?: string;
  dataDir?: string;
  logger?: Logger;
}): Promise<RunningService & { apiKey: string; consoleUrl: string }> {
  const apiKey = options.apiKey ?? randomBytes(24).toString('base64url');
  const config = parseServiceConfig(
    {
      service: {
        api: { host: options.host ?? '127.0.0.1', port: options.port ?? 0 },
        apiKeys: [{ name: 'demo', sha256: createHash('sha256').update(apiKey).digest('hex') }],
        database: { dataDir: options.dataDir ?? 'memory://' },
      },
      sources: [{ id: 'demo', baseUrl: options.fhirUrl, models: options.models, population: { type: 'all' } }],
    },
    { env: {} },
  );
  const service = await startService({ config, app: options.app, logger: options.logger });
  return { ...service, apiKey, consoleUrl: `${service.url}/console/` };
}
