import { silentLogger } from '../core/log.js';
import { lookbackStart } from '../core/time.js';
import type { SourceConfig } from '../config/sources.js';
import type { RunSelection, RunStore } from '../db/runs.js';
import type { BulkPull, StagedReader } from '../fhir/pull-bulk.js';
import { addNeverEvaluated, populationOf, type Selection, type SelectionDeps } from './selection.js';

/**
 * Which patients a run scores when its selection step pulled the population with Bulk Data: the export
 * (kicked off, or resumed after a worker died) is staged first, then the patients are read from staging
 * rather than searched on the server.
 *
 * - Full run: the staged Patients (a Group or list population: its members, staged or not; a member the
 *   export did not contain is reported not found by its batch).
 * - Incremental run: patients with anything staged or deleted by an export after the one the run that
 *   set the models' watermarks read (so an earlier run whose batches failed leaves its changes to be
 *   selected again; when that run is unknown, e.g. it searched or retention deleted it, by the exports
 *   started since the oldest watermark minus the overlap window). A source that keeps its staging exports
 *   `_since` the last export, so these are the patients whose data changed; one that purges staging
 *   exports everything each run, so every patient is selected and the input hash keeps unchanged ones
 *   from a new RiskAssessment. Plus patients whose last evaluation is older than the re-score interval,
 *   plus members of a Group or list never evaluated.
 *
 * The export's report (files, resources staged by type, malformed lines, error-file outcomes) and the
 * staged resources no patient owns are recorded with the selection. The run's `changesUntil` (its
 * watermark when it succeeds) is the export's `transactionTime`: what the export holds is the server's
 * data up to then, so a later run that searches instead (`_lastUpdated`) misses nothing.
 */
export async function selectStagedPatients(
  deps: SelectionDeps & { staging: Pick<StagedReader, 'patientIds' | 'unattributed'>; runs: Pick<RunStore, 'get'> },
  source: SourceConfig,
  modelIds: string[],
  bulk: BulkPull,
  options: { full?: boolean; reason?: string } = {},
): Promise<Selection> {
  const logger = (deps.logger ?? silentLogger).child({ component: 'selection', source: source.id });
  const marks = await deps.watermarks.get(source.id, modelIds);
  const incremental = !options.full && modelIds.every((m) => marks.has(m));

  const report = await bulk.prepare();
  const changesUntil = new Date(report.transactionTime);
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
  const changed = await stagedPatients(deps.staging, source.id, { changedAfter: await lastExportRead(deps, source.id, modelIds), changedSince: changesSince });
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

/**
 * The export the runs that set the models' watermarks read (the earliest, when they differ); undefined
 * when one of them did not export or is gone.
 */
async function lastExportRead(deps: { watermarks: SelectionDeps['watermarks']; runs: Pick<RunStore, 'get'> }, sourceId: string, modelIds: string[]): Promise<string | undefined> {
  const runIds = await deps.watermarks.runIds(sourceId, modelIds);
  const exportIds: bigint[] = [];
  for (const modelId of modelIds) {
    const runId = runIds.get(modelId);
    const exportId = runId ? (await deps.runs.get(runId))?.selection?.bulk?.exportId : undefined;
    if (!exportId) return undefined;
    exportIds.push(BigInt(exportId));
  }
  return exportIds.reduce((a, b) => (b < a ? b : a)).toString();
}

/**
 * Staged Patient ids in order (ids only: tens of bytes each); with a change filter, those changed in the
 * exports after `changedAfter`, else in those started since `changedSince`.
 */
async function stagedPatients(staging: Pick<StagedReader, 'patientIds'>, sourceId: string, changes?: { changedAfter?: string; changedSince: Date }): Promise<string[]> {
  const filter = changes ? (changes.changedAfter ? { changedAfter: changes.changedAfter } : { changedSince: changes.changedSince }) : {};
  const ids: string[] = [];
  for (;;) {
    const page = await staging.patientIds(sourceId, { after: ids.at(-1), limit: 5000, ...filter });
    if (!page.length) return ids;
    ids.push(...page);
  }
}
