import { AdapterError } from '../core/errors.js';
import type { BulkExportReport, BulkExportStore, BulkSink, FileCounts, OpenExport, ResourceRef, StagedResource } from '../fhir/bulk/export.js';
import type { BulkManifest } from '../fhir/bulk/manifest.js';
import type { Database, Queryable } from './database.js';
import { SCHEMA } from './migrations.js';

/**
 * Staging of Bulk Data exports in the service's database (PostgreSQL, or the embedded PGlite):
 *
 * - `BulkExportStore`: an export's state (status URL, manifest files, which are staged), so a run that
 *   dies resumes without a second kick-off or download;
 * - `StagingStore`: the resources, one row per resource of a source keyed by type and id (the newest
 *   `meta.lastUpdated` wins, so a file downloaded again changes nothing), with the patient it belongs to,
 *   written in multi-row INSERTs (arrays through `unnest`, one statement per chunk), read back per batch
 *   of patients, so the pipeline's memory holds one batch whatever the population.
 *
 * The bodies are patient data: nothing here logs them, and the bulk pull purges a source's rows after its
 * run unless the source keeps them for incremental (`_since`) exports.
 */

const T = {
  exports: `${SCHEMA}.bulk_exports`,
  files: `${SCHEMA}.bulk_export_files`,
  staged: `${SCHEMA}.staged_resources`,
  changes: `${SCHEMA}.staged_changes`,
};

export class PgBulkExportStore implements BulkExportStore {
  constructor(private readonly db: Database) {}

  async open(sourceId: string): Promise<OpenExport | undefined> {
    const { rows } = await this.db.query<{ id: string; request_key: string; status_url: string; state: string; transaction_time: Date | null; requires_access_token: boolean | null }>(
      `SELECT id::text, request_key, status_url, state, transaction_time, requires_access_token FROM ${T.exports}
        WHERE source_id = $1 AND state IN ('kicked-off', 'downloading') ORDER BY id DESC LIMIT 1`,
      [sourceId],
    );
    const row = rows[0];
    if (!row) return undefined;
    const open: OpenExport = { id: row.id, requestKey: row.request_key, statusUrl: row.status_url, done: new Map() };
    if (row.state === 'downloading') {
      const files = await this.db.query<{ seq: number; kind: 'output' | 'error' | 'deleted'; resource_type: string; url: string; expected_count: number | null; state: string; counts: FileCounts | null }>(
        `SELECT seq, kind, resource_type, url, expected_count, state, counts FROM ${T.files} WHERE export_id = $1 ORDER BY seq`,
        [row.id],
      );
      open.manifest = {
        transactionTime: new Date(row.transaction_time!).toISOString(),
        requiresAccessToken: !!row.requires_access_token,
        files: files.rows.map((f) => ({ seq: f.seq, kind: f.kind, type: f.resource_type, url: f.url, ...(f.expected_count !== null ? { count: f.expected_count } : {}) })),
      };
      for (const f of files.rows) if (f.state === 'done' && f.counts) open.done.set(f.seq, f.counts);
    }
    return open;
  }

  async create(sourceId: string, requestKey: string, info: { level: string; since?: Date }, statusUrl: string): Promise<string> {
    try {
      const { rows } = await this.db.query<{ id: string }>(
        `INSERT INTO ${T.exports} (source_id, request_key, level, since, status_url, state) VALUES ($1, $2, $3, $4, $5, 'kicked-off') RETURNING id::text`,
        [sourceId, requestKey, info.level, info.since ?? null, statusUrl],
      );
      return rows[0].id;
    } catch (err) {
      if ((err as { code?: string }).code === '23505') {
        throw new AdapterError('input-invalid', `source ${sourceId} already has a bulk export in progress (another run of it is active)`);
      }
      throw err;
    }
  }

