import { readFileSync } from 'node:fs';
import path from 'node:path';
import cronParser from 'cron-parser';
import { z } from 'zod';
import { AdapterError } from '../core/errors.js';
import { parseDuration } from '../core/time.js';
import { smartAuthSchema } from '../fhir/auth/smart-options.js';
import { authSchema, fhirSourceSchema, type FhirSourceConfig } from './index.js';
import { readYamlFile } from './yaml.js';
import { cdsHooksSchema, jwksSchema } from './cds-hooks.js';
import { DEFAULT_PULL_OPTIONS, pullOptionsSchema, type PullOptionsConfig } from '../fhir/pull-options.js';

/**
 * The service's sources file (YAML): the FHIR servers it syncs on a schedule, and the service's own
 * settings (API, authentication of API callers, database, workers, retention).
 *
 * Validated once at start; every problem is reported at once as `<file>: <field path>: <message>`.
 * Secrets never live in the file: it names environment variables (`tokenEnv`, `passwordEnv`) or files
 * (`tokenFile`, `passwordFile`, SMART's `privateKeyFile`) that hold them, and API keys are stored as hashes
 * only. This module and `config/index` are the only readers of `process.env` (the environment is passed
 * in, for tests).
 *
 * A source's connection is the `fhir` section's (`config/index`): its base URL and resolved credentials
 * are validated with that section's schemas, and `fhirSourceOf` turns a source into the
 * `FhirSourceConfig` the composition root builds clients from (`app.fhirClientFor`).
 */

type Env = Record<string, string | undefined>;

const SOURCE_ID = /^[a-z0-9][a-z0-9-]{0,39}$/;
const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;
const ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;

const duration = (what: string) =>
  z.string().refine((s) => {
    try {
      parseDuration(s);
      return true;
    } catch {
      return false;
    }
  }, `${what} must be an ISO 8601 duration such as P30D, PT12H or PT10M`);

const envName = z.string().regex(ENV_NAME, 'must name an environment variable (A-Z, 0-9, _)').optional();
const fileName = z.string().min(1).optional();

/**
 * Credentials as the file names them: where the secret is (an environment variable or a file), never the
 * secret. Once resolved they are checked with the `fhir.auth` rules (`authSchema` of config/index).
 */
const fileAuthSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('none') }),
  z.strictObject({ type: z.literal('bearer'), tokenEnv: envName, tokenFile: fileName }),
  z.strictObject({ type: z.literal('basic'), username: z.string(), passwordEnv: envName, passwordFile: fileName }),
  // SMART Backend Services: the `fhir.auth` settings (client id, private key file, kid, alg, scopes,
  // token endpoint); the key file's path is relative to the sources file.
  smartAuthSchema,
]);

const populationSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('all') }),
  z.strictObject({ type: z.literal('group'), id: z.string().regex(FHIR_ID, 'must be a FHIR id') }),
  z.strictObject({ type: z.literal('patients'), ids: z.array(z.string().regex(FHIR_ID, 'must be a FHIR id')).min(1, 'must list at least one patient id') }),
]);

const scheduleSchema = z.strictObject({
  cron: z.string().min(1),
  timezone: z.string().default('UTC'),
});

const connection = fhirSourceSchema.shape;
const optionsSchema = z.strictObject({
  batchSize: z.number().int().min(1).max(1000).default(100),
  /** Connection settings; when absent, the adapter's `fhir` section's (FHIR_ML_CONCURRENCY, ...). */
  concurrency: connection.concurrency.optional(),
  timeoutMs: connection.timeoutMs.optional(),
  maxRetries: connection.maxRetries.optional(),
  rescoreInterval: duration('rescoreInterval').default('P30D'),
  overlap: duration('overlap').default('PT10M'),
  /**
   * Silent validation for this source (RiskAssessments `preliminary`, no CarePlan), and whether it gets
   * CarePlan proposals; absent, the configuration's `sync.shadow` and `sync.carePlans` (FHIR_ML_SHADOW,
   * FHIR_ML_CARE_PLANS). A site goes live one EHR at a time.
   */
  shadow: z.boolean().optional(),
  carePlans: z.boolean().optional(),
});

