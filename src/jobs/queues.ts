import type PgBoss from 'pg-boss';
import type { ServiceConfig } from '../config/sources.js';

/**
 * Queue names and policies. pg-boss 10 keys a schedule by queue name, so each source has its own
 * run queue (its cron schedule and manual triggers both land there); batches of all sources share one
 * queue so workers take whatever is next.
 */
export const PATIENT_BATCH_QUEUE = 'patient-batch';
export const PATIENT_BATCH_DEAD = 'patient-batch-dead';
export const SOURCE_RUN_DEAD = 'source-run-dead';
export const RETENTION_QUEUE = 'retention';
/** Daily, at a quiet hour; the retention days come from the config. */
export const RETENTION_CRON = '17 3 * * *';

/** pg-boss 10 refuses a job expiry of 24 hours or more. */
const MAX_EXPIRE_SECONDS = 23 * 3600;

export function sourceRunQueue(sourceId: string): string {
  return `source-run.${sourceId}`;
}

export interface SourceRunJob {
  sourceId: string;
  /** Set for manual triggers (the run row exists); absent for scheduled ones (the job creates it). */
  runId?: string;
  full?: boolean;
}

export interface PatientBatchJob {
  runId: string;
  seq: number;
  sourceId: string;
  patientIds: string[];
  modelIds: string[];
  asOf: string;
  /** The run's selection step exported and staged the population: the batch reads staging. */
  staged?: boolean;
}

/**
 * Creates or updates every queue the service uses and, with `schedules` (worker processes), the
 * sources' cron schedules and the daily retention job.
 */
export async function ensureQueues(boss: PgBoss, config: ServiceConfig, options: { schedules: boolean }): Promise<void> {
  const w = config.worker;
  const ensure = async (name: string, options: Omit<PgBoss.Queue, 'name'>) => {
    const queue = { name, ...options };
    if (await boss.getQueue(name)) return boss.updateQueue(name, queue);
    try {
      await boss.createQueue(name, queue);
    } catch (err) {
      // Another process created it between our check and our create.
      if (!(await boss.getQueue(name))) throw err;
      await boss.updateQueue(name, queue);
    }
  };
  await ensure(PATIENT_BATCH_DEAD, { retentionMinutes: config.retentionDays * 24 * 60 });
  await ensure(SOURCE_RUN_DEAD, { retentionMinutes: config.retentionDays * 24 * 60 });
  await ensure(PATIENT_BATCH_QUEUE, {
    retryLimit: w.retryLimit,
    retryDelay: Math.max(1, w.retryDelaySeconds),
    retryBackoff: true,
    expireInSeconds: w.batchTimeoutSeconds,
    deadLetter: PATIENT_BATCH_DEAD,
  });
  await ensure(RETENTION_QUEUE, { retryLimit: 2, retryDelay: 300, expireInSeconds: 3600 });
  for (const source of config.sources) {
    const name = sourceRunQueue(source.id);
    // Selecting a large population can take a while; a selection that dies is retried from the start
    // (a Bulk Data export it began is resumed, not kicked off again). A selection that may export waits
    // as long as the export may take, and an hour for its files, within pg-boss's limit of a day.
    const exports = source.pull.strategy === 'bulk' || source.pull.strategy === 'auto';
    const exportSeconds = Math.ceil(source.pull.bulk.maxExportWaitMs / 1000) + 3600;
    const expireInSeconds = exports ? Math.min(MAX_EXPIRE_SECONDS, Math.max(w.batchTimeoutSeconds, exportSeconds)) : w.batchTimeoutSeconds;
    await ensure(name, { retryLimit: 2, retryDelay: Math.max(1, w.retryDelaySeconds), retryBackoff: true, expireInSeconds, deadLetter: SOURCE_RUN_DEAD });
    if (!options.schedules) continue;
    if (source.schedule) await boss.schedule(name, source.schedule.cron, { sourceId: source.id } satisfies SourceRunJob, { tz: source.schedule.timezone });
    else await boss.unschedule(name);
  }
  if (options.schedules) await boss.schedule(RETENTION_QUEUE, RETENTION_CRON, {}, { tz: 'UTC' });
}
