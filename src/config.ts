import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { AdapterError } from './core/errors.js';
import { packagePath } from './core/paths.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from './writeback/identifiers.js';

/**
 * Configuration: CLI flags over environment variables (FHIR_ML_*) over defaults. Validated once at
 * start; every problem is reported at once. Secrets come only from the environment or files and are
 * never logged (see `describeConfig`).
 */
const authSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('none') }),
  z.strictObject({ type: z.literal('bearer'), token: z.string().min(1, 'bearer auth needs a token (FHIR_ML_TOKEN or FHIR_ML_TOKEN_FILE)') }),
  z.strictObject({
    type: z.literal('basic'),
    username: z.string().min(1, 'basic auth needs FHIR_ML_USERNAME'),
    password: z.string().min(1, 'basic auth needs FHIR_ML_PASSWORD or FHIR_ML_PASSWORD_FILE'),
  }),
]);

export const configSchema = z.strictObject({
  fhirUrl: z
    .url({ protocol: /^https?$/, error: 'must be an http(s) URL such as https://fhir.example.org/R4' })
    .optional(),
  auth: authSchema,
  identifierSystem: z
    .url({ error: 'must be an absolute URI' })
    .refine((s) => !/[?&#|]/.test(s), 'must not contain ?, &, # or | (it is used inside conditional-create queries)'),
  modelsDir: z.string().min(1),
  mappingsDir: z.string().min(1),
  batchSize: z.number().int().min(1).max(1000),
  concurrency: z.number().int().min(1).max(64),
  timeoutMs: z.number().int().min(100),
  maxRetries: z.number().int().min(0).max(20),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
});
export type AdapterConfig = z.infer<typeof configSchema>;

type Env = Record<string, string | undefined>;

/**
 * The optional config file (YAML; `--config FILE` or FHIR_ML_CONFIG). It holds no secrets: tokens and
 * passwords come from the environment, or from files the config names (`tokenFile`, `passwordFile`).
 */
const configFileSchema = z.strictObject({
  fhirUrl: z.string().optional(),
  auth: z
    .strictObject({
      type: z.enum(['none', 'bearer', 'basic']).optional(),
      tokenFile: z.string().optional(),
      username: z.string().optional(),
      passwordFile: z.string().optional(),
    })
    .optional(),
  identifierSystem: z.string().optional(),
  modelsDir: z.string().optional(),
  mappingsDir: z.string().optional(),
  batchSize: z.number().optional(),
  concurrency: z.number().optional(),
  timeoutMs: z.number().optional(),
  maxRetries: z.number().optional(),
  logLevel: z.string().optional(),
});
type ConfigFile = z.infer<typeof configFileSchema>;

export function readConfigFile(file: string): ConfigFile {
  let data: unknown;
  try {
    data = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    // Never echo the parser's message: it quotes the offending line, which may hold a secret.
    const pos = (err as { linePos?: { line: number; col: number }[] }).linePos?.[0];
    const where = pos ? `YAML syntax error at line ${pos.line}, column ${pos.col}` : ((err as NodeJS.ErrnoException).code ?? 'unreadable');
    throw new AdapterError('config-invalid', `config file ${file} cannot be read: ${where}`);
  }
  const parsed = configFileSchema.safeParse(data ?? {});
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => {
      const at = i.path.join('.') || '(file)';
      const secret = i.code === 'unrecognized_keys' && i.keys.some((k) => /token|password|secret/i.test(k));
      return `${file}: ${at}: ${secret ? 'secrets do not belong in the config file; use the environment or tokenFile/passwordFile' : i.message}`;
    });
    throw new AdapterError('config-invalid', `invalid config file (${problems.length} problem${problems.length > 1 ? 's' : ''}):\n  - ${problems.join('\n  - ')}`, {
      details: { problems },
    });
  }
  return parsed.data;
}

