#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { describeError, EXIT_OUTPUT_CLOSED, exitCodeFor } from '../core/error-mapping.js';
import { AdapterError } from '../core/errors.js';
import { registerCatalogCommands } from './commands/catalog.js';
import { registerDemoCommand } from './commands/demo.js';
import { registerFeaturesCommand } from './commands/features.js';
import { registerFhirServerCommand } from './commands/fhir-server.js';
import { registerNlpCommand } from './commands/nlp.js';
import { registerRunsCommand } from './commands/runs.js';
import { registerServeCommand } from './commands/serve.js';
import { registerSyncCommand } from './commands/sync.js';
import { setConfigFile } from './context.js';
import { mustExitAtOnce } from './interrupt.js';
import { stdout } from './output.js';

/** `fhir-ml`: the command-line entry. Errors are mapped to exit codes in one place (core/error-mapping). */
export function buildProgram(): Command {
  const program = new Command('fhir-ml')
    .description('FHIR R4 <-> ONNX models and clinical NLP: score patients and write RiskAssessments back')
    .version('0.1.0')
    .option('--config <file>', 'YAML config file (or FHIR_ML_CONFIG); flags and FHIR_ML_* variables win over it')
    .showHelpAfterError()
    .exitOverride()
    .hook('preAction', (command) => setConfigFile(command.opts().config as string | undefined));
  registerSyncCommand(program);
  registerFeaturesCommand(program);
  registerDemoCommand(program);
  registerFhirServerCommand(program);
  registerCatalogCommands(program);
  registerNlpCommand(program);
  registerServeCommand(program);
  registerRunsCommand(program);
  return program;
}

export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    const code = typeof process.exitCode === 'number' ? process.exitCode : 0;
    // The reader of our output went away (`| head`): end quietly, as a process ended by SIGPIPE would.
    return stdout.closed && code === 0 ? EXIT_OUTPUT_CLOSED : code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit 0; usage errors exit 64 (EX_USAGE). Commander already printed the message.
      return err.exitCode === 0 ? 0 : 64;
    }
    process.stderr.write(`fhir-ml: ${describeError(err)}\n`);
    if (err instanceof AdapterError && err.transient) process.stderr.write('fhir-ml: this error is transient; retrying later may succeed\n');
    return exitCodeFor(err);
  }
}

function invokedDirectly(): boolean {
  // The npm bin is a symlink to this file: compare real paths.
  try {
    return !!process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  main().then((code) => {
    process.exitCode = code;
    // Requests of an abandoned batch may still be in flight: do not wait for them.
    if (mustExitAtOnce()) process.stdout.write('', () => process.exit(code));
  });
}
