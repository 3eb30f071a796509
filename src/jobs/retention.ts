import type { Clock } from '../core/clock.js';
import { addDuration, parseDuration } from '../core/time.js';
import type { ServiceConfig } from '../config/sources.js';
import { CdsHooksStore } from '../db/cds-hooks.js';
import type { Database } from '../db/database.js';
import { RunStore } from '../db/runs.js';
import { SessionStore } from '../db/sessions.js';
import { PgBulkExportStore, StagingStore } from '../db/staging.js';
import { keepsStagedData } from '../fhir/pull-bulk.js';
import { isFhirSourceKey } from '../sync/pull-strategies.js';

/**
 * The daily retention job: what the service keeps is deleted when the site's settings say it has been
 * kept long enough.
 *
 * - Run history (runs, batches, per-patient outcomes) of finished runs older than `retentionDays`.
 * - Console sessions that expired.
 * - CDS Hooks cards handed out and feedback received before `retentionDays`.
 * - Staged Bulk Data (patient data): a source's staging when no run of it is active and no export of it
 *   is still open (an open export's staged files are what the next run resumes from), and the source
 *   keeps nothing (`pull.bulk.retention` PT0S: a run that ended early left it) or its newest complete
 *   export is older than its retention. An open export older than its source's longest selection
 *   (`maxExportWaitMs` and an hour) with no run active was left by a run that never came back: it is
 *   abandoned and its staging purged. Staging of sources no longer in the sources file is purged too;
 *   that of `fhir-ml sync --pull-strategy bulk` (keys `fhir-<hash of the URL>`) is the CLI's to purge.
 * - Records of exports that ended before `retentionDays`, but each source's newest complete one.
 */
export interface RetentionReport {
  runs: number;
  sessions: number;
  cdsRecords: number;
  stagedResources: number;
  exports: number;
}

export async function runRetention(db: Database, config: Pick<ServiceConfig, 'retentionDays' | 'sources'>, clock: Clock): Promise<RetentionReport> {
  const now = clock.now();
  const cutoff = new Date(now.getTime() - config.retentionDays * 86_400_000);
  const runs = new RunStore(db);
  const exports = new PgBulkExportStore(db);
  const staging = new StagingStore(db);
  let stagedResources = 0;
  for (const source of config.sources) {
    if (await runs.activeRun(source.id)) continue;
    const longestSelection = source.pull.bulk.maxExportWaitMs + 3_600_000;
    if ((await exports.open(source.id)) && !(await exports.abandonOpenBefore(source.id, new Date(now.getTime() - longestSelection)))) continue;
    const last = await exports.lastComplete(source.id);
    const keptUntil = last && keepsStagedData(source.pull.bulk) ? addDuration(last.finishedAt, parseDuration(source.pull.bulk.retention)) : undefined;
    if (!keptUntil || keptUntil <= now) stagedResources += await staging.purge(source.id);
  }
  const configured = new Set(config.sources.map((s) => s.id));
  for (const sourceId of await staging.sourceIds()) {
    if (!configured.has(sourceId) && !isFhirSourceKey(sourceId)) stagedResources += await staging.purge(sourceId);
  }
  return {
    runs: await runs.deleteOlderThan(config.retentionDays),
    sessions: await new SessionStore(db).deleteExpired(),
    cdsRecords: await new CdsHooksStore(db).purgeOlderThan(cutoff),
    stagedResources,
    exports: await exports.deleteEndedBefore(cutoff),
  };
}
