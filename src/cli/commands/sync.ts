import { Command, Option } from 'commander';
import type { App } from '../../app.js';
import { describeError, EXIT_OK, EXIT_PARTIAL, exitCodeFor } from '../../core/error-mapping.js';
import { AdapterError, type ErrorCode } from '../../core/errors.js';
import { parseAsOf } from '../../core/time.js';
import { countPatients } from '../../fhir/pull.js';
import { runSync, type SyncResult } from '../../sync/index.js';
import { commandContext } from '../context.js';
import { progressReporter } from '../progress.js';
import { formatSyncSummary } from '../summary.js';

export function registerSyncCommand(program: Command): void {
  program
    .command('sync')
    .description('Score patients from a FHIR server with one or more models and write RiskAssessments back')
    .option('--fhir-url <url>', 'FHIR R4 base URL (or FHIR_ML_FHIR_URL); auth from FHIR_ML_TOKEN / FHIR_ML_USERNAME+FHIR_ML_PASSWORD')
    .requiredOption('--model <id...>', 'model id(s) to run (see `fhir-ml models list`)')
    .option('--as-of <date>', 'score as of this date/dateTime; nothing after it is used (default: now)')
    .option('--patient <id...>', 'patient id(s) to score')
    .option('--all', 'score every Patient on the server (streamed in batches)')
    .option('--dry-run', 'score and report, but write nothing')
    .option('--batch-size <n>', 'patients per batch (default 100 or FHIR_ML_BATCH_SIZE)')
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
  batchSize?: string;
  json?: boolean;
  explain?: boolean;
}

export async function syncCommand(opts: SyncCommandOptions): Promise<number> {
  // Every problem with the invocation at once: selection, as-of, configuration.
  const problems: string[] = [];
  if (!opts.all && !opts.patient?.length) problems.push('say which patients: --patient ID ... or --all');
  if (opts.all && opts.patient?.length) problems.push('--patient and --all exclude each other');
  let asOf: Date | undefined;
  try {
    asOf = parseAsOf(opts.asOf);
  } catch (err) {
    problems.push((err as Error).message);
  }
  let app: App | undefined;
  try {
    app = commandContext({ fhirUrl: opts.fhirUrl, batchSize: opts.batchSize });
    if (!app.config.fhir.url) problems.push('no FHIR server given: use --fhir-url URL or FHIR_ML_FHIR_URL');
  } catch (err) {
    if (!AdapterError.is(err, 'config-invalid')) throw err;
    problems.push(...((err.details?.problems as string[] | undefined) ?? [err.message]));
  }
  if (problems.length || !app || !asOf) {
    throw new AdapterError('input-invalid', problems.length === 1 ? problems[0] : `${problems.length} problems:\n  - ${problems.join('\n  - ')}`);
  }
  let result: SyncResult;
  try {
    const client = app.fhirClient();
    const models = await app.models(opts.model);
    // No bar with --json: a terminal would interleave it with the JSON Lines.
    const showProgress = process.stderr.isTTY && !opts.json;
    const total = opts.patient ? new Set(opts.patient).size : showProgress ? await countPatients(client) : undefined;
    const progress = showProgress ? progressReporter(total) : { update: () => undefined, stop: () => undefined };
    try {
      result = await runSync(client, models, {
        asOf,
        patientIds: opts.patient,
        dryRun: opts.dryRun,
        batchSize: app.config.sync.batchSize,
        identifierSystem: app.config.sync.identifierSystem,
        explain: opts.explain,
        mapContext: app.mapContext,
        logger: app.logger,
        onProgress: progress.update,
        // Results stream out (JSON Lines) instead of accumulating: an --all sync never holds the population.
        collectPatients: false,
        onPatientResult: opts.json ? (r) => process.stdout.write(JSON.stringify({ type: 'patient', ...r }) + '\n') : undefined,
      });
    } finally {
      progress.stop();
    }
  } finally {
    await app.close();
  }
  if (opts.json) {
    const { results: _results, aborted, ...summary } = result;
    process.stdout.write(JSON.stringify({ type: 'summary', ...summary, aborted: aborted && { code: aborted.code, message: aborted.message } }) + '\n');
  } else {
    process.stdout.write(formatSyncSummary(result) + '\n');
  }
  if (result.aborted) {
    // The partial result is printed above; the error decides the exit code.
    process.stderr.write(`fhir-ml: sync stopped after ${result.batches} batches: ${describeError(result.aborted.error)}\n`);
    return exitCodeFor(result.aborted.error);
  }
  if (result.failed > 0 && result.failed === result.patients) {
    // Nothing succeeded: the run failed, with the reason of its failures (e.g. 69, server unavailable).
    process.stderr.write(`fhir-ml: every batch failed: ${result.failures[0].code}: ${result.failures[0].message}\n`);
    return exitCodeFor(new AdapterError(result.failures[0].code as ErrorCode, result.failures[0].message));
  }
  return result.failed > 0 ? EXIT_PARTIAL : EXIT_OK;
}
