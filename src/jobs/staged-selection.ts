import { silentLogger } from '../core/log.js';
import { lookbackStart } from '../core/time.js';
import type { SourceConfig } from '../config/sources.js';
import type { RunSelection } from '../db/runs.js';
import type { BulkPull, StagedReader } from '../fhir/pull-bulk.js';
import { addNeverEvaluated, populationOf, type Selection, type SelectionDeps } from './selection.js';

/**
 * Which patients a run scores when its selection step pulled the population with Bulk Data: the export
 * (kicked off, or resumed after a worker died) is staged first, then the patients are read from staging
 * rather than searched on the server.
 *
 * - Full run: the staged Patients (a Group or list population: its members, staged or not; a member the
 *   export did not contain is reported not found by its batch).
 * - Incremental run: patients with anything staged or deleted by an export started since the oldest
 *   watermark of the run's models minus the overlap window (a source that keeps its staging exports
 *   `_since` the last export, so these are the patients whose data changed; one that purges staging
 *   exports everything each run, so every patient is selected and the input hash keeps unchanged ones
 *   from a new RiskAssessment), plus patients whose last evaluation is older than the re-score interval,
 *   plus members of a Group or list never evaluated.
 *
 * The export's report (files, resources staged by type, malformed lines, error-file outcomes) and the
 * staged resources no patient owns are recorded with the selection. The run's `changesUntil` (its
 * watermark when it succeeds) is taken after the export is staged, so the next run does not select this
 * export's patients again.
 */
export async function selectStagedPatients(
  deps: SelectionDeps & { staging: Pick<StagedReader, 'patientIds' | 'unattributed'> },
  source: SourceConfig,
  modelIds: string[],
  bulk: BulkPull,
  options: { full?: boolean; reason?: string } = {},
): Promise<Selection> {
  const logger = (deps.logger ?? silentLogger).child({ component: 'selection', source: source.id });
  const marks = await deps.watermarks.get(source.id, modelIds);
  const incremental = !options.full && modelIds.every((m) => marks.has(m));

  const report = await bulk.prepare();
  // Taken once the export is staged: the next run selects what exports started after it staged (this
  // one's changes are this run's to score, and a failed run leaves the watermark where it was).
  const changesUntil = deps.clock.now();
  const staged = await stagedPatients(deps.staging, source.id);
  const members = source.population.type === 'all' ? undefined : await populationOf(deps.client, source);
  const unattributed = await deps.staging.unattributed(source.id, 0);
  const exported: RunSelection['bulk'] = {
    exportId: report.exportId,
    resumed: report.resumed,
    reason: options.reason ?? 'configured',
    files: report.files,
    staged: report.staged,
    deleted: report.deleted,
    errors: report.errors.outcomes,
    malformed: report.malformed.count,
    unattributed: unattributed.total,
  };

  if (!incremental) {
    const ids = members ?? staged;
    logger.info({ patients: ids.length, exportId: report.exportId }, 'full run selected the staged population');
    return { mode: 'full', patientIds: ids, changesUntil, selection: { population: ids.length, total: ids.length, bulk: exported } };
  }

  const oldest = new Date(Math.min(...modelIds.map((m) => marks.get(m)!.getTime())));
  const changesSince = lookbackStart(source.options.overlap, oldest);
  const changed = await stagedPatients(deps.staging, source.id, changesSince);
  const inPopulation = new Set(members ?? staged);
  const stale = (await deps.scores.staleBefore(source.id, modelIds, lookbackStart(source.options.rescoreInterval, changesUntil))).filter((id) => inPopulation.has(id));
  const selected = new Set<string>([...changed.filter((id) => inPopulation.has(id)), ...stale]);
  const neverEvaluated = members ? await addNeverEvaluated(deps.scores, source.id, modelIds, members, selected) : 0;
  const patientIds = [...selected].sort();
  const selection: RunSelection = {
    changed: changed.length,
    stale: stale.length,
    deletions: 'bulk export deleted files',
    ...(neverEvaluated ? { newMembers: neverEvaluated } : {}),
    total: patientIds.length,
    bulk: exported,
  };
  logger.info({ changed: changed.length, stale: stale.length, newMembers: neverEvaluated, total: patientIds.length, exportId: report.exportId }, 'incremental run selected staged patients');
  return { mode: 'incremental', patientIds, changesSince, changesUntil, selection };
}

/** Staged Patient ids in order (ids only: tens of bytes each), optionally those changed since a time. */
async function stagedPatients(staging: Pick<StagedReader, 'patientIds'>, sourceId: string, changedSince?: Date): Promise<string[]> {
  const ids: string[] = [];
  for (;;) {
    const page = await staging.patientIds(sourceId, { after: ids.at(-1), limit: 5000, ...(changedSince ? { changedSince } : {}) });
    if (!page.length) return ids;
    ids.push(...page);
  }
}
