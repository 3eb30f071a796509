import { loadConfig, type AdapterConfig, type ConfigOverrides } from '../config.js';
import { AdapterError } from '../core/errors.js';
import { createLogger, type Logger } from '../core/log.js';
import { FhirClient } from '../fhir/client.js';

/** What every command starts from: validated config, a logger (stderr, JSON) and, when needed, a FHIR client. */
export interface CommandContext {
  config: AdapterConfig;
  logger: Logger;
}

let globalConfigFile: string | undefined;
/** Set from the global `--config FILE` option before any command runs. */
export function setConfigFile(file: string | undefined): void {
  globalConfigFile = file;
}

export function commandContext(overrides: ConfigOverrides = {}): CommandContext {
  const config = loadConfig({ configFile: globalConfigFile, ...overrides });
  return { config, logger: createLogger({ level: config.logLevel }) };
}

export function fhirClientFor(ctx: CommandContext, fhirUrl = ctx.config.fhirUrl): FhirClient {
  if (!fhirUrl) throw new AdapterError('input-invalid', 'no FHIR server given: use --fhir-url URL or FHIR_ML_FHIR_URL');
  return new FhirClient({
    baseUrl: fhirUrl,
    auth: fhirUrl === ctx.config.fhirUrl ? ctx.config.auth : { type: 'none' },
    timeoutMs: ctx.config.timeoutMs,
    maxRetries: ctx.config.maxRetries,
    concurrency: ctx.config.concurrency,
    logger: ctx.logger,
  });
}

/** Parses an --as-of value: a FHIR date or dateTime; a bare date means the end of that day, UTC. */
export function parseAsOf(value: string | undefined, now = new Date()): Date {
  if (value === undefined) return now;
  const m = /^(\d{4})-(\d{2})-(\d{2})(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?$/.exec(value);
  // A bare date means the whole of that day (UTC): data recorded on it counts.
  const date = m ? new Date(m[4] ? value : `${value}T23:59:59.999Z`) : new Date(NaN);
  // Reject dates that do not exist (2025-02-31) instead of letting them roll over into March.
  const day = m ? new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))) : undefined;
  const calendarOk = !!day && day.getUTCFullYear() === Number(m![1]) && day.getUTCMonth() + 1 === Number(m![2]) && day.getUTCDate() === Number(m![3]);
  if (Number.isNaN(date.getTime()) || !calendarOk) {
    throw new AdapterError('input-invalid', `--as-of "${value}" is not a date (YYYY-MM-DD) or dateTime with a time zone (2025-06-30T23:59:59Z)`);
  }
  return date;
}
