import { createHash, randomBytes } from 'node:crypto';
import type { Database } from './database.js';
import { SCHEMA } from './migrations.js';

/**
 * Console sessions: the browser holds a random id in an HttpOnly cookie; the database holds only its
 * sha256, so a database dump cannot be replayed as a session. Shared by every API process.
 */
export class SessionStore {
  constructor(private readonly db: Database) {}

  async create(principal: string, ttlMs: number): Promise<{ id: string; expiresAt: Date }> {
    const id = randomBytes(32).toString('base64url');
    const expiresAt = new Date(Date.now() + ttlMs);
    await this.db.query(`INSERT INTO ${SCHEMA}.console_sessions (id_hash, principal, expires_at) VALUES ($1, $2, $3)`, [hash(id), principal, expiresAt]);
    return { id, expiresAt };
  }

  async principalOf(id: string): Promise<string | undefined> {
    if (!/^[A-Za-z0-9_-]{20,100}$/.test(id)) return undefined;
    const { rows } = await this.db.query<{ principal: string }>(
      `SELECT principal FROM ${SCHEMA}.console_sessions WHERE id_hash = $1 AND expires_at > now()`,
      [hash(id)],
    );
    return rows[0]?.principal;
  }

  async delete(id: string): Promise<void> {
    await this.db.query(`DELETE FROM ${SCHEMA}.console_sessions WHERE id_hash = $1`, [hash(id)]);
  }

  async deleteExpired(): Promise<number> {
    const { rowCount } = await this.db.query(`DELETE FROM ${SCHEMA}.console_sessions WHERE expires_at <= now()`);
    return rowCount;
  }
}

function hash(id: string): string {
  return createHash('sha256').update(id).digest('hex');
}
