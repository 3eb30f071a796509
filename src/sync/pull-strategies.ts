import { createHash } from 'node:crypto';
import { AdapterError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { defaultServiceConfig } from '../config/sources.js';
import { openDatabase, type Database } from '../db/database.js';
import { migrate } from '../db/migrate.js';
import { PgBulkExportStore, StagingStore } from '../db/staging.js';
import { DEFAULT_PULL_OPTIONS, type PullOptionsConfig, type PullStrategyName } from '../fhir/pull-options.js';
import { autoStrategy, bulkStrategy, chooseStrategy, perPatientStrategy, searchStrategy, type PullStrategyFactory } from '../fhir/strategy.js';

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
 * The per-batch pull strategy of a service source (`pull:` in the sources file): search, per-patient, or
 * auto (decided per batch from the CapabilityStatement and the probe, never bulk). Bulk is refused: the
 * service's runs would have to export once in their selection and read staging in their batches, which
 * they do not do yet; the CLI runs bulk (`fhir-ml sync --pull-strategy bulk`).
 */
export function servicePullStrategy(source: { id: string; pull: PullOptionsConfig }): PullStrategyFactory {
  if (source.pull.strategy === 'bulk') {
    throw new AdapterError(
      'config-invalid',
      `source ${source.id}: pull.strategy bulk is not run by the service yet (use search, per-patient or auto; bulk runs from the CLI: fhir-ml sync --pull-strategy bulk)`,
    );
  }
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
