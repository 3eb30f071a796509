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

export async function startBoss(db: Database, options: BossOptions): Promise<PgBoss> {
  const logger = (options.logger ?? silentLogger).child({ component: 'pg-boss' });
  const worker = options.role === 'worker';
  const boss = new PgBoss({
    db: { executeSql: (text: string, values?: unknown[]) => db.executeSql(text, values) },
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
  await boss.start();
  return boss;
}
