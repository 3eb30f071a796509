import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * Request counts per unit of work (a sync run, a batch job), whoever makes the requests: the pull, the
 * writer, the Device registration, patient listing, retries and read-backs. A tally is bound to the
 * async context of the work it measures, so concurrent runs sharing one client each count only their
 * own exchanges. Token and discovery requests of SMART auth go to the authorization server and are
 * not FHIR requests: they are left out.
 */
export interface Tally {
  /** HTTP exchanges with the FHIR server (every attempt, so a retried request counts each time). */
  requests: number;
  /** Of those, attempts after the first of a request (retries, 401 replays, read-backs). */
  retries: number;
}

/** One HTTP attempt, as the transport reports it (never a URL, a body or a credential). */
export interface ExchangeEvent {
  op: string;
  resourceType: string;
  /** 1 for the first attempt of a request, 2 for its first retry, ... */
  attempt: number;
  /** The HTTP status, when the server answered. */
  status?: number;
  /**
   * `ok`: this attempt succeeded. `retry`: it failed and the request goes on (a retry, a replay after a
   * 401, or a read-back of a write whose outcome is unknown). `failed`: its failure ends the request.
   */
  outcome: 'ok' | 'retry' | 'failed';
  durationMs: number;
}

const scope = new AsyncLocalStorage<readonly Tally[]>();

export function newTally(): Tally {
  return { requests: 0, retries: 0 };
}

/** Runs `work` with `tally` counting every FHIR exchange it makes; tallies of enclosing work count too. */
export function tallied<T>(tally: Tally, work: () => Promise<T>): Promise<T> {
  return scope.run([...(scope.getStore() ?? []), tally], work);
}

/** Called by the transport for each HTTP attempt. */
export function recordExchange(event: ExchangeEvent): void {
  const tallies = scope.getStore();
  if (!tallies || event.op === 'token' || event.op === 'discovery') return;
  for (const t of tallies) {
    t.requests++;
    if (event.attempt > 1) t.retries++;
  }
}
