import type { Database, Queryable } from './database.js';
import { SCHEMA } from './migrations.js';

/**
 * Per source and model: the instant up to which changes have been scored. It moves only when every batch
 * of a run succeeded (in the transaction that completes the run), and never backwards.
 */
export class WatermarkStore {
  constructor(private readonly db: Database) {}

  async get(sourceId: string, modelIds: string[]): Promise<Map<string, Date>> {
    const { rows } = await this.db.query<{ model_id: string; watermark: string | Date }>(
      `SELECT model_id, watermark FROM ${SCHEMA}.watermarks WHERE source_id = $1 AND model_id = ANY ($2::text[])`,
      [sourceId, modelIds],
    );
    return new Map(rows.map((r) => [r.model_id, new Date(r.watermark)]));
  }

  /** The run that set each model's watermark (its selection says what it read, e.g. its Bulk Data export). */
  async runIds(sourceId: string, modelIds: string[]): Promise<Map<string, string>> {
    const { rows } = await this.db.query<{ model_id: string; run_id: string | null }>(
      `SELECT model_id, run_id::text AS run_id FROM ${SCHEMA}.watermarks WHERE source_id = $1 AND model_id = ANY ($2::text[])`,
      [sourceId, modelIds],
    );
    return new Map(rows.filter((r) => r.run_id).map((r) => [r.model_id, r.run_id!]));
  }

  async advance(tx: Queryable, sourceId: string, modelIds: string[], watermark: Date, runId: string): Promise<void> {
    await tx.query(
      `INSERT INTO ${SCHEMA}.watermarks (source_id, model_id, watermark, run_id)
       SELECT $1, m, $3, $4 FROM unnest($2::text[]) AS m
       ON CONFLICT (source_id, model_id) DO UPDATE SET watermark = EXCLUDED.watermark, run_id = EXCLUDED.run_id, updated_at = now()
       WHERE ${SCHEMA}.watermarks.watermark < EXCLUDED.watermark`,
      [sourceId, modelIds, watermark, runId],
    );
  }
}
