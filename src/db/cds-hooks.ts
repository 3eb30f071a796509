import type { Database } from './database.js';
import { SCHEMA } from './migrations.js';

/**
 * What the CDS Hooks service keeps: the cards it handed out (ids, model and band; no text, no names),
 * the feedback CDS Clients send on them (outcome, suggestion ids, override reason codes; never the
 * clinician's free-text comment), and the ids of the JWTs it accepted (each is accepted once, until its
 * expiry).
 */

export interface IssuedCard {
  uuid: string;
  serviceId: string;
  hookInstance: string;
  modelId: string;
  modelVersion: string;
  patientId: string;
  band?: string;
  probability?: number;
  suggestionIds: string[];
  issuer: string;
}

export interface FeedbackRecord {
  serviceId: string;
  card: string;
  outcome: 'accepted' | 'overridden';
  acceptedSuggestions: string[];
  overrideReason?: { system: string; code: string };
  hasComment: boolean;
  outcomeAt: Date;
  issuer: string;
}

export class CdsHooksStore {
  constructor(private readonly db: Database) {}

  /** Records a JWT id; false when the issuer already used it (a replay). Expired ids are forgotten. */
  async rememberJwtId(issuer: string, jti: string, expiresAt: Date): Promise<boolean> {
    await this.db.query(`DELETE FROM ${SCHEMA}.cds_jwt_ids WHERE expires_at < now() - interval '1 hour'`);
    const r = await this.db.query(`INSERT INTO ${SCHEMA}.cds_jwt_ids (issuer, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, [issuer, jti, expiresAt]);
    return r.rowCount === 1;
  }

  async recordCards(cards: IssuedCard[]): Promise<void> {
    for (const c of cards) {
      await this.db.query(
        `INSERT INTO ${SCHEMA}.cds_cards (uuid, service_id, hook_instance, model_id, model_version, patient_id, band, probability, suggestion_ids, issuer)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (uuid) DO NOTHING`,
        [c.uuid, c.serviceId, c.hookInstance, c.modelId, c.modelVersion, c.patientId, c.band ?? null, c.probability ?? null, c.suggestionIds, c.issuer],
      );
    }
  }

  /** Stores feedback; resolves, per entry, whether the card is one this service issued (for that service). */
  async recordFeedback(entries: FeedbackRecord[]): Promise<boolean[]> {
    const known: boolean[] = [];
    await this.db.transaction(async (tx) => {
      for (const f of entries) {
        const isUuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(f.card);
        const card = isUuid ? await tx.query(`SELECT 1 FROM ${SCHEMA}.cds_cards WHERE uuid = $1 AND service_id = $2`, [f.card, f.serviceId]) : { rowCount: 0 };
        known.push(card.rowCount > 0);
        await tx.query(
          `INSERT INTO ${SCHEMA}.cds_feedback (service_id, card_uuid, card_known, outcome, accepted_suggestions, override_system, override_code, has_comment, outcome_at, issuer)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
          [f.serviceId, f.card.slice(0, 100), card.rowCount > 0, f.outcome, f.acceptedSuggestions.map((s) => s.slice(0, 100)), f.overrideReason?.system.slice(0, 200) ?? null, f.overrideReason?.code.slice(0, 100) ?? null, f.hasComment, f.outcomeAt, f.issuer],
        );
      }
    });
    return known;
  }

  async feedbackFor(card: string): Promise<{ outcome: string; acceptedSuggestions: string[]; overrideCode: string | null; hasComment: boolean; cardKnown: boolean }[]> {
    const { rows } = await this.db.query<{ outcome: string; accepted_suggestions: string[]; override_code: string | null; has_comment: boolean; card_known: boolean }>(
      `SELECT outcome, accepted_suggestions, override_code, has_comment, card_known FROM ${SCHEMA}.cds_feedback WHERE card_uuid = $1 ORDER BY id`,
      [card],
    );
    return rows.map((r) => ({ outcome: r.outcome, acceptedSuggestions: r.accepted_suggestions, overrideCode: r.override_code, hasComment: r.has_comment, cardKnown: r.card_known }));
  }

  /** The newest outcome of a patient and model among the runs of a source: the console's patient view. */
  async latestOutcomeId(sourceIds: string[], patientId: string, modelId: string): Promise<string | undefined> {
    if (!sourceIds.length) return undefined;
    const { rows } = await this.db.query<{ id: string }>(
      `SELECT o.id::text FROM ${SCHEMA}.patient_outcomes o JOIN ${SCHEMA}.runs r ON r.id = o.run_id
        WHERE r.source_id = ANY($1::text[]) AND o.patient_id = $2 AND o.model_id = $3 ORDER BY o.created_at DESC LIMIT 1`,
      [sourceIds, patientId, modelId],
    );
    return rows[0]?.id;
  }

  /** Deletes cards and feedback older than the cutoff (the service's retention). */
  async purgeOlderThan(cutoff: Date): Promise<number> {
    const a = await this.db.query(`DELETE FROM ${SCHEMA}.cds_feedback WHERE received_at < $1`, [cutoff]);
    const b = await this.db.query(`DELETE FROM ${SCHEMA}.cds_cards WHERE created_at < $1`, [cutoff]);
    return a.rowCount + b.rowCount;
  }
}
