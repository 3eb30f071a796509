import PgBoss from 'pg-boss';
import { AdapterError } from '../core/errors.js';
import type { SourceConfig } from '../config/sources.js';
import { bossDbFor, type Database } from '../db/database.js';
import { RunStore, type RunRow } from '../db/runs.js';
import { sourceRunQueue, type SourceRunJob } from './queues.js';

/**
 * Starts a run of a source now (API, CLI): the run row and its job are created in one transaction, so a
 * run is never queued without a job or the reverse. A source with an active run is refused: the unique
 * index on active runs makes that hold across every process sharing the database.
 */
export type TriggerResult = { started: true; run: RunRow } | { started: false; activeRunId: string };

export async function triggerRun(
  deps: { db: Database; boss: PgBoss; runs?: RunStore },
  source: SourceConfig,
  options: { trigger: string; asOf: Date; full?: boolean },
): Promise<TriggerResult> {
  const runs = deps.runs ?? new RunStore(deps.db);
  try {
    const run = await deps.db.transaction(async (tx) => {
      const created = await runs.insert(tx, { sourceId: source.id, trigger: options.trigger, asOf: options.asOf, modelIds: source.models });
      const job: SourceRunJob = { sourceId: source.id, runId: created.id, full: !!options.full };
      const id = await deps.boss.send(sourceRunQueue(source.id), job, { db: bossDbFor(tx) } as PgBoss.SendOptions);
      if (!id) throw new AdapterError('internal', `the job queue refused the run job of source ${source.id}`);
      return created;
    });
    return { started: true, run };
  } catch (err) {
    if ((err as { code?: string }).code !== '23505') throw err;
    const active = await runs.activeRun(source.id);
    return { started: false, activeRunId: active?.id ?? 'unknown' };
  }
}
