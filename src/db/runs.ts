import { randomUUID } from 'node:crypto';
import type { Database, Queryable } from './database.js';
import { SCHEMA } from './migrations.js';

/**
 * Run history: runs, their batches, per-patient outcomes and exclusion counts. A batch's results are
 * replaced as a whole when it succeeds (so a retried batch never counts twice), in the same transaction
 * that decides whether the run is complete and moves the watermarks.
 */

export type RunState = 'queued' | 'selecting' | 'running' | 'succeeded' | 'failed';
export type BatchState = 'queued' | 'running' | 'retrying' | 'succeeded' | 'failed';
export type OutcomeStatus = 'scored' | 'skipped' | 'failed' | 'not-found' | 'unchanged';

export interface RunSelection {
  /** Patients whose data changed since the watermark (incremental runs). */
  changed?: number;
  /** Patients whose last score is older than the re-score interval. */
  stale?: number;
  /** Patients with deleted data found through history. */
  deleted?: number;
  /** How deletions were looked for: `history`, or why not (e.g. `unsupported`). */
  deletions?: string;
  /** Patients of the population (full runs). */
  population?: number;
  /** Group or list members never evaluated before (incremental runs). */
  newMembers?: number;
  total: number;
  requests?: number;
  /** Runs pulled with Bulk Data: the export staged in the selection step (its batches read staging). */
  bulk?: {
    exportId: string;
    /** The export was kicked off by an earlier attempt (a worker that died, a selection retried). */
    resumed: boolean;
    /** Why bulk: `configured`, or auto's reason. */
    reason: string;
    files: { output: number; error: number; deleted: number; downloaded: number; alreadyStaged: number };
    /** Resources staged, per type. */
    staged: Record<string, number>;
    /** Resources named in the export's deleted files. */
    deleted: number;
    /** OperationOutcomes in the export's error files. */
    errors: number;
    /** NDJSON lines that were not a valid resource (counted, never staged). */
    malformed: number;
    /** Staged resources no patient owns (no subject, or a patient the export did not contain). */
    unattributed: number;
  };
}

export interface RunRow {
  id: string;
  sourceId: string;
  state: RunState;
  trigger: string;
  mode: 'full' | 'incremental' | null;
  asOf: string;
  modelIds: string[];
  changesSince: string | null;
  changesUntil: string | null;
  selection: RunSelection | null;
  batchesTotal: number;
  patientsTotal: number;
  errorCode: string | null;
  errorMessage: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface RunCounts {
  batches: Record<BatchState, number>;
  /** Per model: patients by outcome status. */
  outcomes: Record<string, Partial<Record<OutcomeStatus, number>>>;
  requests: number;
}

export interface BatchRow {
  seq: number;
  state: BatchState;
  patientCount: number;
  attempts: number;
  worker: string | null;
  requests: number | null;
  durationMs: number | null;
  errorCode: string | null;
  errorMessage: string | null;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface OutcomeInput {
  patientId: string;
  modelId: string;
  modelVersion?: string;
  status: OutcomeStatus;
  reason?: string;
  probability?: number;
  band?: string;
  write?: string;
  counts?: { fetched: number; used: number; excluded: number };
  excluded?: Record<string, number>;
  explanation?: { featureId: string; contribution: number }[];
}

export interface OutcomeRow extends OutcomeInput {
  id: string;
  runId: string;
  batchSeq: number;
  createdAt: string;
}

export interface ExclusionCount {
  modelId: string;
  kind: 'excluded' | 'part-issue' | 'skipped';
  reason: string;
  count: number;
}

export type CreateRunResult = { created: true; run: RunRow } | { created: false; activeRunId: string };

export interface FinalizeResult {
  state: RunState;
  /** True when this call completed the run (its last batch finished). */
  finished: boolean;
  run: RunRow;
}

const RUN_COLUMNS = `id, source_id, state, trigger, mode, as_of, model_ids, changes_since, changes_until, selection,
  batches_total, patients_total, error_code, error_message, created_at, started_at, finished_at`;

const iso = (v: unknown): string | null => (v === null || v === undefined ? null : new Date(v as string | Date).toISOString());

function toRun(r: Record<string, unknown>): RunRow {
  return {
    id: r.id as string,
    sourceId: r.source_id as string,
    state: r.state as RunState,
    trigger: r.trigger as string,
    mode: (r.mode as RunRow['mode']) ?? null,
    asOf: iso(r.as_of)!,
    modelIds: r.model_ids as string[],
    changesSince: iso(r.changes_since),
    changesUntil: iso(r.changes_until),
    selection: (r.selection as RunSelection | null) ?? null,
    batchesTotal: Number(r.batches_total),
    patientsTotal: Number(r.patients_total),
    errorCode: (r.error_code as string | null) ?? null,
    errorMessage: (r.error_message as string | null) ?? null,
    createdAt: iso(r.created_at)!,
    startedAt: iso(r.started_at),
    finishedAt: iso(r.finished_at),
  };
}

function toOutcome(r: Record<string, unknown>): OutcomeRow {
  const num = (v: unknown) => (v === null || v === undefined ? undefined : Number(v));
  return {
    id: r.id as string,
    runId: r.run_id as string,
    batchSeq: Number(r.batch_seq),
    patientId: r.patient_id as string,
    modelId: r.model_id as string,
    modelVersion: (r.model_version as string | null) ?? undefined,
    status: r.status as OutcomeStatus,
    reason: (r.reason as string | null) ?? undefined,
    probability: num(r.probability),
    band: (r.band as string | null) ?? undefined,
    write: (r.write as string | null) ?? undefined,
    counts: r.fetched === null || r.fetched === undefined ? undefined : { fetched: Number(r.fetched), used: Number(r.used), excluded: Number(r.excluded) },
    excluded: (r.excluded_by_reason as Record<string, number> | null) ?? undefined,
    explanation: (r.explanation as OutcomeInput['explanation'] | null) ?? undefined,
    createdAt: iso(r.created_at)!,
  };
}

function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: string } | null)?.code === '23505';
}

