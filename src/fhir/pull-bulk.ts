import { systemClock, type Clock } from '../core/clock.js';
import { AdapterError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { addDuration, parseDuration } from '../core/time.js';
import { BulkDataClient, runBulkExport, type BulkExportReport, type BulkExportRequest, type BulkExportStore, type BulkSink } from './bulk/index.js';
import type { FhirClient } from './client.js';
import type { BulkPullOptions } from './pull-options.js';
import { assembleBatch, keepFirst, newFetched, plannedSearches, PULLED_TYPES, type PullResult, type PullSpec, type PulledType, type UnattributedResource } from './pull.js';

/**
 * The bulk pull: one Bulk Data export of the population (Patient or Group level, the types the models
 * read, `_typeFilter` with the very parameters the searches would send), staged in the database, then
 * read back one batch of patients at a time, so memory holds one batch whatever the population. Batches
 * are assembled exactly as the search pull assembles them (same record, same exclusions, same
 * unattributed accounting), so the same data gives the same RiskAssessments.
 *
 * Staged data is patient data: it is purged when the run is over, unless the source keeps it
 * (`retention`), in which case the next run exports only what changed since (`_since` = the last
 * export's transactionTime), applies it, deletions included, and can score just the patients it touched.
 * An export that did not complete keeps its staged files, so the next run resumes it.
 */

/** What the bulk pull reads back from staging (src/db/staging.ts: StagingStore). */
export interface StagedReader {
  patientIds(sourceId: string, options: { after?: string; limit: number; changedIn?: string; changedAfter?: string; changedSince?: Date }): Promise<string[]>;
  resourcesOf(sourceId: string, patientIds: string[]): Promise<{ resourceType: string; id: string; body: Record<string, unknown> }[]>;
  unattributed(sourceId: string, limit?: number): Promise<{ total: number; items: { reference: string; detail: 'missing-subject' | 'patient-not-found' }[] }>;
  purge(sourceId: string): Promise<number>;
}

export interface BulkPullDeps {
  client: FhirClient;
  spec: PullSpec;
  asOf: Date;
  sourceId: string;
  population: { kind: 'all' } | { kind: 'group'; groupId: string } | { kind: 'patients'; ids: string[] };
  options: BulkPullOptions;
  staging: BulkSink & StagedReader;
  exports: BulkExportStore & { lastComplete(sourceId: string): Promise<{ transactionTime: Date; finishedAt: Date } | undefined> };
  /** Incremental runs: only the patients whose data this export changed (with retained staging). */
  changedOnly?: boolean;
  clock?: Clock;
  logger?: Logger;
  signal?: AbortSignal;
  /** Rows per staging write and writes in flight (see runBulkExport). */
  chunkSize?: number;
  stagingConcurrency?: number;
}

export interface BulkPull {
  /** Runs (or resumes) the export and stages it; once, however often called. */
  prepare(): Promise<BulkExportReport>;
  /** The population: staged Patients in id order (changed ones only with `changedOnly`), a page at a time. */
  patients(batchSize: number): AsyncGenerator<string[]>;
  pull(patientIds: string[]): Promise<PullResult>;
  /** Purges staging when the export completed and the source keeps nothing. */
  close(): Promise<void>;
}

export function createBulkPull(deps: BulkPullDeps): BulkPull {
  const logger = (deps.logger ?? silentLogger).child({ component: 'fhir-bulk' });
  const clock = deps.clock ?? systemClock;
  const keepsStaging = keepsStagedData(deps.options);
  let prepared: Promise<BulkExportReport> | undefined;
  let report: BulkExportReport | undefined;
  let incremental = false;
  /** Listed once, by the first batch pulled (a service run's batches read staging elsewhere and never ask). */
  let orphansReported = false;

  const prepare = () =>
    (prepared ??= (async () => {
      const request = await exportRequest();
      report = await runBulkExport(
        new BulkDataClient(deps.client, {
          trustedOrigins: deps.options.trustedOrigins,
          pollIntervalMs: deps.options.pollIntervalMs,
          maxPollWaitMs: deps.options.maxPollWaitMs,
          maxExportWaitMs: deps.options.maxExportWaitMs,
          downloadTimeoutMs: deps.options.downloadTimeoutMs,
          clock,
          logger: deps.logger,
        }),
        deps.exports,
        deps.staging,
        { sourceId: deps.sourceId, request, logger: deps.logger, signal: deps.signal, chunkSize: deps.chunkSize, stagingConcurrency: deps.stagingConcurrency },
      );
      return report;
    })());

  /** The export this run needs: the population's level, the models' types and filters, `_since` when staging is kept. */
  const exportRequest = async (): Promise<BulkExportRequest> => {
    const { population, options } = deps;
    const levelName = options.level ?? (population.kind === 'group' ? 'group' : 'patient');
    if (levelName === 'group' && population.kind !== 'group') {
      throw new AdapterError('config-invalid', `source ${deps.sourceId}: a group-level bulk export needs a Group population (population: { type: group, id: ... })`);
    }
    const level: BulkExportRequest['level'] =
      levelName === 'group' ? { kind: 'group', groupId: (population as { groupId: string }).groupId } : levelName === 'system' ? { kind: 'system' } : { kind: 'patient' };
    const searches = plannedSearches(deps.spec, deps.asOf, 1000);
    const types = ['Patient', ...new Set(searches.map((s) => s.resourceType))];
    // A search with nothing but `_count` (every Condition of the patients) needs no filter: the type is exported whole.
    const typeFilters = options.typeFilter
      ? searches.flatMap((s) => {
          const q = new URLSearchParams();
          for (const [name, value] of Object.entries(s.fixed)) if (name !== '_count') for (const v of Array.isArray(value) ? value : [value]) q.append(name, v);
          return q.size ? [`${s.resourceType}?${q}`] : [];
        })
      : undefined;
    let since: Date | undefined;
    if (keepsStaging) {
      const last = await deps.exports.lastComplete(deps.sourceId);
      const expires = last && addDuration(last.finishedAt, parseDuration(options.retention));
      // Kept longer than the source allows: this export is a full one, and its kick-off replaces what is
      // staged (StagingStore.begin). Not purged here: a retried run resuming that full export must keep
      // the files it has already staged.
      if (last && expires && expires > clock.now()) {
        since = last.transactionTime;
        incremental = true;
      }
    }
    return {
      level,
      types,
      ...(since ? { since } : {}),
      ...(typeFilters?.length ? { typeFilters } : {}),
      ...(population.kind === 'patients' && level.kind !== 'system' ? { patients: population.ids } : {}),
    };
  };

  return {
    prepare,
    async *patients(batchSize) {
      const r = await prepare();
      const changedIn = deps.changedOnly && incremental ? r.exportId : undefined;
      let after: string | undefined;
      for (;;) {
        const page = await deps.staging.patientIds(deps.sourceId, { after, limit: batchSize, ...(changedIn ? { changedIn } : {}) });
        if (!page.length) return;
        yield page;
        after = page.at(-1);
      }
    },
    async pull(patientIds) {
      await prepare();
      // Resources no patient of the population owns are reported once per run, with its first batch.
      let unattributed: UnattributedResource[] = [];
      if (!orphansReported) {
        orphansReported = true;
        const u = await deps.staging.unattributed(deps.sourceId, 100_000);
        unattributed = u.items.map((i) => ({ reference: i.reference, reason: 'no-subject', detail: i.detail }));
        if (u.total > u.items.length) logger.warn({ total: u.total, listed: u.items.length }, 'more staged resources without a patient than listed');
      }
      return pullStaged(deps, patientIds, { unattributed, logger: deps.logger });
    },
    async close() {
      if (!report || keepsStaging) return;
      const purged = await deps.staging.purge(deps.sourceId);
      logger.info({ purged }, 'staged bulk data purged');
    },
  };
}

/** Whether a source keeps its staged data after a run (`retention` longer than zero) for `_since` exports. */
export function keepsStagedData(options: Pick<BulkPullOptions, 'retention'>): boolean {
  return addDuration(new Date(0), parseDuration(options.retention)).getTime() > 0;
}

/**
 * One batch of patients read back from staging and assembled as the search pull assembles it. Staging
 * must hold a completed export (`BulkPull.prepare`, or a service run's selection step, which exports once
 * for all of its batches).
 */
export async function pullStaged(
  deps: Pick<BulkPullDeps, 'client' | 'spec' | 'sourceId'> & { staging: Pick<StagedReader, 'resourcesOf'> },
  patientIds: string[],
  options: { unattributed?: UnattributedResource[]; logger?: Logger } = {},
): Promise<PullResult> {
  const wantedCodes = new Set(deps.spec.observationCodes.map((c) => `${c.system}|${c.code}`));
  const fetched = newFetched();
  for (const row of await deps.staging.resourcesOf(deps.sourceId, patientIds)) {
    const type = row.resourceType as PulledType;
    if (!PULLED_TYPES.includes(type)) continue;
    // A server that ignored _typeFilter sends every Observation: only the codes asked for are kept.
    if (type === 'Observation' && !hasWantedCode(row.body, wantedCodes)) continue;
    keepFirst(fetched, type, [row.body as never]);
  }
  const logger = (options.logger ?? silentLogger).child({ component: 'fhir-bulk' });
  return assembleBatch(deps.client, patientIds, fetched, 0, { logger, strategy: 'bulk', unattributed: options.unattributed ?? [] });
}

function hasWantedCode(body: Record<string, unknown>, wanted: ReadonlySet<string>): boolean {
  const codings = (body.code as { coding?: { system?: string; code?: string }[] } | undefined)?.coding ?? [];
  return codings.some((c) => wanted.has(`${c.system}|${c.code}`));
}