function readSecretFile(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new AdapterError('config-invalid', `${what}: the file ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

function secret(env: Env, name: string): string | undefined {
  const file = env[`${name}_FILE`];
  if (file) return readSecretFile(file, `${name}_FILE`);
  return env[name];
}

function num(value: string | number | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  return typeof value === 'number' ? value : Number(value);
}

export interface ConfigOverrides {
  /** A YAML config file; FHIR_ML_CONFIG when absent. */
  configFile?: string;
  fhirUrl?: string;
  batchSize?: number | string;
  concurrency?: number | string;
  timeoutMs?: number | string;
  logLevel?: string;
}

export function loadConfig(overrides: ConfigOverrides = {}, env: Env = process.env): AdapterConfig {
  const configFile = overrides.configFile ?? env.FHIR_ML_CONFIG;
  const file: ConfigFile = configFile ? readConfigFile(configFile) : {};
  // Paths in a config file are relative to the file, not to wherever the command is run from.
  const fromFile = (p: string | undefined) => (p && configFile ? path.resolve(path.dirname(configFile), p) : p);
  if (file.auth) file.auth = { ...file.auth, tokenFile: fromFile(file.auth.tokenFile), passwordFile: fromFile(file.auth.passwordFile) };
  file.modelsDir = fromFile(file.modelsDir);
  file.mappingsDir = fromFile(file.mappingsDir);
  const fileSecret = (path: string | undefined, what: string) => (path ? readSecretFile(path, what) : undefined);
  const token = secret(env, 'FHIR_ML_TOKEN') ?? fileSecret(file.auth?.tokenFile, 'auth.tokenFile');
  const username = env.FHIR_ML_USERNAME ?? file.auth?.username;
  const password = secret(env, 'FHIR_ML_PASSWORD') ?? fileSecret(file.auth?.passwordFile, 'auth.passwordFile');
  const authType = env.FHIR_ML_AUTH ?? file.auth?.type ?? (token ? 'bearer' : username ? 'basic' : 'none');
  const auth =
    authType === 'bearer'
      ? { type: 'bearer', token: token ?? '' }
      : authType === 'basic'
        ? { type: 'basic', username: username ?? '', password: password ?? '' }
        : { type: authType };
  const candidate = {
    fhirUrl: overrides.fhirUrl ?? env.FHIR_ML_FHIR_URL ?? file.fhirUrl,
    auth,
    identifierSystem: env.FHIR_ML_IDENTIFIER_SYSTEM ?? file.identifierSystem ?? DEFAULT_IDENTIFIER_SYSTEM,
    modelsDir: env.FHIR_ML_MODELS_DIR ?? file.modelsDir ?? packagePath('models'),
    mappingsDir: env.FHIR_ML_MAPPINGS_DIR ?? file.mappingsDir ?? packagePath('mappings'),
    batchSize: num(overrides.batchSize) ?? num(env.FHIR_ML_BATCH_SIZE) ?? file.batchSize ?? 100,
    concurrency: num(overrides.concurrency) ?? num(env.FHIR_ML_CONCURRENCY) ?? file.concurrency ?? 4,
    timeoutMs: num(overrides.timeoutMs) ?? num(env.FHIR_ML_TIMEOUT_MS) ?? file.timeoutMs ?? 30_000,
    maxRetries: num(env.FHIR_ML_MAX_RETRIES) ?? file.maxRetries ?? 5,
    logLevel: overrides.logLevel ?? env.FHIR_ML_LOG_LEVEL ?? file.logLevel ?? 'warn',
  };
  const parsed = configSchema.safeParse(candidate);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(config)'}: ${i.message}`);
    throw new AdapterError('config-invalid', `invalid configuration (${problems.length} problem${problems.length > 1 ? 's' : ''}):\n  - ${problems.join('\n  - ')}`, {
      details: { problems },
    });
  }
  return parsed.data;
}

/** A loggable view of the configuration: secrets and URL credentials removed. */
export function describeConfig(config: AdapterConfig): Record<string, unknown> {
  let fhirUrl: string | undefined;
  if (config.fhirUrl) {
    const u = new URL(config.fhirUrl);
    fhirUrl = `${u.protocol}//${u.host}${u.pathname}`;
  }
  return { ...config, fhirUrl, auth: { type: config.auth.type } };
}
