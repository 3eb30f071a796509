import type { CapabilityStatement } from 'fhir/r4.js';
import { AdapterError, toAdapterError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { pullCareContext, type CareReader } from './care-pull.js';
import { perPatientCareReader } from './care-pull-per-patient.js';
import type { FhirClient, SearchParams } from './client.js';
import { createBulkPull, pullStaged, type BulkPullDeps, type StagedReader } from './pull-bulk.js';
import { pullPerPatient } from './pull-per-patient.js';
import { listPatientIds, pullBatch, tokenList, type PullResult, type PullSpec } from './pull.js';
import { searchRefusal } from './refusal.js';

/**
 * Pull strategies: how one batch of patients gets its data. They share one interface, take the same
 * PullSpec (codes, lookbacks, as-of) and give the same PullResult, so the batch step downstream cannot
 * tell them apart:
 *
 * - `search` (pull.ts): many patients per search request;
 * - `per-patient` (pull-per-patient.ts): one patient per request, Observations by category;
 * - `bulk` (pull-bulk.ts): one Bulk Data export, staged, read back per batch; it also supplies the
 *   population (the staged Patients);
 * - `auto`: chosen per run from the server's CapabilityStatement and a probe (`chooseStrategy`).
 *
 * Each also reads the care of the patients about to get CarePlan proposals (`readCare`, care-pull.ts),
 * giving the same records whichever reads it: `search` many patients per request; `per-patient` one
 * (care-pull-per-patient.ts); `bulk` searches too, since that care is small (only the patients getting
 * proposals) and an export would be the whole population's: many patients per request until the server
 * refuses that, then one patient per request for the rest of the run.
 *
 * A server that refuses what the search strategy sends (a search over several patients, an Observation
 * search without a category) is reported as such, with the strategy to use, instead of a generic failure.
 */

export type StrategyName = 'search' | 'per-patient' | 'bulk';

export interface PullStrategy {
  readonly name: StrategyName;
  /** Why this strategy was used (auto's decision, or "configured"). */
  readonly reason: string;
  pull(patientIds: string[]): Promise<PullResult>;
  /** The care of patients about to get CarePlan proposals, read the way this strategy's server takes it. */
  readCare: CareReader;
  /** The population, when the strategy supplies it (bulk); otherwise the run lists the server's Patients. */
  patients?(batchSize: number): AsyncIterable<string[]>;
  /** When the run is over (bulk: purge staging). */
  close?(): Promise<void>;
}

export interface StrategyContext {
  client: FhirClient;
  spec: PullSpec;
  asOf: Date;
  logger?: Logger;
}

export type PullStrategyFactory = (ctx: StrategyContext) => Promise<PullStrategy>;

/**
 * Turns a server's refusal of the search strategy's requests into a run-stopping configuration error
 * that names the strategy to use: every further batch would be refused the same way.
 */
export function explainRefusal(err: unknown, strategy: StrategyName): unknown {
  const refusal = searchRefusal(err);
  if (!refusal) return err;
  const { status, codes } = refusal;
  const details = (err as AdapterError).details;
  if (strategy === 'search' && refusal.multiPatient) {
    return new AdapterError(
      'config-invalid',
      `the FHIR server refuses searches over several patients (HTTP ${status}${codes.length ? `, ${codes.join(', ')}` : ''}); pull this source with the per-patient strategy (sources file pull.strategy: per-patient, or --pull-strategy per-patient / FHIR_ML_PULL_STRATEGY=per-patient), or auto`,
      { cause: err, status, details: { ...details, refusal: 'multi-patient-search' } },
    );
  }
  if (refusal.categoryRequired) {
    return new AdapterError(
      'config-invalid',
      `the FHIR server requires a category on Observation searches (HTTP ${status}); use the per-patient strategy and state in the mapping the category each Observation code is filed under (codes: [{ system, code, category: { system, code } }])`,
      { cause: err, status, details: { ...details, refusal: 'category-required' } },
    );
  }
  return err;
}

export function searchStrategy(options: { maxIdsPerRequest?: number } = {}): PullStrategyFactory {
  return async (ctx) => ({
    name: 'search',
    reason: 'configured',
    pull: async (ids) => {
      try {
        return await pullBatch(ctx.client, ids, ctx.spec, ctx.asOf, { logger: ctx.logger, maxIdsPerRequest: options.maxIdsPerRequest });
      } catch (err) {
        throw explainRefusal(err, 'search');
      }
    },
    readCare: explained(searchCareReader(ctx), 'search'),
  });
}

export function perPatientStrategy(options: { patientConcurrency?: number } = {}): PullStrategyFactory {
  return async (ctx) => ({
    name: 'per-patient',
    reason: 'configured',
    pull: async (ids) => {
      try {
        return await pullPerPatient(ctx.client, ids, ctx.spec, ctx.asOf, { logger: ctx.logger, patientConcurrency: options.patientConcurrency });
      } catch (err) {
        throw explainRefusal(err, 'per-patient');
      }
    },
    readCare: explained(perPatientCareReaderOf(ctx, options.patientConcurrency), 'per-patient'),
  });
}

/**
 * The bulk strategy; `deps` are everything but what the run gives (client, spec, as-of), and the
 * patients read at a time once its care reads go one patient per request (`patientConcurrency`).
 */
export function bulkStrategy(deps: Omit<BulkPullDeps, 'client' | 'spec' | 'asOf'> & { patientConcurrency?: number }): PullStrategyFactory {
  return async (ctx) => {
    const { patientConcurrency, ...bulkDeps } = deps;
    const logger = deps.logger ?? ctx.logger;
    const bulk = createBulkPull({ ...bulkDeps, client: ctx.client, spec: ctx.spec, asOf: ctx.asOf, logger });
    return { name: 'bulk', reason: 'configured', pull: bulk.pull, patients: bulk.patients, close: bulk.close, readCare: bulkCareReader({ ...ctx, logger }, patientConcurrency) };
  };
}

/** The care reads of a bulk run: many patients per search until the server refuses that, then one per request. */
function bulkCareReader(ctx: StrategyContext, patientConcurrency: number | undefined): CareReader {
  return explained(searchUntilRefused(searchCareReader(ctx), perPatientCareReaderOf(ctx, patientConcurrency), ctx.logger ?? silentLogger), 'per-patient');
}

const searchCareReader = (ctx: StrategyContext): CareReader => (spec) => pullCareContext(ctx.client, spec, ctx.asOf);

/** Per-patient care reads, with the categories the run's mapping files Observation codes under (asked for when the server requires one). */
function perPatientCareReaderOf(ctx: StrategyContext, patientConcurrency: number | undefined): CareReader {
  const categories = ctx.spec.observationCodes.flatMap((c) => (c.category ? [c.category] : []));
  return perPatientCareReader(ctx.client, ctx.asOf, { patientConcurrency, categories, logger: ctx.logger });
}

/** A care reader whose refusals name the cure, as the strategy's pull does. */
function explained(read: CareReader, strategy: StrategyName): CareReader {
  return async (spec) => {
    try {
      return await read(spec);
    } catch (err) {
      throw explainRefusal(err, strategy);
    }
  };
}

/**
 * Care reads by search, many patients per request, until the server refuses such a search (a search over
 * several patients, or an Observation search without a category, which the per-patient reads adapt to):
 * that read and every later one of the run go one patient per request. The refused read is read again
 * whole, so its records are complete.
 */
function searchUntilRefused(search: CareReader, perPatient: CareReader, logger: Logger): CareReader {
  let refused = false;
  return async (spec) => {
    if (!refused) {
      try {
        return await search(spec);
      } catch (err) {
        const refusal = searchRefusal(err);
        if (!refusal) throw err;
        refused = true;
        logger.info({ status: refusal.status, codes: refusal.codes }, 'the FHIR server refused a care search over several patients or without a category: care is read one patient per request for the rest of the run');
      }
    }
    return perPatient(spec);
  };
}

/**
 * The batches of a service run whose selection step exported the population and staged it: each batch
 * reads its patients from staging (no request to the server but the Device and the write), on whichever
 * worker process takes it.
 */
export function stagedStrategy(deps: { sourceId: string; staging: Pick<StagedReader, 'resourcesOf'>; patientConcurrency?: number }): PullStrategyFactory {
  return async (ctx) => ({
    name: 'bulk',
    reason: 'staged by the run',
    pull: (ids) => pullStaged({ client: ctx.client, spec: ctx.spec, sourceId: deps.sourceId, staging: deps.staging }, ids, { logger: ctx.logger }),
    readCare: bulkCareReader(ctx, deps.patientConcurrency),
  });
}

export interface AutoOptions {
  /** The bulk strategy when the run may use it (a database for staging, a population rather than listed patients). */
  bulk?: PullStrategyFactory;
  perPatient?: { patientConcurrency?: number };
}

/** `auto`: decides with `chooseStrategy` when the run starts, then behaves as the strategy chosen. */
export function autoStrategy(options: AutoOptions = {}): PullStrategyFactory {
  return async (ctx) => {
    const choice = await chooseStrategy(ctx.client, ctx.spec, { bulkAvailable: !!options.bulk, logger: ctx.logger });
    const factory = choice.name === 'bulk' ? options.bulk! : choice.name === 'per-patient' ? perPatientStrategy(options.perPatient) : searchStrategy();
    const strategy = await factory(ctx);
    return { ...strategy, reason: choice.reason };
  };
}

/**
 * Chooses a strategy for a server:
 * 1. bulk, when the run can stage and the CapabilityStatement offers `$export` (system, Patient or Group);
 * 2. otherwise a probe: one Observation search over two of the server's patients (`_count=1`). A 4xx
 *    that a one-patient search does not get (SINGLE_PATIENT_REQUIRED or similar) means per-patient;
 *    so does a server whose Observation search lists no `patient`/`subject` parameter but `patient`
 *    only in single use. Anything else: search.
 */
export async function chooseStrategy(
  client: FhirClient,
  spec: PullSpec,
  options: { bulkAvailable: boolean; logger?: Logger },
): Promise<{ name: StrategyName; reason: string }> {
  const logger = options.logger ?? silentLogger;
  let capabilities: CapabilityStatement | undefined;
  try {
    capabilities = await client.capabilities();
  } catch (err) {
    logger.warn({ code: toAdapterError(err).code }, 'no CapabilityStatement; probing');
  }
  const rest = capabilities?.rest?.find((r) => r.mode === 'server') ?? capabilities?.rest?.[0];
  const exportOffered =
    !!rest?.operation?.some((o) => o.name === 'export' || /\/export$/.test(o.definition ?? '')) ||
    !!rest?.resource?.some((r) => (r.type === 'Patient' || r.type === 'Group') && r.operation?.some((o) => o.name === 'export' || /export$/.test(o.definition ?? '')));
  if (options.bulkAvailable && exportOffered) return decided(logger, 'bulk', 'the CapabilityStatement offers $export');

  const observation = rest?.resource?.find((r) => r.type === 'Observation');
  if (capabilities && observation && !observation.searchParam?.some((p) => p.name === 'patient' || p.name === 'subject')) {
    return decided(logger, 'search', 'the CapabilityStatement lists no patient or subject search on Observation; searching by subject as always');
  }
  let two: string[] = [];
  for await (const page of listPatientIds(client, 2)) {
    two = page.slice(0, 2);
    break;
  }
  if (two.length < 2) return decided(logger, 'search', 'fewer than two patients to probe with');
  const code: SearchParams = spec.observationCodes.length ? { code: tokenList(spec.observationCodes.slice(0, 1)) } : {};
  const probe = async (ids: string[]) => {
    for await (const _page of client.search('Observation', { patient: ids.join(','), ...code, _count: '1' })) return;
  };
  try {
    await probe(two);
    return decided(logger, 'search', 'a search over two patients was answered');
  } catch (err) {
    const e = toAdapterError(err);
    if (e.status === undefined || e.status < 400 || e.status >= 500 || e.status === 401 || e.status === 404) throw err;
    const refusal = explainRefusal(e, 'search');
    if (refusal !== e) return decided(logger, 'per-patient', `a search over two patients was refused (${(e.details?.detailCodes as string[] | undefined)?.join(', ') ?? `HTTP ${e.status}`})`);
    try {
      await probe(two.slice(0, 1));
    } catch {
      // One patient is refused too: the search itself is the problem, not the patient count.
      throw err;
    }
    return decided(logger, 'per-patient', `a search over two patients was refused (HTTP ${e.status}) where one patient is answered`);
  }
}

function decided(logger: Logger, name: StrategyName, reason: string): { name: StrategyName; reason: string } {
  logger.info({ strategy: name, reason }, 'pull strategy chosen');
  return { name, reason };
}