  async saveManifest(exportId: string, manifest: BulkManifest): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.query(`UPDATE ${T.exports} SET state = 'downloading', transaction_time = $2, requires_access_token = $3 WHERE id = $1`, [
        exportId,
        manifest.transactionTime,
        manifest.requiresAccessToken,
      ]);
      await tx.query(`DELETE FROM ${T.files} WHERE export_id = $1`, [exportId]);
      if (manifest.files.length) {
        await tx.query(
          `INSERT INTO ${T.files} (export_id, seq, kind, resource_type, url, expected_count, state)
           SELECT $1, f.seq, f.kind, f.rt, f.url, f.n, 'pending' FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::int[]) AS f(seq, kind, rt, url, n)`,
          [
            exportId,
            manifest.files.map((f) => f.seq),
            manifest.files.map((f) => f.kind),
            manifest.files.map((f) => f.type),
            manifest.files.map((f) => f.url),
            manifest.files.map((f) => f.count ?? null),
          ],
        );
      }
    });
  }

  async fileDone(exportId: string, seq: number, counts: FileCounts): Promise<void> {
    await this.db.query(`UPDATE ${T.files} SET state = 'done', counts = $3::jsonb, finished_at = now() WHERE export_id = $1 AND seq = $2`, [
      exportId,
      seq,
      JSON.stringify(counts),
    ]);
  }

  async close(exportId: string, state: 'complete' | 'failed' | 'expired' | 'abandoned', outcome: { report?: BulkExportReport; error?: AdapterError } = {}): Promise<void> {
    await this.db.query(
      `UPDATE ${T.exports} SET state = $2, report = $3::jsonb, error_code = $4, error_message = $5, finished_at = now() WHERE id = $1`,
      [exportId, state, outcome.report ? JSON.stringify(outcome.report) : null, outcome.error?.code ?? null, outcome.error?.message.slice(0, 500) ?? null],
    );
  }

  /** The newest complete export of a source: what its staged data is consistent at. */
  async lastComplete(sourceId: string): Promise<{ id: string; transactionTime: Date; finishedAt: Date } | undefined> {
    const { rows } = await this.db.query<{ id: string; transaction_time: Date; finished_at: Date }>(
      `SELECT id::text, transaction_time, finished_at FROM ${T.exports} WHERE source_id = $1 AND state = 'complete' ORDER BY id DESC LIMIT 1`,
      [sourceId],
    );
    const r = rows[0];
    return r ? { id: r.id, transactionTime: new Date(r.transaction_time), finishedAt: new Date(r.finished_at) } : undefined;
  }

  /**
   * Abandons a source's open export started before `before` (a run that died and never came back): its
   * staged files are no longer kept for a resume. The server expires the export itself. True when one was.
   */
  async abandonOpenBefore(sourceId: string, before: Date): Promise<boolean> {
    const r = await this.db.query(
      `UPDATE ${T.exports} SET state = 'abandoned', finished_at = now(), error_message = 'abandoned by the retention job: never resumed'
        WHERE source_id = $1 AND state IN ('kicked-off', 'downloading') AND created_at < $2`,
      [sourceId, before],
    );
    return r.rowCount > 0;
  }

  /**
   * Deletes the records of exports that ended before the cutoff (their file lists and change marks with
   * them), except each source's newest complete export, which its next `_since` export starts from.
   */
  async deleteEndedBefore(cutoff: Date): Promise<number> {
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query<{ id: string }>(
        `DELETE FROM ${T.exports} e WHERE e.finished_at < $1 AND e.state NOT IN ('kicked-off', 'downloading')
            AND e.id <> COALESCE((SELECT max(l.id) FROM ${T.exports} l WHERE l.source_id = e.source_id AND l.state = 'complete'), -1)
          RETURNING e.id::text AS id`,
        [cutoff],
      );
      if (rows.length) await tx.query(`DELETE FROM ${T.changes} WHERE export_id = ANY($1::bigint[])`, [rows.map((r) => r.id)]);
      return rows.length;
    });
  }

  async get(exportId: string): Promise<{ state: string; report?: BulkExportReport; errorCode?: string } | undefined> {
    const { rows } = await this.db.query<{ state: string; report: BulkExportReport | null; error_code: string | null }>(`SELECT state, report, error_code FROM ${T.exports} WHERE id = $1`, [exportId]);
    const r = rows[0];
    return r ? { state: r.state, ...(r.report ? { report: r.report } : {}), ...(r.error_code ? { errorCode: r.error_code } : {}) } : undefined;
  }
}

/** One staged resource as read back: its type, the patient it belongs to, and its body. */
export interface StagedRow {
  resourceType: string;
  id: string;
  patientId: string | null;
  body: Record<string, unknown>;
}

export class StagingStore implements BulkSink {
  constructor(private readonly db: Database) {}

