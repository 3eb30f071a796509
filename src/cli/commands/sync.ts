import { Command, Option } from 'commander';
import type { App } from '../../app.js';
import { describeError, EXIT_INTERRUPTED, EXIT_OK, EXIT_OUTPUT_CLOSED, EXIT_PARTIAL, exitCodeFor } from '../../core/error-mapping.js';
import { boundHeapGrowth } from '../../core/heap.js';
import { AdapterError, toAdapterError, type ErrorCode } from '../../core/errors.js';
import { parseAsOf } from '../../core/time.js';
import { countPatients } from '../../fhir/pull.js';
import { runSync, type SyncResult } from '../../sync/index.js';
import { emptyResult } from '../../sync/totals.js';
import type { Database } from '../../db/database.js';
import { fhirSourceKey, openStagingDatabase, pullStrategyFactory } from '../../sync/pull-strategies.js';
import { commandContext, invocationError, parsePatientIds } from '../context.js';
import { interruptions, type InterruptCause } from '../interrupt.js';
import { stdout } from '../output.js';
import { progressReporter } from '../progress.js';
import { formatSyncSummary, summaryLine } from '../summary.js';

export function registerSyncCommand(program: Command): void {
  program
    .command('sync')
    .description('Score patients from a FHIR server with one or more models and write RiskAssessments back')
    .option('--fhir-url <url>', 'FHIR R4 base URL (or FHIR_ML_FHIR_URL); auth from FHIR_ML_TOKEN / FHIR_ML_USERNAME+FHIR_ML_PASSWORD')
    .requiredOption('--model <id...>', 'model id(s) to run (see `fhir-ml models list`)')
    .option('--as-of <date>', 'score as of this dateTime, or date (its end, UTC; today: now); nothing after it is used (default: now)')
    .option('--patient <id...>', 'patient id(s) to score (123 or Patient/123)')
    .option('--all', 'score every Patient on the server (streamed in batches)')
    .option('--dry-run', 'score and report, but write nothing')
    .option('--shadow', 'shadow mode: write RiskAssessments as preliminary and no CarePlans (silent validation before go-live)')
    .addOption(new Option('--no-care-plans', 'write no CarePlan proposals with the RiskAssessments'))
    .option('--batch-size <n>', 'patients per batch (default 100 or FHIR_ML_BATCH_SIZE)')
    .option(
      '--pull-strategy <name>',
      'how batches are pulled: search (default), per-patient (one patient per request), bulk ($export staged in DATABASE_URL or the embedded database) or auto (or FHIR_ML_PULL_STRATEGY)',
    )
    .option('--json', 'print JSON Lines instead of the table: one {"type":"patient",...} line per patient and model as they are scored, then one {"type":"summary",...} line')
    .addOption(new Option('--no-explain', 'skip per-patient explanations'))
    .action(async (opts) => {
      process.exitCode = await syncCommand(opts);
    });
}

interface SyncCommandOptions {
  fhirUrl?: string;
  model: string[];
  asOf?: string;
  patient?: string[];
  all?: boolean;
  dryRun?: boolean;
  shadow?: boolean;
  carePlans?: boolean;
  batchSize?: string;
  pullStrategy?: string;
  json?: boolean;
  explain?: boolean;
}

