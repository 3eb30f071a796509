import { mkdirSync } from 'node:fs';
import pg from 'pg';
import { AdapterError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { openEmbeddedDatabase } from './embedded.js';
import type { Database, Queryable } from './types.js';

/**
 * The service's database: PostgreSQL through a node-postgres Pool when DATABASE_URL is set, otherwise
 * an embedded PostgreSQL (PGlite, in-process) with the same interface, so one machine needs no set-up.
 * Stores, migrations and pg-boss (through `executeSql`) only ever see this interface.
 */

export type { Database, QueryResult, Queryable } from './types.js';

export interface OpenDatabaseOptions {
  /** postgres:// connection string; when absent the embedded database is used. */
  url?: string;
  /** Embedded: data directory; `memory://` or undefined keeps it in memory (tests). */
  dataDir?: string;
  poolSize?: number;
  logger?: Logger;
}

export async function openDatabase(options: OpenDatabaseOptions): Promise<Database> {
  if (options.url) return openPostgres(options.url, options.poolSize ?? 10, options.logger ?? silentLogger);
  if (options.dataDir && !options.dataDir.startsWith('memory://')) mkdirSync(options.dataDir, { recursive: true });
  return openEmbeddedDatabase(options.dataDir, options.logger ?? silentLogger);
}

async function openPostgres(url: string, max: number, logger: Logger): Promise<Database> {
  const pool = new pg.Pool({ connectionString: url, max, application_name: 'fhir-ml-adapter' });
  // An idle client losing its connection must not crash the process; the next query reconnects.
  pool.on('error', (err) => logger.warn({ code: (err as NodeJS.ErrnoException).code }, 'database connection lost'));
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    await pool.end().catch(() => undefined);
    // The message of a connection error can carry the host; never the password (it is not in it).
    throw new AdapterError('config-invalid', `cannot connect to PostgreSQL (DATABASE_URL): ${(err as Error).message}`, { cause: err });
  }
  const wrap = (q: pg.Pool | pg.PoolClient): Queryable => ({
    query: async <T>(sql: string, params?: unknown[]) => {
      const r = await q.query(sql, params as unknown[]);
      return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
    },
    exec: async (sql: string) => {
      await q.query(sql);
    },
  });
  const base = wrap(pool);
  return {
    kind: 'postgresql',
    ...base,
    transaction: async (fn) => {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const result = await fn(wrap(client));
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.release();
      }
    },
    executeSql: (text, values) => pool.query(text, values as unknown[]),
    close: () => pool.end(),
  };
}

/** pg-boss `db` option bound to a transaction, so jobs are sent only if the transaction commits. */
export function bossDbFor(tx: Queryable): { executeSql: (text: string, values?: unknown[]) => Promise<{ rows: unknown[] }> } {
  return { executeSql: (text, values) => tx.query(text, values) };
}
