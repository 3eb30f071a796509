import PgBoss from 'pg-boss';
import { silentLogger, type Logger } from '../core/log.js';
import type { Database } from '../db/database.js';

/**
 * pg-boss on the service's database, through its `db` option: the same code path on PostgreSQL and on
 * the embedded PGlite. Workers supervise (expiry, retries, dead letters, archiving) and keep the cron
 * schedules; an API-only process only sends jobs.
 */
export interface BossOptions {
  role: 'worker' | 'api';
  logger?: Logger;
  /** Test knobs: how often maintenance and the cron check run (seconds). */
  maintenanceIntervalSeconds?: number;
  cronMonitorIntervalSeconds?: number;
}

/** Statements pg-boss has in flight, per instance (see `stopBoss`). */
const inFlight = new WeakMap<PgBoss, Set<Promise<unknown>>>();

export async function startBoss(db: Database, options: BossOptions): Promise<PgBoss> {
  const logger = (options.logger ?? silentLogger).child({ component: 'pg-boss' });
  const worker = options.role === 'worker';
  const pending = new Set<Promise<unknown>>();
  const executeSql = (text: string, values?: unknown[]) => {
    const p = db.executeSql(text, values);
    pending.add(p);
    const forget = () => pending.delete(p);
    p.then(forget, forget);
    return p;
  };
  const boss = new PgBoss({
    db: { executeSql },
    schema: 'pgboss',
    supervise: worker,
    schedule: worker,
    migrate: true,
    maintenanceIntervalSeconds: options.maintenanceIntervalSeconds ?? 60,
    cronMonitorIntervalSeconds: options.cronMonitorIntervalSeconds ?? 30,
    cronWorkerIntervalSeconds: Math.min(5, options.cronMonitorIntervalSeconds ?? 5),
    // Completed and failed jobs are kept for a week for inspection; run history lives in our own tables.
    archiveCompletedAfterSeconds: 12 * 3600,
    deleteAfterDays: 7,
  } as PgBoss.ConstructorOptions);
  // pg-boss errors carry SQL and job metadata, never patient data (job data is not in its messages).
  boss.on('error', (err) => logger.warn({ err: (err as Error).message }, 'job queue error'));
  inFlight.set(boss, pending);
  await boss.start();
  return boss;
}

/**
 * Stops pg-boss (`boss.stop` with the database left open: it is ours) and then waits for the statements
 * it still has in flight: it completes and fails a handler's job without awaiting that, so a job
 * finished just before the stop would otherwise meet a closed database.
 */
export async function stopBoss(boss: PgBoss, options: { graceful?: boolean; timeoutMs?: number } = {}): Promise<void> {
  await boss.stop({ graceful: options.graceful ?? true, wait: true, close: false, timeout: options.timeoutMs ?? 5000 });
  await bossSettled(boss);
}

/** Resolves once pg-boss has no statement in flight. */
export async function bossSettled(boss: PgBoss): Promise<void> {
  const pending = inFlight.get(boss);
  while (pending?.size) await Promise.allSettled([...pending]);
}
