import type { Command } from 'commander';
import { AdapterError } from '../../core/errors.js';
import { describeFailure, runFhirServer } from '../../server/index.js';
import { commandContext } from '../context.js';

export function registerFhirServerCommand(program: Command): void {
  program
    .command('fhir-server')
    .description('Run the embedded FHIR R4 server on its own, optionally loaded with transaction Bundles or NDJSON files')
    .option('--port <n>', 'port to listen on (0 picks a free one)', '8103')
    .option('--host <host>', 'interface to bind', '127.0.0.1')
    .option('--load <path...>', 'files or directories to load (transaction/collection Bundles, resources, .ndjson)')
    .option('--no-validate', 'accept resources without R4 validation (for data the validator rejects)')
    .option('--keep-going', 'load every file and report the ones that fail, instead of stopping at the first')
    .action(async (opts: { port: string; host: string; load?: string[]; validate: boolean; keepGoing?: boolean }) => {
      const port = Number(opts.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new AdapterError('input-invalid', `--port "${opts.port}" is not a port number`);
      // A server is expected to say what it does: info unless FHIR_ML_LOG_LEVEL (or the config) says otherwise.
      const ctx = commandContext({ logLevel: process.env.FHIR_ML_LOG_LEVEL ?? 'info' });
      const running = await runFhirServer({
        port,
        host: opts.host,
        load: opts.load,
        validate: opts.validate,
        continueOnError: opts.keepGoing,
        logger: ctx.logger,
      });
      // For the person who gave the files: which ones were not loaded, and why (--keep-going).
      for (const failure of running.loaded?.failures ?? []) process.stderr.write(`fhir-ml: not loaded: ${describeFailure(failure)}\n`);
      await running.done;
    });
}