const sourceSchema = z.strictObject({
  id: z.string().regex(SOURCE_ID, 'must be 1-40 lower-case letters, digits or "-", starting with a letter or digit'),
  name: z.string().optional(),
  baseUrl: connection.url.unwrap(),
  auth: fileAuthSchema.default({ type: 'none' }),
  population: populationSchema.default({ type: 'all' }),
  models: z.array(z.string().min(1)).min(1, 'must name at least one model'),
  schedule: scheduleSchema.optional(),
  options: optionsSchema.default(optionsSchema.parse({})),
  /** How the source's data is pulled: search, per-patient, bulk or auto (src/fhir/pull-options.ts). */
  pull: pullOptionsSchema.default(DEFAULT_PULL_OPTIONS),
});

const apiKeySchema = z
  .strictObject({
    name: z.string().min(1),
    sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lower-case hex digits (sha256 of the key)').optional(),
    scrypt: z
      .string()
      .regex(/^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/, 'must be scrypt$N$r$p$<salt base64>$<hash base64>')
      .optional(),
    /** An environment variable holding the sha256 (deployments that template their secrets). */
    sha256Env: z.string().regex(ENV_NAME, 'must name an environment variable (A-Z, 0-9, _)').optional(),
  })
  .refine((k) => [k.sha256, k.scrypt, k.sha256Env].filter(Boolean).length === 1, 'give exactly one of sha256, scrypt or sha256Env');

const jwtIssuerSchema = z.strictObject({
  issuer: z.string().min(1),
  jwksUrl: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
  audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
  algorithms: z.array(z.string().min(1)).optional(),
});

const serviceSchema = z.strictObject({
  api: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(8787),
      bodyLimit: z.string().regex(/^\d+(b|kb|mb)$/, 'must look like 512kb or 5mb').default('5mb'),
      /** Cookie `Secure` flag: `auto` sets it when the request came over https (directly or via a proxy header). */
      secureCookies: z.enum(['auto', 'always', 'never']).default('auto'),
      sessionTtl: duration('sessionTtl').default('PT8H'),
      /** Trust X-Forwarded-* from a reverse proxy (express `trust proxy`). */
      trustProxy: z.boolean().default(false),
    })
    .default({ host: '127.0.0.1', port: 8787, bodyLimit: '5mb', secureCookies: 'auto', sessionTtl: 'PT8H', trustProxy: false }),
  /**
   * Where a worker-only process serves `/metrics` (Prometheus, same authentication as the API) and
   * `/healthz`. API processes serve both on the API.
   */
  metrics: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(9464),
    })
    .default({ host: '127.0.0.1', port: 9464 }),
  apiKeys: z.array(apiKeySchema).default([]),
  jwtIssuers: z.array(jwtIssuerSchema).default([]),
  database: z
    .strictObject({
      /** Embedded PostgreSQL (PGlite) data directory, used when DATABASE_URL is not set. */
      dataDir: z.string().min(1).default('.fhir-ml/pgdata'),
      poolSize: z.number().int().min(1).max(100).default(10),
    })
    .default({ dataDir: '.fhir-ml/pgdata', poolSize: 10 }),
  worker: z
    .strictObject({
      /** Batches one worker process runs at the same time. */
      batchConcurrency: z.number().int().min(1).max(32).default(2),
      /** Retries of a failed batch (exponential backoff from retryDelaySeconds). */
      retryLimit: z.number().int().min(0).max(50).default(5),
      retryDelaySeconds: z.number().int().min(0).max(3600).default(30),
      /** A batch running longer than this is failed by the queue and retried. */
      batchTimeoutSeconds: z.number().int().min(10).max(86_400).default(1800),
      /** How often a running batch records that its worker is alive. */
      heartbeatSeconds: z.number().int().min(1).max(300).default(10),
      /** A running batch without a heartbeat for this long belongs to a dead worker and is released. */
      heartbeatTimeoutSeconds: z.number().int().min(3).max(3600).default(120),
      /** On SIGTERM: how long the current batches may take to finish before they are released. */
      shutdownGraceSeconds: z.number().int().min(1).max(3600).default(60),
      /** Queue polling interval. */
      pollingIntervalSeconds: z.number().min(0.5).max(60).default(2),
    })
    .refine((w) => w.heartbeatTimeoutSeconds > 2 * w.heartbeatSeconds, 'heartbeatTimeoutSeconds must exceed twice heartbeatSeconds')
    .default({
      batchConcurrency: 2,
      retryLimit: 5,
      retryDelaySeconds: 30,
      batchTimeoutSeconds: 1800,
      heartbeatSeconds: 10,
      heartbeatTimeoutSeconds: 120,
      shutdownGraceSeconds: 60,
      pollingIntervalSeconds: 2,
    }),
  /** Runs, batches and outcomes older than this are deleted by the daily retention job. */
  retentionDays: z.number().int().min(1).max(3650).default(90),
  /** CDS Hooks services on the API (src/api/cds-hooks/): absent, none are offered. */
  cdsHooks: cdsHooksSchema.optional(),
  /** Public keys served at /.well-known/jwks.json besides the SMART keys of the sources (e.g. the next key of a rotation). */
  jwks: jwksSchema.default({ keys: [] }),
});

