import { createHash } from 'node:crypto';
import { Command, Option } from 'commander';
import { startService } from '../../api/service.js';
import { AdapterError } from '../../core/errors.js';
import { describeServiceConfig, loadServiceConfig, serviceEnvironment } from '../../config/sources.js';
import { commandContext } from '../context.js';

/**
 * `fhir-ml serve`: the service, over the composition root of every command (`--config`, FHIR_ML_*: models,
 * mappings, identifier system, FHIR client defaults, log level). API and worker in one process (small
 * sites), or `--api-only` / `--worker-only` processes sharing one PostgreSQL (DATABASE_URL) to scale out;
 * a worker-only process serves /metrics on a listener of its own. Runs until SIGTERM or SIGINT: stops
 * taking jobs, lets running batches finish (shutdownGraceSeconds), releases the rest, exits 0.
 */
export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('Run the service: scheduled syncs of the sources file (pg-boss jobs), the HTTP API and the web console')
    .option('--sources <file>', 'sources file (YAML; or FHIR_ML_SOURCES): FHIR sources, schedules, API keys, workers')
    .addOption(new Option('--api-only', 'only the HTTP API and console (no batches are run here)').conflicts('workerOnly'))
    .addOption(new Option('--worker-only', 'only the worker (runs schedules and batches; no HTTP)').conflicts('apiOnly'))
    .option('--port <n>', 'API port (default: the sources file, else 8787)')
    .option('--host <host>', 'API host (default: the sources file, else 127.0.0.1)')
    .option('--metrics-port <n>', 'worker only: port of /metrics (default: the sources file\'s service.metrics.port, else 9464)')
    .option('--hash-key', 'read an API key on stdin, print the sha256 the sources file wants, and exit')
    .action(async (opts: ServeOptions) => {
      process.exitCode = await serveCommand(opts);
    });
}

interface ServeOptions {
  sources?: string;
  apiOnly?: boolean;
  workerOnly?: boolean;
  port?: string;
  host?: string;
  metricsPort?: string;
  hashKey?: boolean;
}

function portOption(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new AdapterError('input-invalid', `${flag} ${value} is not a port number`);
  return port;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').trim();
}

export async function serveCommand(opts: ServeOptions): Promise<number> {
  if (opts.hashKey) {
    const key = await readStdin();
    if (key.length < 24) throw new AdapterError('input-invalid', 'an API key should be random and at least 24 characters long');
    process.stdout.write(`sha256: ${createHash('sha256').update(key).digest('hex')}\n`);
    return 0;
  }
  const environment = serviceEnvironment();
  const file = opts.sources ?? environment.sourcesFile;
  if (!file) throw new AdapterError('input-invalid', 'no sources file: use --sources FILE or FHIR_ML_SOURCES (see fixtures/service/sources.example.yaml)');
  const port = portOption(opts.port, '--port');
  const metricsPort = portOption(opts.metricsPort, '--metrics-port');
  const config = loadServiceConfig(file, environment.env);
  const mode = opts.apiOnly ? 'api' : opts.workerOnly ? 'worker' : 'all';
  const app = commandContext();
  try {
    app.logger.info({ mode, ...describeServiceConfig(config) }, 'service starting');
    const service = await startService({ config, app, mode, listen: { port, host: opts.host }, metricsListen: { port: metricsPort } });
    const where = service.url ? `API ${service.url} (console ${service.url}/console/)` : `metrics ${service.metricsUrl}/metrics (worker only)`;
    process.stdout.write(`fhir-ml serve: ${mode === 'all' ? 'API and worker' : mode === 'api' ? 'API only' : 'worker only'}, ${config.sources.length} source(s), database ${service.db.kind}; ${where}\n`);
    await untilStopped(async (signal) => {
      process.stdout.write(`fhir-ml serve: ${signal}, stopping (running batches finish or are released)\n`);
      await service.stop();
    }, app.logger);
    return 0;
  } finally {
    await app.close();
  }
}

/** Waits for SIGTERM or SIGINT, then runs `stop` once (its failure is logged: the process still exits). */
export function untilStopped(stop: (signal: NodeJS.Signals) => Promise<void>, logger: { error(obj: object, msg: string): void }): Promise<void> {
  return new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      stop(signal).then(resolve, (err: unknown) => {
        logger.error({ err: (err as Error).message }, 'stop failed');
        resolve();
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
