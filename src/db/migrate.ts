import { createHash } from 'node:crypto';
import { AdapterError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { Database } from './database.js';
import { MIGRATIONS, SCHEMA, type Migration } from './migrations.js';

/**
 * Runs pending migrations at start. Each migration runs once, in its own transaction, under a
 * transaction-scoped advisory lock: two processes starting together serialise here, and the second
 * finds the work done. A migration already applied with a different checksum (edited after release)
 * or a database newer than this adapter stops the start with a clear error.
 */

/** Arbitrary but fixed: the advisory lock key of the adapter's migrations. */
const MIGRATION_LOCK = 727_274_011;

export interface MigrationReport {
  applied: number[];
  current: number;
}

export function checksumOf(migration: Migration): string {
  return createHash('sha256').update(migration.sql).digest('hex').slice(0, 16);
}

export async function migrate(db: Database, options: { logger?: Logger; migrations?: readonly Migration[] } = {}): Promise<MigrationReport> {
  const logger = options.logger ?? silentLogger;
  const migrations = [...(options.migrations ?? MIGRATIONS)].sort((a, b) => a.version - b.version);
  const applied: number[] = [];
  const latest = migrations.at(-1)?.version ?? 0;

  for (const migration of migrations) {
    const done = await db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await tx.exec(
        `CREATE SCHEMA IF NOT EXISTS ${SCHEMA};
         CREATE TABLE IF NOT EXISTS ${SCHEMA}.schema_migrations (
           version integer PRIMARY KEY,
           name text NOT NULL,
           checksum text NOT NULL,
           applied_at timestamptz NOT NULL DEFAULT now()
         );`,
      );
      const { rows } = await tx.query<{ version: number; checksum: string }>(`SELECT version, checksum FROM ${SCHEMA}.schema_migrations ORDER BY version`);
      const newest = rows.at(-1)?.version ?? 0;
      if (newest > latest) {
        throw new AdapterError(
          'config-invalid',
          `the database schema is at version ${newest}, newer than this adapter knows (${latest}); upgrade the adapter before starting it on this database`,
        );
      }
      const existing = rows.find((r) => r.version === migration.version);
      if (existing) {
        if (existing.checksum !== checksumOf(migration)) {
          throw new AdapterError('config-invalid', `migration ${migration.version} (${migration.name}) differs from the one applied to this database; migrations must never be edited`);
        }
        return false;
      }
      await tx.exec(migration.sql);
      await tx.query(`INSERT INTO ${SCHEMA}.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)`, [
        migration.version,
        migration.name,
        checksumOf(migration),
      ]);
      return true;
    });
    if (done) {
      applied.push(migration.version);
      logger.info({ version: migration.version }, 'database migration applied');
    }
  }
  return { applied, current: latest };
}
