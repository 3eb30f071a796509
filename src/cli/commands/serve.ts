import { createHash } from 'node:crypto';
import { Command, Option } from 'commander';
import { startService } from '../../api/service.js';
import { AdapterError } from '../../core/errors.js';
import { describeServiceConfig, loadServiceConfig, serviceEnvironment } from '../../config/sources.js';
import { commandContext } from '../context.js';

/**
 * `fhir-ml serve`: the service. API and worker in one process (small sites), or `--api-only` /
 * `--worker-only` processes sharing one PostgreSQL (DATABASE_URL) to scale out. Runs until SIGTERM or
 * SIGINT: stops taking jobs, lets running batches finish (shutdownGraceSeconds), releases the rest,
 * exits 0.
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
  hashKey?: boolean;
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
  const port = opts.port === undefined ? undefined : Number(opts.port);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new AdapterError('input-invalid', `--port ${opts.port} is not a port number`);
  const ctx = commandContext();
  const config = loadServiceConfig(file, environment.env);
  const mode = opts.apiOnly ? 'api' : opts.workerOnly ? 'worker' : 'all';
  ctx.logger.info({ mode, ...describeServiceConfig(config) }, 'service starting');
  const service = await startService({
    config,
    adapter: { modelsDir: ctx.config.models.dir, mappingsDir: ctx.config.models.mappingsDir, identifierSystem: ctx.config.sync.identifierSystem },
    mode,
    logger: ctx.logger,
    listen: { port, host: opts.host },
  });
  const where = service.url ? `API ${service.url} (console ${service.url}/console/)` : 'no HTTP (worker only)';
  process.stdout.write(`fhir-ml serve: ${mode === 'all' ? 'API and worker' : mode === 'api' ? 'API only' : 'worker only'}, ${config.sources.length} source(s), database ${service.db.kind}; ${where}\n`);
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.stdout.write(`fhir-ml serve: ${signal}, stopping (running batches finish or are released)\n`);
      service.stop().then(resolve, (err) => {
        ctx.logger.error({ err: (err as Error).message }, 'stop failed');
        resolve();
      });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  return 0;
}