export class RunStore {
  constructor(private readonly db: Database) {}

  /** Creates a queued run, or says which run of the source is still active. */
  async create(input: { sourceId: string; trigger: string; asOf: Date; modelIds: string[]; id?: string }): Promise<CreateRunResult> {
    try {
      return { created: true, run: await this.insert(this.db, input) };
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      const active = await this.activeRun(input.sourceId);
      if (!active) {
        // The id itself exists (a retried job whose run finished meanwhile): nothing to create.
        if (input.id && (await this.get(input.id))) return { created: false, activeRunId: input.id };
        // The active run finished between the insert and this read: try once more.
        return this.create(input);
      }
      return { created: false, activeRunId: active.id };
    }
  }

  /** Inserts a queued run; a unique violation (code 23505) means the source has an active run. */
  async insert(q: Queryable, input: { sourceId: string; trigger: string; asOf: Date; modelIds: string[]; id?: string }): Promise<RunRow> {
    const { rows } = await q.query(
      `INSERT INTO ${SCHEMA}.runs (id, source_id, state, trigger, as_of, model_ids) VALUES ($1, $2, 'queued', $3, $4, $5) RETURNING ${RUN_COLUMNS}`,
      [input.id ?? randomUUID(), input.sourceId, input.trigger, input.asOf, input.modelIds],
    );
    return toRun(rows[0]);
  }

  async activeRun(sourceId: string): Promise<RunRow | undefined> {
    const { rows } = await this.db.query(
      `SELECT ${RUN_COLUMNS} FROM ${SCHEMA}.runs WHERE source_id = $1 AND state IN ('queued', 'selecting', 'running')`,
      [sourceId],
    );
    return rows[0] ? toRun(rows[0]) : undefined;
  }

  async get(id: string, q: Queryable = this.db): Promise<RunRow | undefined> {
    if (!isUuid(id)) return undefined;
    const { rows } = await q.query(`SELECT ${RUN_COLUMNS} FROM ${SCHEMA}.runs WHERE id = $1`, [id]);
    return rows[0] ? toRun(rows[0]) : undefined;
  }

  /** Newest first; `before` (a run id) pages backwards. */
  async list(options: { sourceId?: string; state?: RunState; limit?: number; before?: string } = {}): Promise<RunRow[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (options.sourceId) where.push(`source_id = $${params.push(options.sourceId)}`);
    if (options.state) where.push(`state = $${params.push(options.state)}`);
    if (options.before) {
      const before = await this.get(options.before);
      if (before) where.push(`(created_at, id) < ($${params.push(before.createdAt)}::timestamptz, $${params.push(before.id)}::uuid)`);
    }
    const limit = Math.min(Math.max(options.limit ?? 50, 1), 500);
    const { rows } = await this.db.query(
      `SELECT ${RUN_COLUMNS} FROM ${SCHEMA}.runs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id DESC LIMIT ${limit}`,
      params,
    );
    return rows.map(toRun);
  }

