import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { AdapterError } from '../core/errors.js';
import { PACKAGE_ROOT, packagePath } from '../core/paths.js';
import { smartAuthSchema } from '../fhir/auth/smart-options.js';
import { PULL_STRATEGIES } from '../fhir/pull-options.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../writeback/identifiers.js';
import { readYamlFile } from './yaml.js';

/**
 * Configuration, the only reader of the environment. Sources, highest first: CLI flags, environment
 * variables (`FHIR_ML_*`), an optional YAML config file (`--config FILE` or FHIR_ML_CONFIG), defaults.
 * The result is validated once, in nested sections, and every problem of every source is reported at
 * once, each naming where the bad value came from. Secrets come only from the environment or from
 * files (`*_FILE`, `tokenFile`, `passwordFile`); they are never logged or echoed (see `describeConfig`).
 */

type Env = Record<string, string | undefined>;

const httpUrl = z
  .url({ protocol: /^https?$/, error: 'must be an http(s) URL such as https://fhir.example.org/R4' })
  .refine((u) => !/^[a-z]+:\/\/[^/]*@/i.test(u), "must not embed credentials (give them as auth: FHIR_ML_TOKEN, FHIR_ML_USERNAME/FHIR_ML_PASSWORD, or a source's auth)")
  .refine((u) => !/[?#]/.test(u), 'must be a base URL, without a query or fragment');

export const authSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('none') }),
  z.strictObject({ type: z.literal('bearer'), token: z.string().min(1, 'bearer auth needs a token (FHIR_ML_TOKEN or FHIR_ML_TOKEN_FILE)') }),
  z.strictObject({
    type: z.literal('basic'),
    username: z.string().min(1, 'basic auth needs FHIR_ML_USERNAME').refine((u) => !u.includes(':'), 'a basic auth username cannot contain ":"'),
    password: z.string().min(1, 'basic auth needs FHIR_ML_PASSWORD or FHIR_ML_PASSWORD_FILE'),
  }),
  // SMART Backend Services: a signed client assertion (RS384/ES384) for short-lived tokens.
  smartAuthSchema,
]);

/**
 * One FHIR server: where it is, how to authenticate, and how to talk to it. The `fhir` section is the
 * default source; a sources file (later) lists more, each validated with this schema and turned into a
 * client by the composition root (`src/app.ts`).
 */
export const fhirSourceSchema = z.strictObject({
  /** Absent when a command needs no server; commands that do say so. */
  url: httpUrl.optional(),
  auth: authSchema,
  /** Per attempt, covering connect, headers and body. */
  timeoutMs: z.number().int().min(100).max(600_000),
  /** Retries of 429, 5xx and network errors. */
  maxRetries: z.number().int().min(0).max(20),
  /** Requests in flight to this server. */
  concurrency: z.number().int().min(1).max(64),
  /** Capped exponential backoff with full jitter between retries. */
  backoff: z
    .strictObject({ baseMs: z.number().int().min(1).max(600_000), maxMs: z.number().int().min(1).max(600_000) })
    .refine((b) => b.maxMs >= b.baseMs, 'backoff.maxMs must be at least backoff.baseMs'),
  /** Upper bound on a server's Retry-After. */
  maxRetryAfterMs: z.number().int().min(0).max(3_600_000),
});
export type FhirSourceConfig = z.infer<typeof fhirSourceSchema>;

