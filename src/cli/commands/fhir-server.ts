import type { Command } from 'commander';
import { AdapterError } from '../../core/errors.js';
import { checkBaseUrl, describeFailure, parseCountFlag, runFhirServer } from '../../server/index.js';
import { commandContext } from '../context.js';

interface FhirServerFlags {
  port: string;
  host: string;
  baseUrl?: string;
  load?: string[];
  validate: boolean;
  keepGoing?: boolean;
  requireSinglePatient?: boolean;
  requireObservationCategory?: boolean;
  exportPolls?: string;
  exportFileSize?: string;
}

export function registerFhirServerCommand(program: Command): void {
  program
    .command('fhir-server')
    .description('Run the embedded FHIR R4 server on its own, optionally loaded with transaction Bundles or NDJSON files')
    .option('--port <n>', 'port to listen on (0 picks a free one)', '8103')
    .option('--host <host>', 'interface to bind (anything but loopback warns: the server has no authentication)', '127.0.0.1')
    .option('--base-url <url>', 'public base URL for the links the server writes (default: where it listens)')
    .option('--load <path...>', 'files or directories to load (transaction/collection Bundles, resources, .ndjson of any size)')
    .option('--no-validate', 'accept resources without R4 validation (for data the validator rejects)')
    .option('--keep-going', 'load every file and report the ones that fail, instead of stopping at the first')
    .option('--require-single-patient', 'refuse clinical searches that do not name exactly one patient, as many EHR APIs do')
    .option('--require-observation-category', 'refuse Observation searches without a category')
    .option('--export-polls <n>', 'Bulk Data $export: status polls answered "in progress" before the manifest (default 1)')
    .option('--export-file-size <n>', 'Bulk Data $export: resources per NDJSON file (default: one file per type)')
    .action(async (opts: FhirServerFlags) => {
      const port = Number(opts.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new AdapterError('input-invalid', `--port "${opts.port}" is not a port number`);
      const bulkExport = {
        ...(opts.exportPolls !== undefined ? { inProgressPolls: parseCountFlag('--export-polls', opts.exportPolls, 0) } : {}),
        ...(opts.exportFileSize !== undefined ? { maxResourcesPerFile: parseCountFlag('--export-file-size', opts.exportFileSize, 0) } : {}),
      };
      // A server is expected to say what it does: info unless FHIR_ML_LOG_LEVEL or the config file says otherwise.
      const ctx = commandContext({ defaults: { logLevel: 'info' } });
      const running = await runFhirServer({
        port,
        host: opts.host,
        baseUrl: opts.baseUrl === undefined ? undefined : checkBaseUrl(opts.baseUrl),
        load: opts.load,
        validate: opts.validate,
        continueOnError: opts.keepGoing,
        requireSinglePatient: opts.requireSinglePatient,
        requireObservationCategory: opts.requireObservationCategory,
        bulkExport,
        logger: ctx.logger,
      });
      // For the person who gave the files: which ones were not loaded, and why (--keep-going).
      for (const failure of running.loaded?.failures ?? []) process.stderr.write(`fhir-ml: not loaded: ${describeFailure(failure)}\n`);
      await running.done;
    });
}