  /** The run's selection begins (or begins again); `jobId`, the source-run job doing it, then reports by `selectionHeartbeat`. */
  async markSelecting(id: string, jobId?: string): Promise<void> {
    await this.db.query(
      `UPDATE ${SCHEMA}.runs SET state = 'selecting', started_at = COALESCE(started_at, now()), selection_job_id = $2, selection_heartbeat_at = now()
        WHERE id = $1 AND state IN ('queued', 'selecting')`,
      [id, jobId ?? null],
    );
  }

  async selectionHeartbeat(id: string, jobId: string): Promise<void> {
    await this.db.query(`UPDATE ${SCHEMA}.runs SET selection_heartbeat_at = now() WHERE id = $1 AND state = 'selecting' AND selection_job_id = $2`, [id, jobId]);
  }

  /** Selecting runs whose worker has not reported for `timeoutSeconds`. */
  async staleSelections(timeoutSeconds: number): Promise<{ runId: string; sourceId: string; jobId: string }[]> {
    const { rows } = await this.db.query<{ id: string; source_id: string; selection_job_id: string }>(
      `SELECT id, source_id, selection_job_id FROM ${SCHEMA}.runs
        WHERE state = 'selecting' AND selection_job_id IS NOT NULL AND selection_heartbeat_at < now() - make_interval(secs => $1)`,
      [timeoutSeconds],
    );
    return rows.map((r) => ({ runId: r.id, sourceId: r.source_id, jobId: r.selection_job_id }));
  }

  /**
   * Records the selection and the run's batches (in the caller's transaction, together with sending their
   * jobs). A run without patients succeeds at once.
   */
  async fanOut(
    tx: Queryable,
    id: string,
    plan: { mode: 'full' | 'incremental'; changesSince?: Date; changesUntil: Date; selection: RunSelection; batchSizes: number[] },
  ): Promise<boolean> {
    const patients = plan.batchSizes.reduce((a, b) => a + b, 0);
    // Only from `selecting`: a run that failed meanwhile, or that another attempt fanned out, stays as it is.
    const updated = await tx.query(
      `UPDATE ${SCHEMA}.runs SET state = 'running', mode = $2, changes_since = $3, changes_until = $4, selection = $5::jsonb, batches_total = $6, patients_total = $7
       WHERE id = $1 AND state = 'selecting'`,
      [id, plan.mode, plan.changesSince ?? null, plan.changesUntil, JSON.stringify(plan.selection), plan.batchSizes.length, patients],
    );
    if (updated.rowCount !== 1) return false;
    if (plan.batchSizes.length) {
      await tx.query(
        `INSERT INTO ${SCHEMA}.run_batches (run_id, seq, state, patient_count)
         SELECT $1, seq - 1, 'queued', size FROM unnest($2::int[]) WITH ORDINALITY AS b(size, seq)`,
        [id, plan.batchSizes],
      );
    }
    return true;
  }

  /**
   * Claims a batch for one attempt. Undefined when the batch has already succeeded (a redelivered job):
   * there is nothing to do then.
   */
  async claimBatch(runId: string, seq: number, jobId: string, worker: string): Promise<{ attempt: number } | undefined> {
    const { rows } = await this.db.query<{ attempts: number }>(
      `UPDATE ${SCHEMA}.run_batches SET state = 'running', attempts = attempts + 1, job_id = $3, worker = $4, heartbeat_at = now(),
         started_at = COALESCE(started_at, now())
       WHERE run_id = $1 AND seq = $2 AND state <> 'succeeded' RETURNING attempts`,
      [runId, seq, jobId, worker],
    );
    return rows[0] ? { attempt: Number(rows[0].attempts) } : undefined;
  }

  async heartbeat(runId: string, seq: number, attempt: number): Promise<void> {
    await this.db.query(`UPDATE ${SCHEMA}.run_batches SET heartbeat_at = now() WHERE run_id = $1 AND seq = $2 AND attempts = $3 AND state = 'running'`, [
      runId,
      seq,
      attempt,
    ]);
  }