const fileSchema = z.strictObject({
  service: serviceSchema.default(serviceSchema.parse({})),
  sources: z.array(sourceSchema).default([]),
});

/** Resolved credentials: the secrets read, the key file's path absolute. */
export type FhirSourceAuth = FhirSourceConfig['auth'];

export interface SourceConfig {
  id: string;
  name?: string;
  baseUrl: string;
  auth: FhirSourceAuth;
  population: z.infer<typeof populationSchema>;
  models: string[];
  schedule?: { cron: string; timezone: string };
  options: z.infer<typeof optionsSchema>;
  pull: PullOptionsConfig;
}

export type ApiKeyConfig = z.infer<typeof apiKeySchema>;
export type JwtIssuerConfig = z.infer<typeof jwtIssuerSchema>;
type ServiceSection = z.infer<typeof serviceSchema>;

export interface ServiceConfig {
  api: ServiceSection['api'];
  metrics: ServiceSection['metrics'];
  apiKeys: ApiKeyConfig[];
  jwtIssuers: JwtIssuerConfig[];
  /** `url` (DATABASE_URL) wins; without it the embedded database in `dataDir` (absolute) is used. */
  database: ServiceSection['database'] & { url?: string };
  worker: ServiceSection['worker'];
  retentionDays: number;
  cdsHooks?: ServiceSection['cdsHooks'];
  jwks: ServiceSection['jwks'];
  sources: SourceConfig[];
  /** The file it came from, when it came from one. */
  file?: string;
}

/** Reads and validates a sources file; paths in it are relative to the file. */
export function loadServiceConfig(file: string, env: Env = process.env): ServiceConfig {
  const { data, problem } = readYamlFile(file);
  if (problem) throw new AdapterError('config-invalid', `sources file ${file} cannot be read: ${problem}`);
  return parseServiceConfig(data ?? {}, { file, env });
}

/**
 * A source as the composition root's client settings: its URL and credentials, its connection options,
 * and the `fhir` section's for what it does not set (backoff, the Retry-After cap, and timeout, retries
 * and concurrency when the source leaves them out).
 */
export function fhirSourceOf(source: SourceConfig, defaults: FhirSourceConfig): FhirSourceConfig {
  return {
    ...defaults,
    url: source.baseUrl,
    auth: source.auth,
    timeoutMs: source.options.timeoutMs ?? defaults.timeoutMs,
    maxRetries: source.options.maxRetries ?? defaults.maxRetries,
    concurrency: source.options.concurrency ?? defaults.concurrency,
  };
}

/** How a source's scores are written: its own `options.shadow`/`options.carePlans`, else the `sync` section's. */
export function writeModeOf(source: Pick<SourceConfig, 'options'> | undefined, sync: { shadow: boolean; carePlans: boolean }): { shadow: boolean; carePlans: boolean } {
  return { shadow: source?.options.shadow ?? sync.shadow, carePlans: source?.options.carePlans ?? sync.carePlans };
}

