/**
 * Transitional: bench/ still imports `runSync` from here. The orchestrator lives in `./index.ts`
 * (run loop `run.ts`, batch step `batch.ts`, totals `totals.ts`); delete this file once bench/ imports
 * from there.
 */
export { runSync } from './run.js';
