import { createHash } from 'node:crypto';
import pino, { type Logger } from 'pino';

/**
 * Structured JSON logs. Patient data rules: log counts, durations, resource types and hashed ids;
 * never resource bodies, search query strings, names or tokens. The redact list is a second line
 * of defence for fields that must never leave the process even if someone logs an object carelessly.
 */
export function createLogger(options: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const level = options.level ?? process.env.FHIR_ML_LOG_LEVEL ?? 'info';
  return pino(
    {
      level,
      base: { service: 'fhir-ml-adapter' },
      redact: {
        paths: ['token', 'authorization', 'headers.authorization', '*.authorization', 'password', 'resource', 'body', 'url', 'query'],
        censor: '[redacted]',
      },
    },
    (options.destination as pino.DestinationStream | undefined) ?? pino.destination(2),
  );
}

/** Short, stable pseudonym for an identifier, safe for logs. */
export function hashId(id: string): string {
  return createHash('sha256').update(id).digest('hex').slice(0, 12);
}

export const silentLogger: Logger = pino({ level: 'silent' });

export type { Logger };