/** Validates a parsed sources document (every problem at once) and resolves secrets and paths. */
export function parseServiceConfig(data: unknown, options: { file?: string; env?: Env; baseDir?: string } = {}): ServiceConfig {
  const env = options.env ?? process.env;
  const label = options.file ?? '(sources)';
  const baseDir = options.baseDir ?? (options.file ? path.dirname(path.resolve(options.file)) : process.cwd());
  const problems: string[] = [];
  const at = (p: (string | number)[]) => p.map(String).join('.') || '(file)';

  const parsed = fileSchema.safeParse(data);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const secret = issue.code === 'unrecognized_keys' && issue.keys.some((k) => /token|password|secret|apikey|^key$/i.test(k));
      const message = secret
        ? 'secrets do not belong in the sources file; name an environment variable (tokenEnv/passwordEnv) or a file (tokenFile/passwordFile), and give API keys as hashes'
        : issue.message;
      problems.push(`${label}: ${at(issue.path as (string | number)[])}: ${message}`);
    }
    fail(problems);
  }
  const doc = parsed.data!;

  const seen = new Set<string>();
  const sources: SourceConfig[] = doc.sources.map((s, i) => {
    const where = (field: string) => `${label}: sources.${i}.${field}`;
    if (seen.has(s.id)) problems.push(`${where('id')}: duplicate source id "${s.id}"`);
    seen.add(s.id);
    if (s.schedule) {
      const tzOk = isTimeZone(s.schedule.timezone);
      if (!tzOk) problems.push(`${where('schedule.timezone')}: "${s.schedule.timezone}" is not an IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)`);
      try {
        cronParser.parseExpression(s.schedule.cron, tzOk ? { tz: s.schedule.timezone } : {});
        const fields = s.schedule.cron.trim().split(/\s+/).length;
        if (fields < 5 || fields > 6) throw new Error('field count');
      } catch {
        problems.push(`${where('schedule.cron')}: "${s.schedule.cron}" is not a cron expression (minute hour day-of-month month day-of-week, e.g. "0 2 * * *")`);
      }
    }
    return { ...s, auth: resolveAuth(s.auth as Record<string, unknown>, env, baseDir, where, problems) };
  });

  const keyNames = new Set<string>();
  const apiKeys = doc.service.apiKeys.map((k, i) => {
    if (keyNames.has(k.name)) problems.push(`${label}: service.apiKeys.${i}.name: duplicate API key name "${k.name}"`);
    keyNames.add(k.name);
    if (!k.sha256Env) return k;
    const value = env[k.sha256Env]?.trim().toLowerCase();
    if (!value || !/^[0-9a-f]{64}$/.test(value)) {
      problems.push(`${label}: service.apiKeys.${i}.sha256Env: the environment variable ${k.sha256Env} must hold 64 hex digits (the sha256 of the key)`);
    }
    return { name: k.name, sha256: value };
  });

  const url = env.DATABASE_URL?.trim() || undefined;
  if (url && !/^postgres(ql)?:\/\//.test(url)) problems.push('DATABASE_URL: must be a postgres:// or postgresql:// connection string');
  const dir = env.FHIR_ML_DATA_DIR?.trim() || doc.service.database.dataDir;
  // `memory://`: the embedded database without files (tests, throw-away demos).
  const dataDir = dir.startsWith('memory://') ? dir : path.resolve(baseDir, dir);

  if (problems.length) fail(problems);
  return {
    api: doc.service.api,
    metrics: doc.service.metrics,
    apiKeys,
    jwtIssuers: doc.service.jwtIssuers,
    database: { ...doc.service.database, dataDir, url },
    worker: doc.service.worker,
    retentionDays: doc.service.retentionDays,
    ...(doc.service.cdsHooks ? { cdsHooks: resolveCdsPaths(doc.service.cdsHooks, baseDir) } : {}),
    jwks: { keys: doc.service.jwks.keys.map((k) => ({ ...k, privateKeyFile: path.resolve(baseDir, k.privateKeyFile) })) },
    sources,
    file: options.file,
  };
}

function resolveAuth(
  auth: Record<string, unknown>,
  env: Env,
  baseDir: string,
  where: (field: string) => string,
  problems: string[],
): FhirSourceAuth {
  const before = problems.length;
  const resolved = readSecrets(auth, env, baseDir, where, problems);
  if (problems.length > before) return resolved;
  // The rules of the `fhir.auth` section, once the secrets are read (a secret that could not be read is
  // one problem, not two).
  const checked = authSchema.safeParse(resolved);
  if (!checked.success) for (const i of checked.error.issues) problems.push(`${where(['auth', ...i.path.map(String)].join('.'))}: ${i.message}`);
  return resolved;
}

