import { z } from 'zod';

/**
 * How a source's data is pulled (`pull:` of a source in the sources file; `--pull-strategy` and
 * FHIR_ML_PULL_STRATEGY for the CLI), as a zod schema the configuration embeds:
 *
 * - `search`: one search per resource type per batch, many patients per request (the default);
 * - `per-patient`: exactly one patient per search request (`patient=`/`subject=`), with the mapping's
 *   Observation categories, for FHIR APIs that refuse searches over several patients;
 * - `bulk`: a Bulk Data `$export` of the population, staged in the database, then fed to the pipeline in
 *   patient batches;
 * - `auto`: chosen from the server's CapabilityStatement and a probe (see strategy.ts).
 */

export const PULL_STRATEGIES = ['search', 'per-patient', 'bulk', 'auto'] as const;
export type PullStrategyName = (typeof PULL_STRATEGIES)[number];

const origin = z.string().refine((o) => {
  try {
    const u = new URL(o);
    return (u.protocol === 'https:' || u.protocol === 'http:') && u.origin === o.replace(/\/+$/, '');
  } catch {
    return false;
  }
}, 'must be an origin such as https://files.example.org (scheme, host and port only)');

export const bulkPullSchema = z.strictObject({
  /** Export level: `patient` (every Patient's compartment), `group` (the source's Group population), `system`. Default: `group` for a Group population, else `patient`. */
  level: z.enum(['patient', 'group', 'system']).optional(),
  /** Send `_typeFilter` (the searches' codes, categories and dates), so only what the models read is exported. Off for servers without `_typeFilter`. */
  typeFilter: z.boolean().default(true),
  /** Origins besides the FHIR server's that may receive the access token with export files. */
  trustedOrigins: z.array(origin).default([]),
  /**
   * How long staged data is kept after a run (ISO 8601 duration). `PT0S` (default): purged when the run
   * ends. Longer: kept, so the next run exports only what changed (`_since`) and applies it.
   */
  retention: z.string().regex(/^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?$/, 'must be an ISO 8601 duration such as PT0S, P1D or P7D').default('PT0S'),
  /** Wait between status polls when the server gives no usable Retry-After (ms). */
  pollIntervalMs: z.number().int().min(10).max(600_000).default(2000),
  /** The longest wait between status polls, whatever Retry-After says (ms). */
  maxPollWaitMs: z.number().int().min(10).max(3_600_000).default(60_000),
  /**
   * Give up waiting for an export after this long (ms); a later run resumes it. In the service, the
   * selection step that exports may take this long plus an hour for the files (22 h at most: its job
   * expires within a day).
   */
  maxExportWaitMs: z.number().int().min(1000).max(22 * 3_600_000).default(6 * 3_600_000),
  /** Per-attempt timeout of one file download (ms). */
  downloadTimeoutMs: z.number().int().min(1000).default(30 * 60_000),
});
export type BulkPullOptions = z.infer<typeof bulkPullSchema>;

export const pullOptionsSchema = z.strictObject({
  strategy: z.enum(PULL_STRATEGIES).default('search'),
  /** per-patient: patients pulled at the same time (each with its own few searches). */
  patientConcurrency: z.number().int().min(1).max(64).default(4),
  bulk: bulkPullSchema.default(bulkPullSchema.parse({})),
});
export type PullOptionsConfig = z.infer<typeof pullOptionsSchema>;

export const DEFAULT_PULL_OPTIONS: PullOptionsConfig = pullOptionsSchema.parse({});
