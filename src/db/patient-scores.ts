import type { Database, Queryable } from './database.js';
import { SCHEMA } from './migrations.js';

/**
 * Per source, model and patient: what the last written score was computed from (the input hash and the
 * model version) and for which as-of. Decides "no new RiskAssessment when nothing changed" (with
 * `decideWrite` in jobs/input-hash) and which patients the re-score interval brings back.
 */
export interface PatientScore {
  patientId: string;
  modelVersion: string;
  inputHash: string | null;
  lastAsOf: Date;
}

export interface PatientScoreUpdate {
  patientId: string;
  modelId: string;
  modelVersion: string;
  /** Null until the batch step exposes the input vector (see jobs/input-hash). */
  inputHash: string | null;
  asOf: Date;
}

export class PatientScoreStore {
  constructor(private readonly db: Database) {}

  async get(sourceId: string, modelId: string, patientIds: string[]): Promise<Map<string, PatientScore>> {
    if (!patientIds.length) return new Map();
    const { rows } = await this.db.query<{ patient_id: string; model_version: string; input_hash: string | null; last_as_of: string | Date }>(
      `SELECT patient_id, model_version, input_hash, last_as_of FROM ${SCHEMA}.patient_scores
       WHERE source_id = $1 AND model_id = $2 AND patient_id = ANY ($3::text[])`,
      [sourceId, modelId, patientIds],
    );
    return new Map(
      rows.map((r) => [r.patient_id, { patientId: r.patient_id, modelVersion: r.model_version, inputHash: r.input_hash, lastAsOf: new Date(r.last_as_of) }]),
    );
  }

  /** Records the scores a batch wrote (or found unchanged); a later as-of never goes back to an earlier one. */
  async record(tx: Queryable, sourceId: string, runId: string, updates: PatientScoreUpdate[]): Promise<void> {
    if (!updates.length) return;
    await tx.query(
      `INSERT INTO ${SCHEMA}.patient_scores (source_id, model_id, patient_id, model_version, input_hash, last_as_of, last_run_id)
       SELECT $1, u.model_id, u.patient_id, u.model_version, u.input_hash, u.as_of, $2
       FROM jsonb_to_recordset($3::jsonb) AS u(model_id text, patient_id text, model_version text, input_hash text, as_of timestamptz)
       ON CONFLICT (source_id, model_id, patient_id) DO UPDATE SET model_version = EXCLUDED.model_version,
         input_hash = COALESCE(EXCLUDED.input_hash, CASE WHEN ${SCHEMA}.patient_scores.model_version = EXCLUDED.model_version THEN ${SCHEMA}.patient_scores.input_hash END),
         last_as_of = EXCLUDED.last_as_of, last_run_id = EXCLUDED.last_run_id, updated_at = now()
       WHERE ${SCHEMA}.patient_scores.last_as_of <= EXCLUDED.last_as_of`,
      [
        sourceId,
        runId,
        JSON.stringify(updates.map((u) => ({ model_id: u.modelId, patient_id: u.patientId, model_version: u.modelVersion, input_hash: u.inputHash, as_of: u.asOf.toISOString() }))),
      ],
    );
  }

  /** Patients of a source whose last score for any of the models is older than `cutoff`. */
  async staleBefore(sourceId: string, modelIds: string[], cutoff: Date): Promise<string[]> {
    const { rows } = await this.db.query<{ patient_id: string }>(
      `SELECT DISTINCT patient_id FROM ${SCHEMA}.patient_scores WHERE source_id = $1 AND model_id = ANY ($2::text[]) AND last_as_of < $3 ORDER BY patient_id`,
      [sourceId, modelIds, cutoff],
    );
    return rows.map((r) => r.patient_id);
  }
}
