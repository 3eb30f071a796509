import v8 from 'node:v8';

/**
 * How much the V8 old generation may grow past what survived the last full collection before the next
 * one, in per cent (V8's `--heap-growing-percent`).
 *
 * A sync holds each pulled batch while it waits, is scored and is written, long enough for its
 * resources to outlive the young generation; after the batch they are garbage in the old generation.
 * V8's own rule lets the old generation grow up to four times its live size between full collections,
 * and it raises the factor the more is promoted, so the peak RSS of a run crept up with the number of
 * batches (measured with `npm run bench`: 231 MB at 1,000 patients, 305 MB at 5,000, 348 MB at 20,000)
 * although the heap after a full collection stayed at about 40 MB at every size. Bounding the growth
 * keeps the peak near the 1,000-patient figure: at 20,000 patients 234 MB at 50 %, 254 MB at 75 %,
 * 263 MB at 100 %, against 225 MB at 1,000; each step down costs some CPU in more, smaller full
 * collections of the small live heap (about 0.1-0.2 s per 5,000 patients from 100 % to 50 %).
 */
export const HEAP_GROWING_PERCENT = 75;

/**
 * Applies HEAP_GROWING_PERCENT to this process, unless node was started with its own
 * `--heap-growing-percent`. Called where a process starts syncing (`fhir-ml sync`; the sync worker of
 * the benchmark), not for every command: the embedded FHIR server holds all its data in the heap, where
 * more frequent full collections would cost more than they save.
 */
export function boundHeapGrowth(percent = HEAP_GROWING_PERCENT, execArgv: readonly string[] = process.execArgv): boolean {
  if (execArgv.some((a) => a.startsWith('--heap-growing-percent') || a.startsWith('--heap_growing_percent'))) return false;
  v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
  return true;
}
