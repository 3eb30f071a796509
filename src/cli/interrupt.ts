import { stdout } from './output.js';

export type InterruptCause = 'SIGINT' | 'SIGTERM' | 'EPIPE';

let exitAtOnce = false;
/** True when a command gave up on work still in flight (an abandoned batch): the process exits without waiting for it. */
export function mustExitAtOnce(): boolean {
  return exitAtOnce;
}

/**
 * Turns SIGINT/SIGTERM and a closed standard output into the run loop's two signals: the first asks it
 * to stop taking batches (the batch in progress is finished and counted); a second signal stops
 * waiting for that batch (it is abandoned, not counted; a re-run with the same as-of completes it).
 */
export function interruptions(): { stop: AbortSignal; abandon: AbortSignal; readonly cause: InterruptCause | undefined; dispose(): void } {
  const stop = new AbortController();
  const abandon = new AbortController();
  let cause: InterruptCause | undefined;
  const on = (why: InterruptCause) => {
    if (!stop.signal.aborted) {
      cause = why;
      stop.abort();
      if (why !== 'EPIPE') process.stderr.write(`fhir-ml: ${why}: finishing the batch in progress, then stopping (send it again to stop at once)\n`);
    } else if (why !== 'EPIPE') {
      exitAtOnce = true;
      abandon.abort();
    }
  };
  const onInt = () => on('SIGINT');
  const onTerm = () => on('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  const offClose = stdout.onClose(() => on('EPIPE'));
  return {
    stop: stop.signal,
    abandon: abandon.signal,
    get cause() {
      return cause;
    },
    dispose() {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      offClose();
    },
  };
}
