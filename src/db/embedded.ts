import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import { AdapterError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { Database, Queryable } from './types.js';

/**
 * The embedded PostgreSQL: PGlite (PostgreSQL compiled to WebAssembly) in this process. One connection,
 * serialised by PGlite itself; a transaction holds it exclusively. Only one process may open a data
 * directory at a time (a lock file with the pid says who has it), which is why several workers need a
 * real PostgreSQL server.
 */
/** Beside the data directory, not in it: PGlite owns the directory's contents. */
const lockFileOf = (dir: string) => `${path.resolve(dir)}.lock`;

export async function openEmbeddedDatabase(dataDir: string | undefined, logger: Logger): Promise<Database> {
  const onDisk = dataDir && !dataDir.startsWith('memory://') ? dataDir : undefined;
  if (onDisk) takeLock(onDisk);
  let db: PGlite;
  try {
    db = await PGlite.create(onDisk ? { dataDir: onDisk } : {});
  } catch (err) {
    if (onDisk) releaseLock(onDisk);
    throw new AdapterError('config-invalid', `cannot open the embedded database in ${onDisk ?? 'memory'}: ${(err as Error).message}`, { cause: err });
  }
  logger.info({ dataDir: onDisk ?? 'memory' }, 'embedded database open');
  const wrap = (q: PGlite | Transaction): Queryable => ({
    query: async <T>(sql: string, params?: unknown[]) => {
      const r = await q.query<T>(sql, params as unknown[]);
      return { rows: r.rows, rowCount: r.affectedRows ?? r.rows.length };
    },
    exec: async (sql: string) => {
      await q.exec(sql);
    },
  });
  const base = wrap(db);
  return {
    kind: 'embedded',
    ...base,
    transaction: (fn) => db.transaction((tx) => fn(wrap(tx))),
    executeSql: async (text, values) => {
      // pg-boss sends parameterless multi-statement scripts (BEGIN; ...; COMMIT) for its own migrations.
      if (values && values.length) return db.query(text, values as unknown[]);
      const results = await db.exec(text);
      return results[results.length - 1] ?? { rows: [] };
    },
    close: async () => {
      if (!db.closed) await db.close();
      if (onDisk) releaseLock(onDisk);
    },
  };
}

function takeLock(dir: string): void {
  const file = lockFileOf(dir);
  if (existsSync(file)) {
    const pid = Number(readFileSync(file, 'utf8').trim());
    if (Number.isInteger(pid) && pid !== process.pid && isAlive(pid)) {
      throw new AdapterError(
        'config-invalid',
        `the embedded database in ${dir} is in use by process ${pid}; only one process can open it (set DATABASE_URL to a PostgreSQL server to run several processes, or use the API of the running service)`,
      );
    }
  }
  writeFileSync(file, String(process.pid));
}

function releaseLock(dir: string): void {
  try {
    const file = lockFileOf(dir);
    if (existsSync(file) && readFileSync(file, 'utf8').trim() === String(process.pid)) rmSync(file);
  } catch {
    // best effort: a stale lock of a dead pid is ignored at the next start
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