  /** Running batches whose worker has not reported for `timeoutSeconds`. */
  async staleBatches(timeoutSeconds: number): Promise<{ runId: string; seq: number; jobId: string; attempt: number }[]> {
    const { rows } = await this.db.query<{ run_id: string; seq: number; job_id: string; attempts: number }>(
      `SELECT run_id, seq, job_id, attempts FROM ${SCHEMA}.run_batches
       WHERE state = 'running' AND heartbeat_at < now() - make_interval(secs => $1) AND job_id IS NOT NULL`,
      [timeoutSeconds],
    );
    return rows.map((r) => ({ runId: r.run_id, seq: Number(r.seq), jobId: r.job_id, attempt: Number(r.attempts) }));
  }

  /**
   * Stores a successful batch: its outcomes and exclusions replace any earlier attempt's, then the run is
   * finalized if this was its last open batch. Returns undefined when the attempt is no longer the
   * batch's current one (another worker took it over): its results are dropped, the other attempt wins.
   */
  async completeBatch(
    tx: Queryable,
    input: {
      runId: string;
      seq: number;
      attempt: number;
      outcomes: OutcomeInput[];
      exclusions: ExclusionCount[];
      requests: number;
      durationMs: number;
    },
  ): Promise<FinalizeResult | undefined> {
    await this.lockRun(tx, input.runId);
    const { rows } = await tx.query<{ attempts: number; state: BatchState }>(
      `SELECT attempts, state FROM ${SCHEMA}.run_batches WHERE run_id = $1 AND seq = $2 FOR UPDATE`,
      [input.runId, input.seq],
    );
    const batch = rows[0];
    if (!batch || Number(batch.attempts) !== input.attempt || batch.state === 'succeeded') return undefined;

    await tx.query(`DELETE FROM ${SCHEMA}.patient_outcomes WHERE run_id = $1 AND batch_seq = $2`, [input.runId, input.seq]);
    await tx.query(`DELETE FROM ${SCHEMA}.run_exclusions WHERE run_id = $1 AND batch_seq = $2`, [input.runId, input.seq]);
    if (input.outcomes.length) {
      await tx.query(
        `INSERT INTO ${SCHEMA}.patient_outcomes (run_id, batch_seq, patient_id, model_id, model_version, status, reason, probability, band, write,
           fetched, used, excluded, excluded_by_reason, explanation)
         SELECT $1, $2, o.patient_id, o.model_id, o.model_version, o.status, o.reason, o.probability, o.band, o.write,
           o.fetched, o.used, o.excluded, o.excluded_by_reason, o.explanation
         FROM jsonb_to_recordset($3::jsonb) AS o(patient_id text, model_id text, model_version text, status text, reason text,
           probability double precision, band text, write text, fetched int, used int, excluded int, excluded_by_reason jsonb, explanation jsonb)
         ON CONFLICT (run_id, patient_id, model_id) DO UPDATE SET batch_seq = EXCLUDED.batch_seq, model_version = EXCLUDED.model_version,
           status = EXCLUDED.status, reason = EXCLUDED.reason, probability = EXCLUDED.probability, band = EXCLUDED.band, write = EXCLUDED.write,
           fetched = EXCLUDED.fetched, used = EXCLUDED.used, excluded = EXCLUDED.excluded, excluded_by_reason = EXCLUDED.excluded_by_reason,
           explanation = EXCLUDED.explanation`,
        [
          input.runId,
          input.seq,
          JSON.stringify(
            input.outcomes.map((o) => ({
              patient_id: o.patientId,
              model_id: o.modelId,
              model_version: o.modelVersion ?? null,
              status: o.status,
              reason: o.reason ?? null,
              probability: o.probability ?? null,
              band: o.band ?? null,
              write: o.write ?? null,
              fetched: o.counts?.fetched ?? null,
              used: o.counts?.used ?? null,
              excluded: o.counts?.excluded ?? null,
              excluded_by_reason: o.excluded && Object.keys(o.excluded).length ? o.excluded : null,
              explanation: o.explanation?.length ? o.explanation : null,
            })),
          ),
        ],
      );
    }
    const exclusions = input.exclusions.filter((e) => e.count > 0);
    if (exclusions.length) {
      await tx.query(
        `INSERT INTO ${SCHEMA}.run_exclusions (run_id, batch_seq, model_id, kind, reason, count)
         SELECT $1, $2, e.model_id, e.kind, e.reason, e.count FROM jsonb_to_recordset($3::jsonb) AS e(model_id text, kind text, reason text, count int)`,
        [input.runId, input.seq, JSON.stringify(exclusions.map((e) => ({ model_id: e.modelId, kind: e.kind, reason: e.reason, count: e.count })))],
      );
    }
    await tx.query(
      // The error of an earlier attempt stays: a batch that succeeded on a retry reports what failed before.
      `UPDATE ${SCHEMA}.run_batches SET state = 'succeeded', requests = $3, duration_ms = $4, finished_at = now()
       WHERE run_id = $1 AND seq = $2`,
      [input.runId, input.seq, input.requests, Math.round(input.durationMs)],
    );
    return this.finalize(tx, input.runId);
  }

