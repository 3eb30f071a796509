import { AsyncLocalStorage } from 'node:async_hooks';
import type { ExchangeEvent } from './transport.js';

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