  async begin(sourceId: string, _exportId: string, mode: 'full' | 'incremental'): Promise<void> {
    // A full export is the whole truth at its transactionTime: what was staged before may include
    // resources deleted since, so it goes.
    if (mode === 'full') await this.purge(sourceId);
  }

  async stage(sourceId: string, exportId: string, rows: StagedResource[]): Promise<void> {
    if (!rows.length) return;
    await this.db.query(
      `INSERT INTO ${T.staged} AS s (source_id, resource_type, resource_id, version_id, last_updated, patient_id, export_id, body)
       SELECT $1, t.rt, t.id, t.v, t.lu, t.pid, $2, t.body::jsonb
         FROM unnest($3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[], $8::text[]) AS t(rt, id, v, lu, pid, body)
       ON CONFLICT (source_id, resource_type, resource_id) DO UPDATE
         SET version_id = EXCLUDED.version_id, last_updated = EXCLUDED.last_updated, patient_id = EXCLUDED.patient_id,
             export_id = EXCLUDED.export_id, body = EXCLUDED.body
       WHERE s.last_updated IS NULL OR EXCLUDED.last_updated IS NULL OR EXCLUDED.last_updated >= s.last_updated`,
      [
        sourceId,
        exportId,
        rows.map((r) => r.resourceType),
        rows.map((r) => r.id),
        rows.map((r) => r.versionId ?? null),
        rows.map((r) => r.lastUpdated ?? null),
        rows.map((r) => r.patientId ?? null),
        rows.map((r) => r.json),
      ],
    );
  }