  /**
   * Records a failed attempt. `final`: no retry follows (retries exhausted, or the batch went to the dead
   * letter queue), so the batch is failed and the run may be complete (failed).
   */
  async failBatch(
    tx: Queryable,
    input: {
      runId: string;
      seq: number;
      attempt?: number;
      code: string;
      message: string;
      final: boolean;
      durationMs?: number;
      /** With `final`: the batch's patients and models, recorded as failed outcomes so counts reconcile. */
      patients?: { patientIds: string[]; modelIds: string[] };
    },
  ): Promise<FinalizeResult | undefined> {
    await this.lockRun(tx, input.runId);
    const { rowCount } = await tx.query(
      `UPDATE ${SCHEMA}.run_batches SET state = $3, error_code = $4, error_message = $5, duration_ms = COALESCE($6, duration_ms),
         finished_at = CASE WHEN $3 = 'failed' THEN now() ELSE finished_at END
       WHERE run_id = $1 AND seq = $2 AND state NOT IN ('succeeded', 'failed') AND ($7::int IS NULL OR attempts = $7::int)`,
      [input.runId, input.seq, input.final ? 'failed' : 'retrying', input.code, input.message.slice(0, 500), input.durationMs === undefined ? null : Math.round(input.durationMs), input.attempt ?? null],
    );
    if (!rowCount || !input.final) return undefined;
    if (input.patients) {
      await tx.query(
        `INSERT INTO ${SCHEMA}.patient_outcomes (run_id, batch_seq, patient_id, model_id, status, reason)
         SELECT $1, $2, p, m, 'failed', $3 FROM unnest($4::text[]) AS p CROSS JOIN unnest($5::text[]) AS m
         ON CONFLICT (run_id, patient_id, model_id) DO NOTHING`,
        [input.runId, input.seq, input.code, input.patients.patientIds, input.patients.modelIds],
      );
    }
    return this.finalize(tx, input.runId);
  }

  /** Records why a selection attempt failed (it is retried; the run stays where it is). */
  async noteSelectionError(id: string, code: string, message: string): Promise<void> {
    await this.db.query(`UPDATE ${SCHEMA}.runs SET error_code = $2, error_message = $3 WHERE id = $1 AND state IN ('queued', 'selecting')`, [id, code, message.slice(0, 500)]);
  }

  /**
   * Fails a run that never reached its batches (its selection failed for good). The code of the last
   * selection error is kept when there was one.
   */
  async failRun(id: string, code: string, message: string): Promise<void> {
    await this.db.query(
      `UPDATE ${SCHEMA}.runs SET state = 'failed', error_code = COALESCE(error_code, $2),
         error_message = CASE WHEN error_message IS NULL THEN $3 ELSE $3 || ': ' || error_message END, finished_at = now()
       WHERE id = $1 AND state IN ('queued', 'selecting')`,
      [id, code, message.slice(0, 300)],
    );
  }

  /** Completes the run when every batch is done; locks the run row (the caller holds the transaction). */
  async finalize(tx: Queryable, runId: string): Promise<FinalizeResult> {
    const run = await this.lockRun(tx, runId);
    if (run.state !== 'running') return { state: run.state, finished: false, run };
    const { rows } = await tx.query<{ succeeded: number; failed: number; total: number; codes: string[] | null }>(
      `SELECT count(*) FILTER (WHERE state = 'succeeded')::int AS succeeded, count(*) FILTER (WHERE state = 'failed')::int AS failed,
         count(*)::int AS total, array_agg(DISTINCT error_code) FILTER (WHERE state = 'failed') AS codes
       FROM ${SCHEMA}.run_batches WHERE run_id = $1`,
      [runId],
    );
    const { succeeded, failed, total, codes } = rows[0];
    if (succeeded + failed < total) return { state: 'running', finished: false, run };
    const state: RunState = failed === 0 ? 'succeeded' : 'failed';
    const { rows: updated } = await tx.query(
      `UPDATE ${SCHEMA}.runs SET state = $2, finished_at = now(), error_code = $3, error_message = $4 WHERE id = $1 RETURNING ${RUN_COLUMNS}`,
      [
        runId,
        state,
        failed ? 'batches-failed' : null,
        failed ? `${failed} of ${total} batches failed after all retries (${(codes ?? []).filter(Boolean).join(', ')}); the watermark was not moved, the next run selects these patients again` : null,
      ],
    );
    return { state, finished: true, run: toRun(updated[0]) };
  }

