import { pathToFileURL } from 'node:url';
import { AdapterError } from '../core/errors.js';
import { describeError, exitCodeFor } from '../core/error-mapping.js';
import { createLogger, type Logger } from '../core/log.js';
import { loadFiles, type LoadFilesResult } from './load.js';
import { startFhirServer, type RunningFhirServer } from './server.js';

/**
 * Standalone entry of the embedded FHIR server (`fhir-ml fhir-server`, and the benchmark's child
 * process): start, load, then print exactly one line `FHIR server listening on <url>` to stdout, which
 * is what a parent process waits for (the data is loaded by then). Logs go to stderr. SIGINT/SIGTERM
 * close the server; `done` resolves when it is closed.
 */
export interface RunFhirServerOptions {
  port?: number;
  host?: string;
  /** Files or directories to load (see loadFiles). */
  load?: string[];
  logger?: Logger;
  /** Load every file, reporting the ones that fail, instead of stopping at the first (`--keep-going`). */
  continueOnError?: boolean;
  /** false loads and accepts resources without validation (`--no-validate`). */
  validate?: boolean;
  maxPageSize?: number;
  defaultPageSize?: number;
  /** Output stream for the "listening" line (default process.stdout). */
  stdout?: NodeJS.WritableStream;
  /** Install SIGINT/SIGTERM handlers (default true). */
  handleSignals?: boolean;
}

export interface RunningFhirServerProcess extends RunningFhirServer {
  loaded: LoadFilesResult | undefined;
  /** Resolves once the server has closed (signal or close()). */
  done: Promise<void>;
}

export async function runFhirServer(options: RunFhirServerOptions = {}): Promise<RunningFhirServerProcess> {
  const logger = options.logger ?? createLogger();
  const server = await startFhirServer({
    port: options.port ?? 0,
    host: options.host,
    logger,
    validate: options.validate,
    maxPageSize: options.maxPageSize,
    defaultPageSize: options.defaultPageSize,
  });
  let loaded: LoadFilesResult | undefined;
  try {
    if (options.load?.length) {
      loaded = await loadFiles(server, options.load, { logger, continueOnError: options.continueOnError });
      // Each rejected file is logged by loadFiles (file, line, issue count: never resource content).
      logger.info({ files: loaded.files.length, resources: loaded.total, counts: loaded.counts, ms: loaded.ms }, 'fhir server data loaded');
    }
  } catch (err) {
    await server.close();
    throw err;
  }

  let resolveDone: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];
  const onSignal = (signal: NodeJS.Signals): void => {
    logger.info({ signal }, 'fhir server stopping');
    void close();
  };
  const close = async (): Promise<void> => {
    for (const s of signals) process.off(s, onSignal);
    await server.close();
    resolveDone();
  };
  if (options.handleSignals ?? true) for (const s of signals) process.on(s, onSignal);

  (options.stdout ?? process.stdout).write(`FHIR server listening on ${server.url}\n`);
  logger.info({ url: server.url }, 'fhir server listening');
  return { ...server, loaded, done, close };
}

/** `node --import tsx src/server/main.ts [--port N] [--host H] [--no-validate] [--load PATH]...` */
export function parseArgs(argv: string[]): RunFhirServerOptions {
  const options: RunFhirServerOptions = { load: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new AdapterError('input-invalid', `${arg} needs a value`);
      return v;
    };
    if (arg === '--port' || arg === '-p') options.port = Number(value());
    else if (arg === '--host') options.host = value();
    else if (arg === '--load' || arg === '-l') options.load?.push(value());
    else if (arg === '--no-validate') options.validate = false;
    else if (arg === '--max-page-size') options.maxPageSize = Number(value());
    else if (!arg.startsWith('-')) options.load?.push(arg);
    else throw new AdapterError('input-invalid', `Unknown option ${arg}`);
  }
  if (options.port !== undefined && (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535)) {
    throw new AdapterError('input-invalid', `--port must be 0..65535`);
  }
  return options;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runFhirServer(parseArgs(process.argv.slice(2)))
    .then((s) => s.done)
    .catch((err: unknown) => {
      process.stderr.write(`${describeError(err)}\n`);
      process.exitCode = exitCodeFor(err);
    });
}
