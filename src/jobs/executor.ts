import type { ExclusionCount, OutcomeInput } from '../db/runs.js';

/**
 * The seam between the queue and the scoring pipeline: one batch of one run, executed. The queue owns
 * retries, ownership and bookkeeping; the executor owns pull -> map -> infer -> plan -> write.
 *
 * Contract:
 * - Idempotent: executing the same input twice writes nothing new (deterministic identifiers and
 *   conditional creates), so a batch may be retried or taken over from a dead worker.
 * - All or nothing: when any part of the batch fails, it throws (an AdapterError, `transient` saying
 *   whether a retry can help) and reports nothing; the queue retries the whole batch.
 * - Every requested patient appears in `outcomes` once per model (scored, skipped with a reason,
 *   unchanged, not-found), so counts reconcile with the batch's size.
 */
export interface BatchInput {
  runId: string;
  batchSeq: number;
  sourceId: string;
  patientIds: string[];
  modelIds: string[];
  asOf: Date;
  /** The run staged its Bulk Data export: the batch reads its patients from staging. */
  staged?: boolean;
  /** Aborted when the worker shuts down or loses the batch; an executor may stop early and throw. */
  signal?: AbortSignal;
}

export interface BatchPatientOutcome extends OutcomeInput {
  /** sha256 of the input vector and model version, when the executor can see the vector. */
  inputHash?: string;
}

export interface BatchReport {
  outcomes: BatchPatientOutcome[];
  /** Excluded resources, parts and skipped patients, by model and reason. */
  exclusions: ExclusionCount[];
  /** FHIR HTTP exchanges of the batch (pages, reads, transactions). */
  requests: number;
  /** Resources returned by searches that belonged to no patient of the batch. */
  unattributed: number;
  durationMs: number;
}

export type BatchExecutor = (input: BatchInput) => Promise<BatchReport>;