export const configSchema = z.strictObject({
  fhir: fhirSourceSchema,
  models: z.strictObject({
    /** The model registry: `<dir>/<id>/model-card.json` + `model.onnx`. */
    dir: z.string().min(1),
    /** Mapping files: `<mappingsDir>/<model id>.yaml`, NLP rules in `<mappingsDir>/nlp/`. */
    mappingsDir: z.string().min(1),
  }),
  sync: z.strictObject({
    /** Patients per batch. */
    batchSize: z.number().int().min(1).max(1000),
    /** Identifier system of written RiskAssessments and Devices. */
    identifierSystem: z
      .url({ error: 'must be an absolute URI' })
      .refine((s) => !/[?&#|]/.test(s), 'must not contain ?, &, # or | (it is used inside conditional-create queries)'),
    /** Shadow mode: RiskAssessments written `preliminary`, no CarePlans (silent validation before go-live). */
    shadow: z.boolean(),
    /** Write CarePlan proposals with final RiskAssessments. */
    carePlans: z.boolean(),
    /** How batches are pulled: search, per-patient, bulk or auto (src/fhir/pull-options.ts). */
    pullStrategy: z.enum(PULL_STRATEGIES, { error: `must be one of ${PULL_STRATEGIES.join(', ')}` }),
  }),
  log: z.strictObject({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    /** DEBUG enables fhir-kit-client's tracing (URLs, credentials and bodies on stderr): warned about at start. */
    fhirClientTracing: z.boolean(),
  }),
});
export type AdapterConfig = z.infer<typeof configSchema>;

/** CLI flags; each wins over its environment variable and the config file. */
export interface ConfigOverrides {
  /** A YAML config file; FHIR_ML_CONFIG when absent. */
  configFile?: string;
  fhirUrl?: string;
  batchSize?: number | string;
  concurrency?: number | string;
  timeoutMs?: number | string;
  logLevel?: string;
  shadow?: boolean;
  carePlans?: boolean;
  pullStrategy?: string;
  /** Defaults of the running command, below the environment and the file (e.g. `fhir-server` logs at info). */
  defaults?: { logLevel?: string };
}

/**
 * Every plain setting once: where it lives in the config, its environment variable, its flag, its
 * default. Numbers from the environment or flags are parsed; file paths in the config file are
 * relative to the file.
 */
const SETTINGS: { at: string[]; env: string; flag?: keyof ConfigOverrides; number?: boolean; boolean?: boolean; filePath?: boolean; fallback: (o: ConfigOverrides) => unknown }[] = [
  { at: ['fhir', 'url'], env: 'FHIR_ML_FHIR_URL', flag: 'fhirUrl', fallback: () => undefined },
  { at: ['fhir', 'timeoutMs'], env: 'FHIR_ML_TIMEOUT_MS', flag: 'timeoutMs', number: true, fallback: () => 30_000 },
  { at: ['fhir', 'maxRetries'], env: 'FHIR_ML_MAX_RETRIES', number: true, fallback: () => 5 },
  { at: ['fhir', 'concurrency'], env: 'FHIR_ML_CONCURRENCY', flag: 'concurrency', number: true, fallback: () => 4 },
  { at: ['fhir', 'backoff', 'baseMs'], env: 'FHIR_ML_BACKOFF_BASE_MS', number: true, fallback: () => 250 },
  { at: ['fhir', 'backoff', 'maxMs'], env: 'FHIR_ML_BACKOFF_MAX_MS', number: true, fallback: () => 10_000 },
  { at: ['fhir', 'maxRetryAfterMs'], env: 'FHIR_ML_MAX_RETRY_AFTER_MS', number: true, fallback: () => 60_000 },
  { at: ['models', 'dir'], env: 'FHIR_ML_MODELS_DIR', filePath: true, fallback: () => packagePath('models') },
  { at: ['models', 'mappingsDir'], env: 'FHIR_ML_MAPPINGS_DIR', filePath: true, fallback: () => packagePath('mappings') },
  { at: ['sync', 'batchSize'], env: 'FHIR_ML_BATCH_SIZE', flag: 'batchSize', number: true, fallback: () => 100 },
  { at: ['sync', 'identifierSystem'], env: 'FHIR_ML_IDENTIFIER_SYSTEM', fallback: () => DEFAULT_IDENTIFIER_SYSTEM },
  { at: ['sync', 'shadow'], env: 'FHIR_ML_SHADOW', flag: 'shadow', boolean: true, fallback: () => false },
  { at: ['sync', 'carePlans'], env: 'FHIR_ML_CARE_PLANS', flag: 'carePlans', boolean: true, fallback: () => true },
  { at: ['sync', 'pullStrategy'], env: 'FHIR_ML_PULL_STRATEGY', flag: 'pullStrategy', fallback: () => 'search' },
  { at: ['log', 'level'], env: 'FHIR_ML_LOG_LEVEL', flag: 'logLevel', fallback: (o) => o.defaults?.logLevel ?? 'warn' },
];

/** The keys a config file may hold (secrets excluded: they come from the environment or from files). */
const FILE_KEYS: Record<string, readonly string[]> = {
  fhir: ['url', 'auth', 'timeoutMs', 'maxRetries', 'concurrency', 'backoff', 'maxRetryAfterMs'],
  'fhir.backoff': ['baseMs', 'maxMs'],
  'fhir.auth': ['type', 'tokenFile', 'username', 'passwordFile', 'clientId', 'privateKeyFile', 'kid', 'alg', 'scopes', 'tokenEndpoint'],
  models: ['dir', 'mappingsDir'],
  sync: ['batchSize', 'identifierSystem', 'shadow', 'carePlans', 'pullStrategy'],
  log: ['level'],
};
/** Keys of the earlier flat file format, with their place now. */
const MOVED: Record<string, string> = {
  fhirUrl: 'fhir.url',
  auth: 'fhir.auth',
  timeoutMs: 'fhir.timeoutMs',
  maxRetries: 'fhir.maxRetries',
  concurrency: 'fhir.concurrency',
  modelsDir: 'models.dir',
  mappingsDir: 'models.mappingsDir',
  batchSize: 'sync.batchSize',
  identifierSystem: 'sync.identifierSystem',
  logLevel: 'log.level',
};
const SECRET_KEY = /token$|password$|secret/i;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads the config file's YAML; unknown and misplaced keys become problems, values are checked with the rest. */
function readConfigFile(file: string, problems: string[]): Record<string, unknown> {
  const { data, problem } = readYamlFile(file);
  if (problem) {
    problems.push(`${file}: cannot be read: ${problem}`);
    return {};
  }
  if (data === null || data === undefined) return {};
  if (!isRecord(data)) {
    problems.push(`${file}: must be a YAML mapping of sections (fhir, models, sync, log)`);
    return {};
  }
  const walk = (obj: Record<string, unknown>, prefix: string) => {
    const allowed = prefix ? FILE_KEYS[prefix] : Object.keys(FILE_KEYS).filter((k) => !k.includes('.'));
    for (const [key, value] of Object.entries(obj)) {
      const at = prefix ? `${prefix}.${key}` : key;
      if (SECRET_KEY.test(key) && !key.endsWith('File')) {
        problems.push(`${file}: ${at}: secrets do not belong in the config file; use the environment or tokenFile/passwordFile`);
      } else if (!allowed.includes(key)) {
        const moved = !prefix ? MOVED[key] : undefined;
        problems.push(`${file}: ${at}: unknown key${moved ? ` (it is now ${moved})` : ''}`);
      } else if (FILE_KEYS[at]) {
        if (isRecord(value)) walk(value, at);
        else problems.push(`${file}: ${at}: must be a section (a YAML mapping)`);
      }
    }
  };
  walk(data, '');
  return data;
}

function getIn(obj: Record<string, unknown>, keys: string[]): unknown {
  let v: unknown = obj;
  for (const k of keys) v = isRecord(v) ? v[k] : undefined;
  return v;
}

function setIn(obj: Record<string, unknown>, keys: string[], value: unknown): void {
  let o = obj;
  for (const k of keys.slice(0, -1)) o = (o[k] ??= {}) as Record<string, unknown>;
  o[keys.at(-1)!] = value;
}

/** `true`/`false` (also 1/0, yes/no) from the environment; anything else is left for the schema to refuse. */
function bool(value: string | boolean): boolean | string {
  if (typeof value === 'boolean') return value;
  const v = value.trim().toLowerCase();
  return ['true', '1', 'yes'].includes(v) ? true : ['false', '0', 'no'].includes(v) ? false : value;
}

function num(value: string | number): number | string {
  if (typeof value === 'number') return value;
  const n = value.trim() === '' ? NaN : Number(value);
  return Number.isNaN(n) ? value : n;
}

/**
 * Loads and validates the configuration; throws one AdapterError('config-invalid') listing every
 * problem (`details.problems`), each with the source of the bad value.
 */
export function loadConfig(overrides: ConfigOverrides = {}, env: Env = process.env): AdapterConfig {
  const problems: string[] = [];
  const configFile = overrides.configFile ?? env.FHIR_ML_CONFIG;
  const file = configFile ? readConfigFile(configFile, problems) : {};
  const fileLabel = configFile ?? '';
  // Paths in a config file are relative to the file, not to wherever the command is run from.
  const fromFile = (p: unknown) => (typeof p === 'string' && p && configFile ? path.resolve(path.dirname(configFile), p) : p);

  const candidate: Record<string, unknown> = {};
  const origin = new Map<string, string>();
  for (const s of SETTINGS) {
    const flag = s.flag ? (overrides[s.flag] as string | number | boolean | undefined) : undefined;
    const parse = (v: string | number | boolean) => (s.number ? num(v as string | number) : s.boolean ? bool(v as string | boolean) : v);
    const fromEnv = env[s.env];
    const inFile = getIn(file, s.at);
    let value: unknown;
    let from: string;
    if (flag !== undefined && flag !== '') [value, from] = [parse(flag), `--${s.flag!.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`];
    else if (fromEnv !== undefined && fromEnv !== '') [value, from] = [parse(fromEnv), s.env];
    else if (inFile !== undefined) [value, from] = [s.filePath ? fromFile(inFile) : inFile, fileLabel];
    else [value, from] = [s.fallback(overrides), 'default'];
    setIn(candidate, s.at, value);
    origin.set(s.at.join('.'), from);
  }

  // Authentication: explicit type, else inferred from the credentials given; never two kinds at once.
  const fileAuth = isRecord(getIn(file, ['fhir', 'auth'])) ? (getIn(file, ['fhir', 'auth']) as Record<string, unknown>) : {};
  // A secret file that cannot be read is one problem, not two (no "needs a token" after it).
  const unreadable = new Set<string>();
  const readSecret = (where: string, p: unknown, what: string): string | undefined => {
    if (typeof p !== 'string' || !p) return undefined;
    try {
      return readFileSync(p, 'utf8').trim();
    } catch (err) {
      problems.push(`${where}: the file ${p} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      unreadable.add(`fhir.auth.${what}`);
      return undefined;
    }
  };
  const secret = (name: string, fileKey: string, what: string): { value?: string; from?: string } => {
    if (env[`${name}_FILE`]) return { value: readSecret(`${name}_FILE`, env[`${name}_FILE`], what), from: `${name}_FILE` };
    if (env[name]) return { value: env[name], from: name };
    if (fileAuth[fileKey] !== undefined) return { value: readSecret(`${fileLabel}: fhir.auth.${fileKey}`, fromFile(fileAuth[fileKey]), what), from: `fhir.auth.${fileKey}` };
    return {};
  };
  const token = secret('FHIR_ML_TOKEN', 'tokenFile', 'token');
  const password = secret('FHIR_ML_PASSWORD', 'passwordFile', 'password');
  const username = env.FHIR_ML_USERNAME
    ? { value: env.FHIR_ML_USERNAME, from: 'FHIR_ML_USERNAME' }
    : typeof fileAuth.username === 'string'
      ? { value: fileAuth.username, from: 'fhir.auth.username' }
      : {};
  const basicGiven = username.from ?? password.from;
  // SMART Backend Services: the client id and key file (a path, not the key) may sit in the config file.
  const smartSetting = (name: string, fileKey: string): { value?: unknown; from?: string } =>
    env[name] ? { value: env[name], from: name } : fileAuth[fileKey] !== undefined ? { value: fileAuth[fileKey], from: `fhir.auth.${fileKey}` } : {};
  const smart = {
    clientId: smartSetting('FHIR_ML_SMART_CLIENT_ID', 'clientId'),
    privateKeyFile: env.FHIR_ML_SMART_PRIVATE_KEY_FILE
      ? { value: env.FHIR_ML_SMART_PRIVATE_KEY_FILE, from: 'FHIR_ML_SMART_PRIVATE_KEY_FILE' }
      : fileAuth.privateKeyFile !== undefined
        ? { value: fromFile(fileAuth.privateKeyFile), from: 'fhir.auth.privateKeyFile' }
        : {},
    kid: smartSetting('FHIR_ML_SMART_KID', 'kid'),
    alg: smartSetting('FHIR_ML_SMART_ALG', 'alg'),
    scopes: smartSetting('FHIR_ML_SMART_SCOPES', 'scopes'),
    tokenEndpoint: smartSetting('FHIR_ML_SMART_TOKEN_ENDPOINT', 'tokenEndpoint'),
  };
  const smartGiven = Object.values(smart).find((v) => v.from)?.from;
  // The key is read when the first token is needed; an unreadable file is a configuration problem
  // reported now with the others (as for a token file), not a failed run later.
  const keyFile = smart.privateKeyFile;
  if (typeof keyFile.value === 'string' && keyFile.value) {
    try {
      accessSync(keyFile.value, constants.R_OK);
    } catch (err) {
      const where = keyFile.from === 'fhir.auth.privateKeyFile' ? `${fileLabel}: fhir.auth.privateKeyFile` : keyFile.from!;
      problems.push(`${where}: the SMART private key file ${keyFile.value} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  const kinds = [
    token.from && `a bearer token (${token.from})`,
    basicGiven && `basic credentials (${basicGiven})`,
    smartGiven && `SMART Backend Services settings (${smartGiven})`,
  ].filter((k): k is string => !!k);
  if (kinds.length > 1) {
    problems.push(`fhir.auth: ${kinds.join(' and ')} are set; set only one kind of authentication`);
  }
  const explicitType = env.FHIR_ML_AUTH ?? (typeof fileAuth.type === 'string' ? fileAuth.type : undefined);
  const typeFrom = env.FHIR_ML_AUTH ? 'FHIR_ML_AUTH' : 'fhir.auth.type';
  const AUTH_TYPES = ['none', 'bearer', 'basic', 'smart'];
  if (explicitType !== undefined && !AUTH_TYPES.includes(explicitType)) problems.push(`fhir.auth.type (from ${typeFrom}): must be none, bearer, basic or smart`);
  const authType =
    explicitType !== undefined && AUTH_TYPES.includes(explicitType) ? explicitType : token.from ? 'bearer' : basicGiven ? 'basic' : smartGiven ? 'smart' : 'none';
  const given = token.from ?? basicGiven ?? smartGiven;
  if (explicitType === 'none' && given) problems.push(`fhir.auth: ${typeFrom} is none but credentials are set (${given})`);
  if (explicitType === 'bearer' && !token.from && given) problems.push(`fhir.auth: ${typeFrom} is bearer but other credentials are set (${given})`);
  if (explicitType === 'basic' && !basicGiven && given) problems.push(`fhir.auth: ${typeFrom} is basic but other credentials are set (${given})`);
  if (explicitType === 'smart' && !smartGiven && given) problems.push(`fhir.auth: ${typeFrom} is smart but other credentials are set (${given})`);
  const smartScopes = smart.scopes.value;
  setIn(
    candidate,
    ['fhir', 'auth'],
    authType === 'bearer'
      ? { type: 'bearer', token: token.value ?? '' }
      : authType === 'basic'
        ? { type: 'basic', username: username.value ?? '', password: password.value ?? '' }
        : authType === 'smart'
          ? Object.fromEntries(
              Object.entries({
                type: 'smart',
                clientId: smart.clientId.value ?? '',
                privateKeyFile: smart.privateKeyFile.value ?? '',
                kid: smart.kid.value,
                alg: smart.alg.value,
                // Space-separated in the environment (as in an OAuth scope parameter), a list or a string in the file.
                scopes: typeof smartScopes === 'string' ? smartScopes.split(/\s+/).filter(Boolean) : smartScopes,
                tokenEndpoint: smart.tokenEndpoint.value,
              }).filter(([, v]) => v !== undefined),
            )
          : { type: authType },
  );
  origin.set('fhir.auth.type', explicitType ? typeFrom : 'inferred from the credentials given');
  setIn(candidate, ['log', 'fhirClientTracing'], /fhir-kit-client|^\*$|,\*/.test(env.DEBUG ?? ''));

  const parsed = configSchema.safeParse(candidate);
  if (!parsed.success) {
    for (const i of parsed.error.issues) {
      const at = i.path.join('.') || '(config)';
      if (unreadable.has(at)) continue;
      const from = origin.get(at) ?? origin.get(i.path.slice(0, 3).join('.'));
      // Values are never echoed: zod's messages name the rule broken, not the input.
      problems.push(`${at}${from && from !== 'default' && !at.startsWith('fhir.auth') ? ` (from ${from})` : ''}: ${i.message}`);
    }
  }
  if (problems.length) {
    throw new AdapterError('config-invalid', `invalid configuration (${problems.length} problem${problems.length > 1 ? 's' : ''}):\n  - ${problems.join('\n  - ')}`, {
      details: { problems },
    });
  }
  return parsed.data!;
}

/** A loggable view of the configuration: secrets and URL credentials removed. */
export function describeConfig(config: AdapterConfig): Record<string, unknown> {
  let url: string | undefined;
  if (config.fhir.url) {
    const u = new URL(config.fhir.url);
    url = `${u.protocol}//${u.host}${u.pathname}`;
  }
  return { ...config, fhir: { ...config.fhir, url, auth: { type: config.fhir.auth.type } } };
}

/** Where the shared public test datasets are expected (FHIR_ML_SHARED_DATASETS, else ../shared/datasets beside the package). */
export function sharedDatasetsPath(env: Env = process.env): string {
  return env.FHIR_ML_SHARED_DATASETS ?? path.resolve(PACKAGE_ROOT, '..', 'shared', 'datasets');
}

/** The shared datasets folder when it exists (present in CI, absent on a user's clone). */
export function sharedDatasetsDir(env: Env = process.env): string | undefined {
  const dir = sharedDatasetsPath(env);
  return existsSync(dir) ? dir : undefined;
}