function readSecrets(auth: Record<string, unknown>, env: Env, baseDir: string, where: (field: string) => string, problems: string[]): FhirSourceAuth {
  const read = (kind: 'token' | 'password'): string | undefined => {
    const envName = auth[`${kind}Env`] as string | undefined;
    const file = auth[`${kind}File`] as string | undefined;
    if (!!envName === !!file) {
      problems.push(`${where(`auth`)}: give exactly one of ${kind}Env or ${kind}File`);
      return undefined;
    }
    if (envName) {
      const value = env[envName];
      if (!value) problems.push(`${where(`auth.${kind}Env`)}: the environment variable ${envName} is not set or empty`);
      return value || undefined;
    }
    const resolved = path.resolve(baseDir, file!);
    try {
      const value = readFileSync(resolved, 'utf8').trim();
      if (!value) problems.push(`${where(`auth.${kind}File`)}: the file ${resolved} is empty`);
      return value || undefined;
    } catch (err) {
      problems.push(`${where(`auth.${kind}File`)}: the file ${resolved} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      return undefined;
    }
  };
  switch (auth.type) {
    case 'bearer':
      return { type: 'bearer', token: read('token') ?? '' };
    case 'basic':
      return { type: 'basic', username: auth.username as string, password: read('password') ?? '' };
    case 'smart': {
      // A path, not the key: checked for readability now, loaded when the service starts.
      const settings = auth as FhirSourceAuth & { type: 'smart' };
      const privateKeyFile = path.resolve(baseDir, settings.privateKeyFile);
      try {
        readFileSync(privateKeyFile);
      } catch (err) {
        problems.push(`${where('auth.privateKeyFile')}: the file ${privateKeyFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      }
      return { ...settings, privateKeyFile };
    }
    default:
      return { type: 'none' };
  }
}

/** Files named in the CDS Hooks section are relative to the sources file. */
function resolveCdsPaths(cds: NonNullable<ServiceSection['cdsHooks']>, baseDir: string): NonNullable<ServiceSection['cdsHooks']> {
  return { ...cds, clients: cds.clients.map((c) => (c.jwksFile ? { ...c, jwksFile: path.resolve(baseDir, c.jwksFile) } : c)) };
}

function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

function fail(problems: string[]): never {
  throw new AdapterError(
    'config-invalid',
    `invalid sources file (${problems.length} problem${problems.length > 1 ? 's' : ''}):\n  - ${problems.join('\n  - ')}`,
    { details: { problems } },
  );
}

/** The service settings with no sources file at all (`fhir-ml serve` without --sources, tests, the demo). */
export function defaultServiceConfig(env: Env = process.env, baseDir = process.cwd()): ServiceConfig {
  return parseServiceConfig({}, { env, baseDir });
}

/** A loggable view: source ids, hosts and auth types; never secrets, key hashes or URL paths with ids. */
export function describeServiceConfig(config: ServiceConfig): Record<string, unknown> {
  return {
    api: { host: config.api.host, port: config.api.port },
    apiKeys: config.apiKeys.length,
    jwtIssuers: config.jwtIssuers.map((j) => j.issuer),
    database: config.database.url ? 'postgresql' : 'embedded',
    sources: config.sources.map((s) => ({ id: s.id, host: new URL(s.baseUrl).host, auth: s.auth.type, models: s.models, schedule: s.schedule?.cron })),
  };
}

/**
 * What the service commands take from the environment: the sources file (`FHIR_ML_SOURCES`, below
 * `--sources`), the API key `fhir-ml runs --api` sends (`FHIR_ML_API_KEY` or `FHIR_ML_API_KEY_FILE`), and
 * the database settings the sources file would otherwise give.
 */
export function serviceEnvironment(env: Env = process.env): { sourcesFile?: string; apiKey?: string; env: Env } {
  let apiKey = env.FHIR_ML_API_KEY?.trim() || undefined;
  const keyFile = env.FHIR_ML_API_KEY_FILE?.trim();
  if (keyFile) {
    try {
      apiKey = readFileSync(keyFile, 'utf8').trim();
    } catch (err) {
      throw new AdapterError('config-invalid', `FHIR_ML_API_KEY_FILE: the file ${keyFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  return { sourcesFile: env.FHIR_ML_SOURCES?.trim() || undefined, apiKey, env: { DATABASE_URL: env.DATABASE_URL, FHIR_ML_DATA_DIR: env.FHIR_ML_DATA_DIR } };
}