  async remove(sourceId: string, exportId: string, refs: ResourceRef[]): Promise<number> {
    if (!refs.length) return 0;
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query<{ patient_id: string | null }>(
        `DELETE FROM ${T.staged} s USING unnest($2::text[], $3::text[]) AS t(rt, id)
          WHERE s.source_id = $1 AND s.resource_type = t.rt AND s.resource_id = t.id RETURNING s.patient_id`,
        [sourceId, refs.map((r) => r.resourceType), refs.map((r) => r.id)],
      );
      const patients = [...new Set(rows.map((r) => r.patient_id).filter((p): p is string => !!p))];
      if (patients.length) {
        await tx.query(`INSERT INTO ${T.changes} (export_id, patient_id) SELECT $1, p FROM unnest($2::text[]) AS p ON CONFLICT DO NOTHING`, [exportId, patients]);
      }
      return rows.length;
    });
  }

  /**
   * Staged Patient ids in order, a page at a time (keyset paging: `after` the last id of the previous
   * page). With `changedIn`, only the patients an export staged or deleted something of; with
   * `changedAfter`, those of every export after that one (a service run's changes since the run that set
   * its watermark: an earlier run whose batches failed left its changes staged under its own export);
   * with `changedSince`, those of every export started since then (when the export before is unknown).
   */
  async patientIds(sourceId: string, options: { after?: string; limit: number; changedIn?: string; changedAfter?: string; changedSince?: Date }): Promise<string[]> {
    const params: unknown[] = [sourceId, options.after ?? '', options.limit];
    let changed = '';
    if (options.changedIn !== undefined) {
      params.push(options.changedIn);
      changed = `AND (EXISTS (SELECT 1 FROM ${T.staged} c WHERE c.source_id = $1 AND c.patient_id = p.resource_id AND c.export_id = $4)
                  OR EXISTS (SELECT 1 FROM ${T.changes} d WHERE d.export_id = $4 AND d.patient_id = p.resource_id))`;
    } else if (options.changedAfter !== undefined) {
      params.push(options.changedAfter);
      changed = `AND (EXISTS (SELECT 1 FROM ${T.staged} c WHERE c.source_id = $1 AND c.patient_id = p.resource_id AND c.export_id > $4::bigint)
                  OR EXISTS (SELECT 1 FROM ${T.changes} d JOIN ${T.exports} e ON e.id = d.export_id
                              WHERE e.source_id = $1 AND d.patient_id = p.resource_id AND d.export_id > $4::bigint))`;
    } else if (options.changedSince !== undefined) {
      params.push(options.changedSince);
      const exportsSince = `SELECT e.id FROM ${T.exports} e WHERE e.source_id = $1 AND e.created_at >= $4`;
      changed = `AND (EXISTS (SELECT 1 FROM ${T.staged} c WHERE c.source_id = $1 AND c.patient_id = p.resource_id AND c.export_id IN (${exportsSince}))
                  OR EXISTS (SELECT 1 FROM ${T.changes} d WHERE d.patient_id = p.resource_id AND d.export_id IN (${exportsSince})))`;
    }
    const { rows } = await this.db.query<{ resource_id: string }>(
      `SELECT p.resource_id FROM ${T.staged} p WHERE p.source_id = $1 AND p.resource_type = 'Patient' AND p.resource_id > $2 ${changed}
        ORDER BY p.resource_id LIMIT $3`,
      params,
    );
    return rows.map((r) => r.resource_id);
  }

  /** Every staged resource of these patients (their Patient resources included). */
  async resourcesOf(sourceId: string, patientIds: string[], types?: string[]): Promise<StagedRow[]> {
    if (!patientIds.length) return [];
    const { rows } = await this.db.query<{ resource_type: string; resource_id: string; patient_id: string | null; body: Record<string, unknown> | string }>(
      `SELECT resource_type, resource_id, patient_id, body FROM ${T.staged}
        WHERE source_id = $1 AND patient_id = ANY($2::text[]) ${types ? 'AND resource_type = ANY($3::text[])' : ''}`,
      types ? [sourceId, patientIds, types] : [sourceId, patientIds],
    );
    return rows.map((r) => ({ resourceType: r.resource_type, id: r.resource_id, patientId: r.patient_id, body: typeof r.body === 'string' ? JSON.parse(r.body) : r.body }));
  }

  /**
   * Staged resources no batch will read: no patient (`missing-subject`), or a patient with no staged
   * Patient resource (`patient-not-found`). References only, at most `limit`; `total` counts them all.
   */
  async unattributed(sourceId: string, limit = 10_000): Promise<{ total: number; items: { reference: string; detail: 'missing-subject' | 'patient-not-found' }[] }> {
    const where = `s.source_id = $1 AND s.resource_type <> 'Patient' AND (s.patient_id IS NULL OR NOT EXISTS (
        SELECT 1 FROM ${T.staged} p WHERE p.source_id = $1 AND p.resource_type = 'Patient' AND p.resource_id = s.patient_id))`;
    const [count, items] = await Promise.all([
      this.db.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${T.staged} s WHERE ${where}`, [sourceId]),
      this.db.query<{ resource_type: string; resource_id: string; patient_id: string | null }>(
        `SELECT s.resource_type, s.resource_id, s.patient_id FROM ${T.staged} s WHERE ${where} ORDER BY s.resource_type, s.resource_id LIMIT $2`,
        [sourceId, limit],
      ),
    ]);
    return {
      total: Number(count.rows[0].n),
      items: items.rows.map((r) => ({ reference: `${r.resource_type}/${r.resource_id}`, detail: r.patient_id === null ? 'missing-subject' : 'patient-not-found' })),
    };
  }

  /** Staged resources per type. */
  async counts(sourceId: string): Promise<Record<string, number>> {
    const { rows } = await this.db.query<{ resource_type: string; n: string }>(
      `SELECT resource_type, count(*)::text AS n FROM ${T.staged} WHERE source_id = $1 GROUP BY resource_type ORDER BY resource_type`,
      [sourceId],
    );
    return Object.fromEntries(rows.map((r) => [r.resource_type, Number(r.n)]));
  }

  /**
   * Removes everything staged for a source; with `upToExport`, only what that export and earlier ones
   * staged (a run's end purges its own data, never that of a newer run of the source already exporting).
   */
  async purge(sourceId: string, upToExport?: string): Promise<number> {
    return this.db.transaction(async (tx: Queryable) => {
      const bound = upToExport === undefined ? '' : 'AND export_id <= $2::bigint';
      const params = upToExport === undefined ? [sourceId] : [sourceId, upToExport];
      const r = await tx.query(`DELETE FROM ${T.staged} WHERE source_id = $1 ${bound}`, params);
      await tx.query(`DELETE FROM ${T.changes} c USING ${T.exports} e WHERE c.export_id = e.id AND e.source_id = $1 ${bound ? 'AND e.id <= $2::bigint' : ''}`, params);
      return r.rowCount;
    });
  }

  /** Sources with anything staged. */
  async sourceIds(): Promise<string[]> {
    const { rows } = await this.db.query<{ source_id: string }>(`SELECT DISTINCT source_id FROM ${T.staged} ORDER BY source_id`);
    return rows.map((r) => r.source_id);
  }
}
