import { pathToFileURL } from 'node:url';
import { AdapterError } from '../core/errors.js';
import { describeError, exitCodeFor } from '../core/error-mapping.js';
import { createLogger, type Logger } from '../core/log.js';
import { loadFiles, type LoadFilesResult } from './load.js';
import { startFhirServer, type RunningFhirServer, type StartFhirServerOptions } from './server.js';

/**
 * Standalone entry of the embedded FHIR server (`fhir-ml fhir-server`, and the benchmark's child
 * process): start, load, then print exactly one line `FHIR server listening on <url>` to stdout, which
 * is what a parent process waits for (the data is loaded by then). Logs go to stderr. SIGINT/SIGTERM
 * close the server; `done` resolves when it is closed.
 */
export interface RunFhirServerOptions extends StartFhirServerOptions {
  /** Files or directories to load (see loadFiles). */
  load?: string[];
  logger?: Logger;
  /** Load every file, reporting the ones that fail, instead of stopping at the first (`--keep-going`). */
  continueOnError?: boolean;
  /** Output stream for the "listening" line (default process.stdout). */
  stdout?: NodeJS.WritableStream;
  /** Output stream for warnings meant for the person who started the server (default process.stderr). */
  stderr?: NodeJS.WritableStream;
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
  const { load, continueOnError, stdout, stderr, handleSignals, ...serverOptions } = options;
  const host = options.host ?? '127.0.0.1';
  if (!isLoopbackHost(host) && !options.authorize) {
    // Anyone who can reach the interface can read and write every resource: say so where it is seen.
    const warning = `the embedded FHIR server has no authentication and listens on ${host}: anyone who can reach it can read and change its data`;
    logger.warn({ host }, 'fhir server without authentication on a non-loopback interface');
    (stderr ?? process.stderr).write(`fhir-ml: warning: ${warning}\n`);
  }
  const server = await startFhirServer({ ...serverOptions, port: options.port ?? 0, host, logger });
  let loaded: LoadFilesResult | undefined;
  try {
    if (load?.length) {
      loaded = await loadFiles(server, load, { logger, continueOnError });
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
  if (handleSignals ?? true) for (const s of signals) process.on(s, onSignal);

  (stdout ?? process.stdout).write(`FHIR server listening on ${server.url}\n`);
  logger.info({ url: server.url }, 'fhir server listening');
  return { ...server, loaded, done, close };
}

/** Loopback interfaces: only this machine can connect. Anything else (0.0.0.0, ::, a LAN address) is not. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h) || /^::ffff:127\.\d+\.\d+\.\d+$/.test(h);
}

/**
 * `node --import tsx src/server/main.ts [--port N] [--host H] [--base-url URL] [--no-validate]
 * [--keep-going] [--require-single-patient] [--require-observation-category] [--export-polls N]
 * [--export-file-size N] [--load PATH]...` (the same flags as `fhir-ml fhir-server`).
 */
export function parseArgs(argv: string[]): RunFhirServerOptions {
  const options: RunFhirServerOptions = { load: [] };
  const bulk: NonNullable<RunFhirServerOptions['bulkExport']> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new AdapterError('input-invalid', `${arg} needs a value`);
      return v;
    };
    if (arg === '--port' || arg === '-p') options.port = Number(value());
    else if (arg === '--host') options.host = value();
    else if (arg === '--base-url') options.baseUrl = value();
    else if (arg === '--load' || arg === '-l') options.load?.push(value());
    else if (arg === '--no-validate') options.validate = false;
    else if (arg === '--keep-going') options.continueOnError = true;
    else if (arg === '--max-page-size') options.maxPageSize = parseCountFlag(arg, value(), 1);
    else if (arg === '--require-single-patient') options.requireSinglePatient = true;
    else if (arg === '--require-observation-category') options.requireObservationCategory = true;
    else if (arg === '--export-polls') bulk.inProgressPolls = parseCountFlag(arg, value(), 0);
    else if (arg === '--export-file-size') bulk.maxResourcesPerFile = parseCountFlag(arg, value(), 0);
    else if (!arg.startsWith('-')) options.load?.push(arg);
    else throw new AdapterError('input-invalid', `Unknown option ${arg}`);
  }
  if (Object.keys(bulk).length) options.bulkExport = bulk;
  if (options.port !== undefined && (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535)) {
    throw new AdapterError('input-invalid', `--port must be 0..65535`);
  }
  if (options.baseUrl !== undefined) options.baseUrl = checkBaseUrl(options.baseUrl);
  return options;
}

/** A whole number >= min given to a flag, or an input-invalid error naming the flag. */
export function parseCountFlag(flag: string, value: string, min: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min) throw new AdapterError('input-invalid', `${flag} must be a whole number >= ${min}, got "${value}"`);
  return n;
}

/** `--base-url`: an absolute http(s) URL; a trailing slash is dropped. */
export function checkBaseUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new AdapterError('input-invalid', `--base-url must be an absolute http(s) URL, got "${value}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new AdapterError('input-invalid', `--base-url must be http or https, got "${url.protocol}"`);
  if (url.search || url.hash) throw new AdapterError('input-invalid', '--base-url must not carry a query or fragment');
  return value.replace(/\/+$/, '');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runFhirServer(parseArgs(process.argv.slice(2)))
    .then((s) => s.done)
    .catch((err: unknown) => {
      process.stderr.write(`${describeError(err)}\n`);
      process.exitCode = exitCodeFor(err);
    });
}