  private async lockRun(tx: Queryable, runId: string): Promise<RunRow> {
    const { rows } = await tx.query(`SELECT ${RUN_COLUMNS} FROM ${SCHEMA}.runs WHERE id = $1 FOR UPDATE`, [runId]);
    if (!rows[0]) throw new Error(`run ${runId} does not exist`);
    return toRun(rows[0]);
  }

  async batches(runId: string): Promise<BatchRow[]> {
    const { rows } = await this.db.query(
      `SELECT seq, state, patient_count, attempts, worker, requests, duration_ms, error_code, error_message, started_at, finished_at
       FROM ${SCHEMA}.run_batches WHERE run_id = $1 ORDER BY seq`,
      [runId],
    );
    return rows.map((r) => ({
      seq: Number(r.seq),
      state: r.state as BatchState,
      patientCount: Number(r.patient_count),
      attempts: Number(r.attempts),
      worker: (r.worker as string | null) ?? null,
      requests: r.requests === null ? null : Number(r.requests),
      durationMs: r.duration_ms === null ? null : Number(r.duration_ms),
      errorCode: (r.error_code as string | null) ?? null,
      errorMessage: (r.error_message as string | null) ?? null,
      startedAt: iso(r.started_at),
      finishedAt: iso(r.finished_at),
    }));
  }

  async counts(runId: string): Promise<RunCounts> {
    const batches = { queued: 0, running: 0, retrying: 0, succeeded: 0, failed: 0 } as Record<BatchState, number>;
    const { rows: b } = await this.db.query<{ state: BatchState; n: number; requests: number }>(
      `SELECT state, count(*)::int AS n, COALESCE(sum(requests), 0)::int AS requests FROM ${SCHEMA}.run_batches WHERE run_id = $1 GROUP BY state`,
      [runId],
    );
    let requests = 0;
    for (const r of b) {
      batches[r.state] = Number(r.n);
      requests += Number(r.requests);
    }
    const { rows: o } = await this.db.query<{ model_id: string; status: OutcomeStatus; n: number }>(
      `SELECT model_id, status, count(*)::int AS n FROM ${SCHEMA}.patient_outcomes WHERE run_id = $1 GROUP BY model_id, status`,
      [runId],
    );
    const outcomes: RunCounts['outcomes'] = {};
    for (const r of o) (outcomes[r.model_id] ??= {})[r.status] = Number(r.n);
    return { batches, outcomes, requests };
  }

