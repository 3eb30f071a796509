import { createHash } from 'node:crypto';
import { AdapterError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { defaultServiceConfig, type SourceConfig } from '../config/sources.js';
import { openDatabase, type Database } from '../db/database.js';
import { migrate } from '../db/migrate.js';
import { PgBulkExportStore, StagingStore } from '../db/staging.js';
import { DEFAULT_PULL_OPTIONS, type PullOptionsConfig, type PullStrategyName } from '../fhir/pull-options.js';
import type { FhirClient } from '../fhir/client.js';
import { createBulkPull, keepsStagedData, type BulkPull } from '../fhir/pull-bulk.js';
import { autoStrategy, bulkStrategy, chooseStrategy, perPatientStrategy, searchStrategy, stagedStrategy, type PullStrategyFactory } from '../fhir/strategy.js';
import type { SyncModel } from './models.js';
import { pullSpecFor } from './pull-step.js';

/**
 * A configured pull strategy as the run loop takes it (`SyncOptions.pullStrategy`): from the sources
 * file's `pull:` of a source, or the CLI's `--pull-strategy` / FHIR_ML_PULL_STRATEGY. Bulk (and auto,
 * when it may choose bulk) stages in the given database; without one, auto never chooses bulk and bulk
 * is refused by the caller.
 */
export interface StrategySetup {
  strategy: PullStrategyName;
  options?: PullOptionsConfig;
  /** Staging for bulk: the service's database, or the CLI's (DATABASE_URL, else the embedded one). */
  db?: Database;
  /** Whose staged data it is: a source id (the CLI uses `fhirSourceKey(baseUrl)`). */
  sourceId: string;
  /** The run's population: listed patients, a Group, or everyone. */
  population: { kind: 'all' } | { kind: 'group'; groupId: string } | { kind: 'patients'; ids: string[] };
  /** Incremental runs with kept staging: only the patients whose data changed. */
  changedOnly?: boolean;
  logger?: Logger;
  signal?: AbortSignal;
}

export function pullStrategyFactory(setup: StrategySetup): PullStrategyFactory {
  const options = setup.options ?? DEFAULT_PULL_OPTIONS;
  const bulk = setup.db
    ? bulkStrategy({
        sourceId: setup.sourceId,
        population: setup.population,
        options: options.bulk,
        staging: new StagingStore(setup.db),
        exports: new PgBulkExportStore(setup.db),
        changedOnly: setup.changedOnly,
        patientConcurrency: options.patientConcurrency,
        logger: setup.logger,
        signal: setup.signal,
      })
    : undefined;
  switch (setup.strategy) {
    case 'search':
      return searchStrategy();
    case 'per-patient':
      return perPatientStrategy({ patientConcurrency: options.patientConcurrency });
    case 'bulk':
      if (!bulk) throw new AdapterError('config-invalid', 'the bulk pull strategy needs a database to stage in');
      return bulk;
    case 'auto':
      // Bulk pays off for populations; a short list of patients is searched.
      return autoStrategy({ bulk: setup.population.kind === 'patients' ? undefined : bulk, perPatient: { patientConcurrency: options.patientConcurrency } });
  }
}

/** A stable staging key for a FHIR server without a source id (the CLI): its base URL, hashed. */
export function fhirSourceKey(baseUrl: string): string {
  return `fhir-${createHash('sha256').update(baseUrl.replace(/\/+$/, '')).digest('hex').slice(0, 12)}`;
}

/** Whether a staging key is one `fhirSourceKey` makes (the CLI's, not a service source's). */
export function isFhirSourceKey(key: string): boolean {
  return /^fhir-[0-9a-f]{12}$/.test(key);
}

/**
 * The database a CLI run stages bulk data in: PostgreSQL at DATABASE_URL, else the embedded one in
 * FHIR_ML_DATA_DIR (default .fhir-ml/pgdata), as the service uses them; migrated.
 */
export async function openStagingDatabase(logger?: Logger): Promise<Database> {
  const { database } = defaultServiceConfig();
  const db = await openDatabase({ url: database.url, dataDir: database.dataDir, poolSize: 4, logger });
  try {
    await migrate(db, { logger });
  } catch (err) {
    await db.close();
    throw err;
  }
  return db;
}

/**
 * The per-batch pull strategy of a service source (`pull:` in the sources file) for batches that were not
 * staged by their run: search, per-patient, or auto (decided once per process from the CapabilityStatement
 * and the probe, never bulk: a bulk pull happens once per run, in its selection step; see
 * `serviceBulkPulls`). A bulk source's batches are always staged; should one arrive unstaged it is
 * searched.
 */
export function servicePullStrategy(source: { id: string; pull: PullOptionsConfig }): PullStrategyFactory {
  if (source.pull.strategy === 'bulk') return searchStrategy();
  if (source.pull.strategy !== 'auto') {
    return pullStrategyFactory({ strategy: source.pull.strategy, options: source.pull, sourceId: source.id, population: { kind: 'patients', ids: [] } });
  }
  // Auto decides once per process (the server's answer does not change from batch to batch); a failed
  // decision is tried again by the next batch.
  const perPatient = perPatientStrategy({ patientConcurrency: source.pull.patientConcurrency });
  let decided: Promise<{ factory: PullStrategyFactory; reason: string }> | undefined;
  return async (ctx) => {
    decided ??= chooseStrategy(ctx.client, ctx.spec, { bulkAvailable: false, logger: ctx.logger }).then((c) => ({
      factory: c.name === 'per-patient' ? perPatient : searchStrategy(),
      reason: c.reason,
    }));
    decided.catch(() => (decided = undefined));
    const { factory, reason } = await decided;
    return { ...(await factory(ctx)), reason };
  };
}

/**
 * Bulk Data in the service. A run of a `bulk` source (or of an `auto` source with a Group or whole
 * population that keeps its staging, on a server offering `$export`) exports once, in its selection step: `open` gives the run's
 * BulkPull (the export kicked off or resumed, staged in the service's database); the run's batch jobs
 * are marked staged and read their patients from staging (`staged`) on whichever worker takes them; when
 * the run is over, `finished` purges staging unless the source keeps it for `_since` exports.
 *
 * The export's state (status URL, manifest, files staged) is in the database as it goes, so a selection
 * step that dies with its worker is retried by pg-boss and resumes the export where it stood.
 */
export interface ServiceBulkPulls {
  /** The run's export, or undefined when the run searches (a search or per-patient source; auto choosing those). */
  open(source: SourceConfig, modelIds: string[], asOf: Date, signal?: AbortSignal): Promise<{ bulk: BulkPull; staging: StagingStore; reason: string } | undefined>;
  staged(sourceId: string): PullStrategyFactory;
  /** After a run that read export `exportId`: purges what it and earlier exports staged, unless the source keeps it. */
  finished(source: SourceConfig, exportId: string): Promise<number>;
}

export function serviceBulkPulls(deps: {
  db: Database;
  sources: ReadonlyMap<string, SourceConfig>;
  models(ids: string[]): Promise<SyncModel[]>;
  clientFor(sourceId: string): FhirClient;
  logger?: Logger;
}): ServiceBulkPulls {
  const staging = new StagingStore(deps.db);
  const exports = new PgBulkExportStore(deps.db);
  const logger = (deps.logger ?? silentLogger).child({ component: 'bulk-runs' });
  return {
    async open(source, modelIds, asOf, signal) {
      const strategy = source.pull.strategy;
      if (strategy !== 'bulk' && strategy !== 'auto') return undefined;
      const client = deps.clientFor(source.id);
      const spec = pullSpecFor(await deps.models(modelIds), asOf);
      let reason = 'configured';
      if (strategy === 'auto') {
        // A list of patients is searched; a population is exported when the server offers $export and
        // the source keeps its staging (then the next runs export `_since`). A source that keeps nothing
        // would export its whole population every run, where incremental searches read only what changed.
        if (source.population.type === 'patients' || !keepsStagedData(source.pull.bulk)) return undefined;
        const choice = await chooseStrategy(client, spec, { bulkAvailable: true, logger });
        if (choice.name !== 'bulk') return undefined;
        reason = choice.reason;
      }
      const bulk = createBulkPull({
        client,
        spec,
        asOf,
        sourceId: source.id,
        population: populationOf(source),
        options: source.pull.bulk,
        staging,
        exports,
        logger: deps.logger,
        signal,
      });
      return { bulk, staging, reason };
    },
    staged: (sourceId) => stagedStrategy({ sourceId, staging, patientConcurrency: deps.sources.get(sourceId)?.pull.patientConcurrency }),
    async finished(source, exportId) {
      if (keepsStagedData(source.pull.bulk)) return 0;
      const purged = await staging.purge(source.id, exportId);
      if (purged) logger.info({ source: source.id, purged }, 'staged bulk data purged after the run');
      return purged;
    },
  };
}

function populationOf(source: SourceConfig): StrategySetup['population'] {
  const p = source.population;
  return p.type === 'group' ? { kind: 'group', groupId: p.id } : p.type === 'patients' ? { kind: 'patients', ids: p.ids } : { kind: 'all' };
}