export async function syncCommand(opts: SyncCommandOptions): Promise<number> {
  // Every problem with the invocation at once, before any request: selection, ids, as-of, configuration.
  const usage: string[] = [];
  const configProblems: string[] = [];
  if (!opts.all && !opts.patient?.length) usage.push('say which patients: --patient ID ... or --all');
  if (opts.all && opts.patient?.length) usage.push('--patient and --all exclude each other');
  const patients = parsePatientIds(opts.patient ?? []);
  usage.push(...patients.problems);
  let asOf: Date | undefined;
  try {
    asOf = parseAsOf(opts.asOf);
  } catch (err) {
    usage.push((err as Error).message);
  }
  let app: App | undefined;
  try {
    // --no-care-plans defaults to true in commander: only an explicit `false` overrides the configuration.
    app = commandContext({ fhirUrl: opts.fhirUrl, batchSize: opts.batchSize, shadow: opts.shadow || undefined, carePlans: opts.carePlans === false ? false : undefined, pullStrategy: opts.pullStrategy });
    if (!app.config.fhir.url) usage.push('no FHIR server given: use --fhir-url URL or FHIR_ML_FHIR_URL');
  } catch (err) {
    if (!AdapterError.is(err, 'config-invalid')) throw err;
    configProblems.push(...((err.details?.problems as string[] | undefined) ?? [err.message]));
  }
  if (usage.length || configProblems.length || !app || !asOf) throw invocationError(usage, configProblems);

  // Memory of a long sync stays that of a batch, not of the run (see core/heap.ts).
  boundHeapGrowth();
  // From here on the run always reports: a summary on stdout, whatever happens.
  const interrupt = interruptions();
  // No bar with --json: a terminal would interleave it with the JSON Lines.
  const showProgress = process.stderr.isTTY && !opts.json;
  let progress = { update: (_p: { patientsDone: number }) => undefined as void, stop: () => undefined as void };
  let result: SyncResult;
  let staging: Database | undefined;
  try {
    const models = await app.models(opts.model);
    const client = app.fhirClient();
    const strategy = app.config.sync.pullStrategy;
    // Bulk stages in a database; auto may choose bulk only for a population, not for listed patients.
    if (strategy === 'bulk' || (strategy === 'auto' && !opts.patient)) staging = await openStagingDatabase(app.logger);
    const pullStrategy = pullStrategyFactory({
      strategy,
      db: staging,
      sourceId: fhirSourceKey(client.baseUrl),
      population: opts.patient ? { kind: 'patients', ids: patients.ids } : { kind: 'all' },
      logger: app.logger,
      signal: interrupt.abandon,
    });
    const total = opts.patient ? new Set(patients.ids).size : showProgress ? await countPatients(client) : undefined;
    if (showProgress) progress = progressReporter(total);
    result = await runSync(client, models, {
      asOf,
      patientIds: opts.patient ? patients.ids : undefined,
      dryRun: opts.dryRun,
      shadow: app.config.sync.shadow,
      carePlans: app.config.sync.carePlans,
      batchSize: app.config.sync.batchSize,
      identifierSystem: app.config.sync.identifierSystem,
      explain: opts.explain,
      mapContext: app.mapContext,
      logger: app.logger,
      stop: interrupt.stop,
      abandon: interrupt.abandon,
      onProgress: progress.update,
      // Results stream out (JSON Lines) instead of accumulating: an --all sync never holds the population.
      collectPatients: false,
      onPatientResult: opts.json ? (r) => stdout.write(JSON.stringify({ type: 'patient', ...r }) + '\n') : undefined,
      pullStrategy,
    });
  } catch (err) {
    // Before the run loop (models, client): still a summary, with the failure in it.
    const error = toAdapterError(err);
    result = emptyResult(asOf, !!opts.dryRun, [], { shadow: app.config.sync.shadow });
    result.aborted = { code: error.code, message: error.message, stage: 'models', error };
  } finally {
    progress.stop();
    interrupt.dispose();
    await staging?.close();
    await app.close();
  }
  const cause = result.interrupted ? (interrupt.cause ?? 'SIGTERM') : undefined;
  stdout.write((opts.json ? summaryLine(result, cause) : formatSyncSummary(result, cause)) + '\n');
  return exitCode(result, cause);
}

function exitCode(result: SyncResult, cause: InterruptCause | undefined): number {
  if (result.aborted) {
    // The partial result is printed above; the error decides the exit code.
    const where = result.aborted.stage === 'batch' ? `sync stopped after ${result.batches} batches: ` : '';
    process.stderr.write(`fhir-ml: ${where}${describeError(result.aborted.error)}\n`);
    if (result.aborted.error.transient) process.stderr.write('fhir-ml: this error is transient; retrying later may succeed\n');
    return exitCodeFor(result.aborted.error);
  }
  if (cause) {
    if (cause === 'EPIPE') return EXIT_OUTPUT_CLOSED;
    process.stderr.write(`fhir-ml: interrupted (${cause}) after ${result.batches} batches; ${rerunHint(result)}\n`);
    return EXIT_INTERRUPTED[cause];
  }
  if (result.failed > 0 && result.failed === result.patients) {
    // Nothing succeeded: the run failed, with the reason of its failures (e.g. 69, server unavailable).
    process.stderr.write(`fhir-ml: every batch failed: ${result.failures[0].code}: ${result.failures[0].message}\n`);
    process.stderr.write(`fhir-ml: ${rerunHint(result)}\n`);
    return exitCodeFor(new AdapterError(result.failures[0].code as ErrorCode, result.failures[0].message));
  }
  if (result.failed > 0) {
    process.stderr.write(`fhir-ml: ${result.failed} of ${result.patients} patients failed; ${rerunHint(result)}\n`);
    return EXIT_PARTIAL;
  }
  return EXIT_OK;
}

/** How to complete a run: the same as-of gives the same identifiers, so nothing already written is written again. */
function rerunHint(result: SyncResult): string {
  return `re-run with --as-of ${result.asOf} to complete it without new RiskAssessments for the patients already done`;
}
