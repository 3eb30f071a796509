import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type PgBoss from 'pg-boss';
import { systemClock, type Clock } from '../core/clock.js';
import { AdapterError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { parseServiceConfig, type ServiceConfig, type SourceConfig } from '../config/sources.js';
import { openDatabase, type Database } from '../db/database.js';
import { migrate } from '../db/migrate.js';
import { FhirClient } from '../fhir/client.js';
import { startBoss } from '../jobs/boss.js';
import type { BatchExecutor } from '../jobs/executor.js';
import { createServiceMetrics, type ServiceMetrics } from '../jobs/metrics.js';
import { ensureQueues } from '../jobs/queues.js';
import { createModelCache, createSyncExecutor } from '../jobs/sync-executor.js';
import { startWorker, type Worker } from '../jobs/worker.js';
import { createApiApp } from './app.js';

/**
 * The service's composition: database (PostgreSQL from DATABASE_URL, else embedded), migrations, the job
 * queue, the worker and/or the HTTP API with its console. `fhir-ml serve` calls it; so can a demo that
 * wants results in a browser (`startServiceForFhirServer`).
 */
export interface ServiceOptions {
  config: ServiceConfig;
  /** Where models and mappings live and the identifier system of written resources (main config). */
  adapter: { modelsDir: string; mappingsDir: string; identifierSystem: string };
  mode?: 'all' | 'api' | 'worker';
  /** Default: the sync executor over the configured sources. */
  executor?: BatchExecutor;
  /** An open database (tests); otherwise opened from `config.database` and closed on stop. */
  db?: Database;
  clock?: Clock;
  logger?: Logger;
  /** Test knobs for pg-boss's maintenance and cron intervals (seconds). */
  boss?: { maintenanceIntervalSeconds?: number; cronMonitorIntervalSeconds?: number };
  /** Override the API port/host of the config (0: any free port). */
  listen?: { port?: number; host?: string };
}

export interface RunningService {
  /** Base URL of the API when it listens (e.g. http://127.0.0.1:8787). */
  url?: string;
  db: Database;
  boss: PgBoss;
  worker?: Worker;
  server?: Server;
  metrics: ServiceMetrics;
  clientFor(sourceId: string): FhirClient;
  stop(options?: { graceSeconds?: number }): Promise<void>;
}

export async function startService(options: ServiceOptions): Promise<RunningService> {
  const logger = options.logger ?? silentLogger;
  const clock = options.clock ?? systemClock;
  const mode = options.mode ?? 'all';
  const { config } = options;
  const ownDb = !options.db;
  const db = options.db ?? (await openDatabase({ url: config.database.url, dataDir: config.database.dataDir, poolSize: config.database.poolSize, logger }));
  let boss: PgBoss | undefined;
  try {
    await migrate(db, { logger });
    const metrics = createServiceMetrics({ db });
    const clients = new Map<string, FhirClient>();
    const sources = new Map(config.sources.map((s) => [s.id, s]));
    const clientFor = (sourceId: string): FhirClient => {
      const source = sources.get(sourceId);
      if (!source) throw new AdapterError('not-found', `no source "${sourceId}" in the sources file`);
      let client = clients.get(sourceId);
      if (!client) {
        client = new FhirClient({ ...clientOptionsFor(source), logger });
        clients.set(sourceId, client);
      }
      return client;
    };
    const modelsFor = createModelCache(options.adapter);
    // Every source's models load (and self-test) at start: a broken model stops the start, not a run.
    await modelsFor([...new Set(config.sources.flatMap((s) => s.models))]);

    boss = await startBoss(db, { role: mode === 'api' ? 'api' : 'worker', logger, ...options.boss });
    await ensureQueues(boss, config, { schedules: mode !== 'api' });
    let worker: Worker | undefined;
    if (mode !== 'api') {
      const executor = options.executor ?? createSyncExecutor({ clientFor, modelsFor, identifierSystem: options.adapter.identifierSystem, logger });
      worker = await startWorker({ db, boss, config, executor, clientFor, clock, logger, metrics });
    }
    let server: Server | undefined;
    let url: string | undefined;
    if (mode !== 'worker') {
      const app = createApiApp({
        db,
        boss,
        config,
        identifierSystem: options.adapter.identifierSystem,
        modelsDir: options.adapter.modelsDir,
        mappingsDir: options.adapter.mappingsDir,
        modelsFor,
        clientFor,
        metrics,
        logger,
        clock,
      });
      const host = options.listen?.host ?? config.api.host;
      const port = options.listen?.port ?? config.api.port;
      server = await new Promise<Server>((resolve, reject) => {
        const s = app.listen(port, host, (err?: Error) => (err ? reject(err) : resolve(s)));
        s.once('error', reject);
      }).catch((err: unknown) => {
        throw new AdapterError('config-invalid', `the API cannot listen on ${host}:${port}: ${(err as Error).message}`, { cause: err });
      });
      const address = server.address() as AddressInfo;
      url = `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
      logger.info({ url, mode }, 'API listening');
    }
    const theBoss = boss;
    let stopping: Promise<void> | undefined;
    return {
      url,
      db,
      boss: theBoss,
      worker,
      server,
      metrics,
      clientFor,
      stop: (stopOptions = {}) =>
        (stopping ??= (async () => {
          if (server) {
            const s = server;
            await new Promise<void>((resolve) => {
              s.close(() => resolve());
              s.closeIdleConnections();
            });
          }
          if (worker) await worker.stop({ graceSeconds: stopOptions.graceSeconds });
          else await theBoss.stop({ graceful: true, wait: true, close: false, timeout: 5000 });
          if (ownDb) await db.close();
        })()),
    };
  } catch (err) {
    if (boss) await boss.stop({ graceful: false, close: false, wait: true }).catch(() => undefined);
    if (ownDb) await db.close().catch(() => undefined);
    throw err;
  }
}

export function clientOptionsFor(source: SourceConfig): ConstructorParameters<typeof FhirClient>[0] {
  if (source.auth.type === 'smart') {
    throw new AdapterError('config-invalid', `source ${source.id}: SMART Backend Services authentication is not available in this version`);
  }
  return {
    baseUrl: source.baseUrl,
    auth: source.auth,
    timeoutMs: source.options.timeoutMs,
    maxRetries: source.options.maxRetries,
    concurrency: source.options.concurrency,
  };
}

/**
 * API, console and worker for an already running FHIR server (e.g. the demo's embedded one): one source
 * `demo` over `fhirUrl` with the given models, manual runs only, the embedded database in memory unless
 * `env.DATABASE_URL` or `dataDir` say otherwise
 * (the caller passes its validated environment; nothing here reads process.env). Returns the running service; its `url` + `/console` is the
 * console, and `apiKey` logs in (generated when not given).
 */
export async function startServiceForFhirServer(options: {
  fhirUrl: string;
  models: string[];
  adapter: ServiceOptions['adapter'];
  apiKey?: string;
  port?: number;
  host?: string;
  dataDir?: string;
  env?: Record<string, string | undefined>;
  logger?: Logger;
}): Promise<RunningService & { apiKey: string; consoleUrl: string }> {
  const { randomBytes, createHash } = await import('node:crypto');
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
    { env: options.env ?? {} },
  );
  const service = await startService({ config, adapter: options.adapter, logger: options.logger });
  return { ...service, apiKey, consoleUrl: `${service.url}/console/` };
}