  async outcomes(
    runId: string,
    options: { modelId?: string; status?: OutcomeStatus; limit?: number; offset?: number } = {},
  ): Promise<{ total: number; items: OutcomeRow[] }> {
    const where = ['run_id = $1'];
    const params: unknown[] = [runId];
    if (options.modelId) where.push(`model_id = $${params.push(options.modelId)}`);
    if (options.status) where.push(`status = $${params.push(options.status)}`);
    const limit = Math.min(Math.max(options.limit ?? 100, 1), 1000);
    const offset = Math.max(options.offset ?? 0, 0);
    const { rows: total } = await this.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${SCHEMA}.patient_outcomes WHERE ${where.join(' AND ')}`, params);
    const { rows } = await this.db.query(
      `SELECT * FROM ${SCHEMA}.patient_outcomes WHERE ${where.join(' AND ')} ORDER BY model_id, patient_id LIMIT ${limit} OFFSET ${offset}`,
      params,
    );
    return { total: Number(total[0].n), items: rows.map(toOutcome) };
  }

  async outcome(id: string): Promise<OutcomeRow | undefined> {
    if (!isUuid(id)) return undefined;
    const { rows } = await this.db.query(`SELECT * FROM ${SCHEMA}.patient_outcomes WHERE id = $1`, [id]);
    return rows[0] ? toOutcome(rows[0]) : undefined;
  }

  async exclusions(runId: string): Promise<ExclusionCount[]> {
    const { rows } = await this.db.query<{ model_id: string; kind: ExclusionCount['kind']; reason: string; n: number }>(
      `SELECT model_id, kind, reason, sum(count)::int AS n FROM ${SCHEMA}.run_exclusions WHERE run_id = $1 GROUP BY model_id, kind, reason ORDER BY model_id, kind, n DESC`,
      [runId],
    );
    return rows.map((r) => ({ modelId: r.model_id, kind: r.kind, reason: r.reason, count: Number(r.n) }));
  }

  /** Per model of a run: band counts and a probability histogram of the scored patients. */
  async distribution(runId: string, bins = 10): Promise<Record<string, { bands: Record<string, number>; histogram: number[]; scored: number; mean: number | null }>> {
    const { rows } = await this.db.query<{ model_id: string; band: string | null; bin: number; n: number; mean: number | null }>(
      `SELECT model_id, band, LEAST(width_bucket(probability, 0, 1, $2), $2) AS bin, count(*)::int AS n, avg(probability) AS mean
       FROM ${SCHEMA}.patient_outcomes WHERE run_id = $1 AND status = 'scored' AND probability IS NOT NULL
       GROUP BY model_id, band, bin`,
      [runId, bins],
    );
    const out: Record<string, { bands: Record<string, number>; histogram: number[]; scored: number; mean: number | null; sum: number }> = {};
    for (const r of rows) {
      const m = (out[r.model_id] ??= { bands: {}, histogram: new Array(bins).fill(0), scored: 0, mean: null, sum: 0 });
      const n = Number(r.n);
      if (r.band) m.bands[r.band] = (m.bands[r.band] ?? 0) + n;
      m.histogram[Math.max(1, Number(r.bin)) - 1] += n;
      m.scored += n;
      m.sum += Number(r.mean) * n;
    }
    return Object.fromEntries(Object.entries(out).map(([k, { sum, ...v }]) => [k, { ...v, mean: v.scored ? sum / v.scored : null }]));
  }

  /** A model's results over the recent runs of a source (oldest first): scored, mean probability, bands. */
  async trend(
    sourceId: string,
    modelId: string,
    limit = 30,
  ): Promise<{ runId: string; asOf: string; createdAt: string; state: RunState; scored: number; mean: number | null; bands: Record<string, number> }[]> {
    const { rows } = await this.db.query<{ id: string; as_of: string; created_at: string; state: RunState; band: string | null; n: number; mean: number | null }>(
      `WITH recent AS (
         SELECT id, as_of, created_at, state FROM ${SCHEMA}.runs WHERE source_id = $1 AND $2 = ANY (model_ids) ORDER BY created_at DESC LIMIT $3
       )
       SELECT r.id, r.as_of, r.created_at, r.state, o.band, count(o.id)::int AS n, avg(o.probability) AS mean
       FROM recent r LEFT JOIN ${SCHEMA}.patient_outcomes o ON o.run_id = r.id AND o.model_id = $2 AND o.status = 'scored'
       GROUP BY r.id, r.as_of, r.created_at, r.state, o.band ORDER BY r.created_at`,
      [sourceId, modelId, Math.min(Math.max(limit, 1), 365)],
    );
    const byRun = new Map<string, { runId: string; asOf: string; createdAt: string; state: RunState; scored: number; sum: number; bands: Record<string, number> }>();
    for (const r of rows) {
      const e =
        byRun.get(r.id) ??
        byRun.set(r.id, { runId: r.id, asOf: iso(r.as_of)!, createdAt: iso(r.created_at)!, state: r.state, scored: 0, sum: 0, bands: {} }).get(r.id)!;
      const n = Number(r.n);
      if (r.band && n) e.bands[r.band] = n;
      e.scored += n;
      e.sum += n ? Number(r.mean) * n : 0;
    }
    return [...byRun.values()].map(({ sum, ...e }) => ({ ...e, mean: e.scored ? sum / e.scored : null }));
  }

  /** Retention: deletes finished runs (with batches, outcomes and exclusions) older than `days`. */
  async deleteOlderThan(days: number): Promise<number> {
    const { rowCount } = await this.db.query(
      `DELETE FROM ${SCHEMA}.runs WHERE created_at < now() - make_interval(days => $1) AND state IN ('succeeded', 'failed')`,
      [days],
    );
    return rowCount;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export function isUuid(value: string): boolean {
  return UUID.test(value);
}
