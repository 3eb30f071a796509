import { performance } from 'node:perf_hooks';
import type { Clock } from '../core/clock.js';
import { AdapterError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { AuthProvider } from './auth/provider.js';
import { classifyFailure, type AttemptFailure, type Operation } from './classify.js';
import { recordExchange, type ExchangeEvent } from './traffic.js';

/**
 * The HTTP exchange under every FHIR call: a concurrency slot, auth headers, a per-attempt timeout, and
 * retries with capped exponential backoff and full jitter (or the server's Retry-After, capped).
 *
 * What may be sent again depends on the request (`Exchange.retry`):
 * - reads and searches are resent after any transient failure;
 * - a write is resent as it is only when the server certainly did not act on it (connection refused,
 *   401, 429, 503). After any other transient failure (500, 502, 504, timeout, connection lost) its
 *   outcome is unknown: it is resent only by a caller that can read back what landed (`retry` as a
 *   function), and only what the read-back shows missing.
 *
 * The race of a resend with an attempt still committing: an attempt whose response was lost may still be
 * running on the server (our timeout fired, a proxy cut the connection). A read-back that runs before
 * it commits sees nothing, and the resend then runs beside it. Conditional creates (`ifNoneExist`) are
 * not serialised by every server, so that window could let two copies of a resource in. It is kept
 * small: after a timeout or a lost connection the read-back waits at least `unknownOutcomeSettleMs`
 * (default 1 s) on top of the backoff, by which time a server that is merely slow has finished; a 5xx
 * answer means the server is done with the request, so no wait beyond the backoff is needed. The
 * embedded server serialises transactions, and writes under derived ids (PUT) cannot duplicate at
 * all; the writer logs any identifier it finds twice (see writeback/writer.ts).
 *
 * Log lines and exchange events carry the operation, resource type, status, attempt and duration only:
 * never URLs (search query strings carry patient ids), bodies or credentials.
 */

export type { ExchangeEvent };

export interface TransportOptions {
  auth: AuthProvider;
  /** Per attempt, covering connect, headers and body. */
  timeoutMs: number;
  /** Retries after the first attempt (a 401 replay is not counted). */
  maxRetries: number;
  /** delay = random(0, min(maxMs, baseMs * 2^(retry-1))). */
  backoff: { baseMs: number; maxMs: number };
  /** Upper bound on a server's Retry-After. */
  maxRetryAfterMs: number;
  /** Least wait before reading back a write whose connection was lost or timed out. */
  unknownOutcomeSettleMs: number;
  /** Requests in flight across this transport. */
  concurrency: number;
  clock: Clock;
  logger: Logger;
  /** Source of jitter in [0, 1). */
  random: () => number;
  /** Called once per HTTP attempt. */
  onExchange?: (event: ExchangeEvent) => void;
}

/** What one attempt gets: its own abort signal and the auth headers. */
export interface AttemptInit {
  signal: AbortSignal;
  /** fhir-kit-client defaults keepalive to true, which caps request bodies at 64 KiB (transactions exceed that). */
  keepalive: false;
  /** A redirect never carries the Authorization header elsewhere. */
  redirect: 'manual';
  headers: Record<string, string>;
}

/**
 * After an attempt whose outcome is unknown (and the backoff): reads back what landed and resolves
 * `'resend'` to send again (the caller may have narrowed what is sent), or `{ settled }` when nothing
 * needs sending any more.
 */
export type ReadBack<T> = () => Promise<'resend' | { settled: T }>;

export interface Exchange<T> {
  op: Operation;
  /** Sends one attempt. */
  send(init: AttemptInit): Promise<T>;
  /** 'idempotent' (reads), 'unsent-only' (writes that cannot be read back) or a read-back (see ReadBack). */
  retry: 'idempotent' | 'unsent-only' | ReadBack<T>;
  /** The HTTP status of a successful result, for exchange events. */
  statusOf?: (value: T) => number | undefined;
  /** Per-attempt timeout for this request, instead of the transport's (a bulk file streams far longer than a FHIR call). */
  timeoutMs?: number;
}

export class Transport {
  private readonly slots: Semaphore;
  private readonly logger: Logger;

  constructor(private readonly options: TransportOptions) {
    this.slots = new Semaphore(options.concurrency);
    this.logger = options.logger;
  }

  async execute<T>(exchange: Exchange<T>): Promise<T> {
    const { op } = exchange;
    const { clock, maxRetries } = this.options;
    let retries = 0;
    let replayedAfter401 = false;
    for (let attempt = 1; ; attempt++) {
      // Credentials first, outside the slot and the timer: a token refresh must not count against the
      // attempt's timeout nor hold a slot other requests could use.
      const headers = await this.options.auth.headers();
      const started = performance.now();
      let failure: AttemptFailure;
      await this.slots.acquire();
      const controller = new AbortController();
      const timeoutMs = exchange.timeoutMs ?? this.options.timeoutMs;
      const timer = setTimeout(() => controller.abort(), timeoutMs);
      try {
        const result = await exchange.send({ signal: controller.signal, keepalive: false, redirect: 'manual', headers });
        const durationMs = Math.round(performance.now() - started);
        this.emit({ op: op.name, resourceType: op.resourceType, attempt, status: exchange.statusOf?.(result), outcome: 'ok', durationMs });
        this.logger.debug({ op: op.name, resourceType: op.resourceType, attempt, durationMs }, 'fhir request ok');
        return result;
      } catch (raw) {
        failure = classifyFailure(raw, { timedOut: controller.signal.aborted, op, timeoutMs, now: clock.now() });
      } finally {
        clearTimeout(timer);
        this.slots.release();
      }

      const durationMs = Math.round(performance.now() - started);
      const error = failure.error;
      const event = { op: op.name, resourceType: op.resourceType, attempt, status: error.status, durationMs };
      const logFields = { ...event, code: error.code, kind: error.details?.kind };

      if (failure.unauthorized) {
        // One refresh and one replay per request; a second 401 stands.
        let renewed = false;
        if (!replayedAfter401) {
          try {
            renewed = await this.options.auth.refresh(headers);
          } catch (err) {
            this.emit({ ...event, outcome: 'failed' });
            throw err;
          }
        }
        if (renewed) {
          replayedAfter401 = true;
          this.emit({ ...event, outcome: 'retry' });
          this.logger.info(logFields, 'fhir request unauthorized; replaying with renewed credentials');
          continue;
        }
        this.emit({ ...event, outcome: 'failed' });
        this.logger.warn(logFields, 'fhir request unauthorized');
        throw replayedAfter401 ? refusedAfterRenewal(error, op, this.options.auth.kind, attempt) : withAttempts(error, attempt);
      }

      if (!error.transient) {
        this.emit({ ...event, outcome: 'failed' });
        this.logger.warn(logFields, 'fhir request failed');
        throw withAttempts(error, attempt);
      }

      const readBack = typeof exchange.retry === 'function' ? exchange.retry : undefined;
      const resendAsIs = exchange.retry === 'idempotent' || failure.unprocessed;
      if (!resendAsIs && !readBack) {
        this.emit({ ...event, outcome: 'failed' });
        this.logger.warn(logFields, 'fhir write failed with its outcome unknown; not resent');
        throw outcomeUnknown(error, op, attempt);
      }

      const exhausted = retries >= maxRetries;
      // A write whose last attempt's outcome is unknown is read back even when no retry is left: its
      // response may have been lost after the server committed it.
      if (exhausted && (resendAsIs || !readBack)) {
        this.emit({ ...event, outcome: 'failed' });
        this.logger.warn(logFields, 'fhir request failed; retries exhausted');
        throw retriesExhausted(error, op, attempt);
      }
      if (!exhausted) retries += 1;
      this.emit({ ...event, outcome: 'retry' });
      let delayMs = this.delayBeforeRetry(retries, error.retryAfterMs);
      const connectionLost = error.details?.kind === 'timeout' || error.details?.kind === 'network';
      if (!resendAsIs && connectionLost) delayMs = Math.max(delayMs, this.options.unknownOutcomeSettleMs);
      this.logger.warn({ ...logFields, delayMs }, resendAsIs ? 'fhir request failed; retrying' : 'fhir write outcome unknown; reading back');
      await clock.sleep(delayMs);

      if (!resendAsIs && readBack) {
        const decision = await readBack();
        if (decision !== 'resend') {
          this.logger.info({ op: op.name, resourceType: op.resourceType, attempts: attempt }, 'fhir write found applied on read-back');
          return decision.settled;
        }
        if (exhausted) throw retriesExhausted(error, op, attempt);
      }
    }
  }

  /** Retry-After when the server sent one (capped), else capped exponential backoff with full jitter. */
  private delayBeforeRetry(retry: number, retryAfterMs: number | undefined): number {
    if (retryAfterMs !== undefined) return Math.min(retryAfterMs, this.options.maxRetryAfterMs);
    const { baseMs, maxMs } = this.options.backoff;
    const ceiling = Math.min(maxMs, baseMs * 2 ** (retry - 1));
    return Math.floor(this.options.random() * ceiling);
  }

  private emit(event: ExchangeEvent): void {
    recordExchange(event);
    const observer = this.options.onExchange;
    if (!observer) return;
    try {
      observer(event);
    } catch (err) {
      // An observer (metrics, counters) must never break a request.
      this.logger.warn({ errName: (err as Error)?.name }, 'exchange observer threw');
    }
  }
}

function attemptsText(attempts: number): string {
  return attempts === 1 ? '1 attempt' : `${attempts} attempts`;
}

function withAttempts(error: AdapterError, attempts: number): AdapterError {
  if (attempts === 1) return error;
  return new AdapterError(error.code, `${error.message} (on attempt ${attempts})`, {
    transient: error.transient,
    cause: error,
    status: error.status,
    retryAfterMs: error.retryAfterMs,
    details: { ...error.details, attempts },
  });
}

function retriesExhausted(error: AdapterError, op: Operation, attempts: number): AdapterError {
  return new AdapterError(
    'fhir-unavailable',
    `FHIR server unavailable: ${op.name} ${op.resourceType} failed on ${attempts === 1 ? 'its only attempt (no retries configured)' : `all ${attempts} attempts`} (last: ${error.message})`,
    { transient: true, cause: error, status: error.status, retryAfterMs: error.retryAfterMs, details: { ...error.details, attempts } },
  );
}

function outcomeUnknown(error: AdapterError, op: Operation, attempts: number): AdapterError {
  return new AdapterError(
    'fhir-unavailable',
    `FHIR ${op.name} ${op.resourceType} failed after ${attemptsText(attempts)} with its outcome unknown (${error.message}); not resent, because the server may have applied it`,
    { transient: true, cause: error, status: error.status, details: { ...error.details, attempts, outcome: 'unknown' } },
  );
}

function refusedAfterRenewal(error: AdapterError, op: Operation, kind: string, attempts: number): AdapterError {
  return new AdapterError(
    'fhir-auth',
    `FHIR server refused ${op.name} ${op.resourceType} (HTTP 401) again with renewed ${kind} credentials, after ${attemptsText(attempts)}; check that the client is authorised for this server and its scopes cover ${op.resourceType}`,
    { transient: false, cause: error, status: error.status, details: { ...error.details, attempts } },
  );
}

/** Counting semaphore: at most `limit` holders; waiters are served in arrival order. */
class Semaphore {
  private available: number;
  private readonly waiters: (() => void)[] = [];

  constructor(limit: number) {
    this.available = limit;
  }

  acquire(): Promise<void> {
    if (this.available > 0) {
      this.available -= 1;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    // Hand the slot straight to the next waiter so a newcomer cannot overtake it.
    if (next) next();
    else this.available += 1;
  }
}
