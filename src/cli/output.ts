import { EXIT_OUTPUT_CLOSED } from '../core/error-mapping.js';

/**
 * Standard output for commands. When the reader goes away (`fhir-ml ... | head`), writing fails with
 * EPIPE: instead of a stack trace, further output is dropped and listeners are told, so a running
 * sync stops taking batches and the command ends quietly (exit 141, as a process ended by SIGPIPE).
 */
let closed = false;
let installed = false;
const listeners = new Set<() => void>();

function install(): void {
  if (installed) return;
  installed = true;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
    if (closed) return;
    closed = true;
    // A command that wrote its last output before the reader left learns it only now, after its exit
    // code was set: what it wrote was not all read, so it ends as a process ended by SIGPIPE would.
    if (!process.exitCode) process.exitCode = EXIT_OUTPUT_CLOSED;
    for (const listener of listeners) listener();
  });
}

export const stdout = {
  write(text: string): void {
    install();
    if (!closed) process.stdout.write(text);
  },
  /** True once the reader has gone away. */
  get closed(): boolean {
    return closed;
  },
  /** Calls `listener` when the reader goes away; returns a function that removes it. */
  onClose(listener: () => void): () => void {
    install();
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
};
