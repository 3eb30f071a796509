import pino, { type Logger } from 'pino';

/**
 * Structured JSON logs. Patient data rules: log counts, durations, resource types and status codes;
 * never resource bodies, search query strings, names or tokens. The redact list is a second line
 * of defence for fields that must never leave the process even if someone logs an object carelessly.
 */
export function createLogger(options: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const level = options.level ?? 'info';
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

export const silentLogger: Logger = pino({ level: 'silent' });

export type { Logger };
