/**
 * The service's parts: an incremental run with 1% of the patients changed against a full run (through
 * the service's change scan and batch jobs), and the job throughput of its queue on PostgreSQL and on the
 * embedded PGlite default; Bulk Data ingestion through staging.
 */
import type { BenchContext, BenchPart, GoalRow } from '../part.js';
import { goalRows } from '../part.js';
import { runBulkBench } from './bulk.js';
import { incrementalBench } from './incremental.js';
import { jobThroughputBench } from './jobs.js';

export const incrementalPart: BenchPart = {
  name: 'incremental',
  description: 'service: incremental run with 1% of 5,000 patients changed, time against the full run',
  run: async (ctx: BenchContext): Promise<GoalRow[]> => goalRows(await incrementalBench({ log: ctx.log })),
};

export const jobsPart: BenchPart = {
  name: 'jobs',
  description: 'service: job throughput through pg-boss (batches/s) on PostgreSQL and on the embedded default',
  run: async (ctx: BenchContext): Promise<GoalRow[]> => goalRows(await jobThroughputBench({ log: ctx.log })),
};

export const bulkPart: BenchPart = {
  name: 'bulk',
  description: 'Bulk Data ingestion: NDJSON resources/s parsed, checked and staged; peak RSS at 1,000 vs 20,000 patients',
  run: async (ctx: BenchContext): Promise<GoalRow[]> => goalRows(await runBulkBench({ log: ctx.log })),
};
