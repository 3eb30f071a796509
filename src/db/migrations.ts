/**
 * The adapter's own tables, as numbered migrations. A migration is never edited once released (its
 * checksum is recorded and checked at start); a change is a new migration. Everything lives in the
 * `fhirml` schema, beside pg-boss's `pgboss` schema, so the adapter can share a database.
 *
 * What is kept: runs, their batches, per-patient outcomes (ids, model, status, reason or error code,
 * probability and band: never names or resource bodies), exclusion counts, timings, watermarks, the
 * per-patient input hash of the last score, and console sessions (hashed).
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const SCHEMA = 'fhirml';

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'runs, batches, outcomes, exclusions, watermarks, patient scores, sessions',
    sql: `
CREATE TABLE ${SCHEMA}.runs (
  id uuid PRIMARY KEY,
  source_id text NOT NULL,
  state text NOT NULL CHECK (state IN ('queued', 'selecting', 'running', 'succeeded', 'failed')),
  trigger text NOT NULL,
  mode text CHECK (mode IN ('full', 'incremental')),
  as_of timestamptz NOT NULL,
  model_ids text[] NOT NULL,
  changes_since timestamptz,
  changes_until timestamptz,
  selection jsonb,
  batches_total integer NOT NULL DEFAULT 0,
  patients_total integer NOT NULL DEFAULT 0,
  error_code text,
  error_message text,
  created_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  finished_at timestamptz
);
-- A source never runs twice at once, across all processes and machines sharing the database.
CREATE UNIQUE INDEX runs_one_active_per_source ON ${SCHEMA}.runs (source_id) WHERE state IN ('queued', 'selecting', 'running');
CREATE INDEX runs_by_created ON ${SCHEMA}.runs (created_at DESC);
CREATE INDEX runs_by_source ON ${SCHEMA}.runs (source_id, created_at DESC);

CREATE TABLE ${SCHEMA}.run_batches (
  run_id uuid NOT NULL REFERENCES ${SCHEMA}.runs (id) ON DELETE CASCADE,
  seq integer NOT NULL,
  state text NOT NULL CHECK (state IN ('queued', 'running', 'retrying', 'succeeded', 'failed')),
  patient_count integer NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  job_id uuid,
  worker text,
  heartbeat_at timestamptz,
  requests integer,
  duration_ms integer,
  error_code text,
  error_message text,
  started_at timestamptz,
  finished_at timestamptz,
  PRIMARY KEY (run_id, seq)
);
CREATE INDEX run_batches_running ON ${SCHEMA}.run_batches (heartbeat_at) WHERE state = 'running';

CREATE TABLE ${SCHEMA}.patient_outcomes (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  run_id uuid NOT NULL REFERENCES ${SCHEMA}.runs (id) ON DELETE CASCADE,
  batch_seq integer NOT NULL,
  patient_id text NOT NULL,
  model_id text NOT NULL,
  model_version text,
  status text NOT NULL CHECK (status IN ('scored', 'skipped', 'failed', 'not-found', 'unchanged')),
  reason text,
  probability double precision,
  band text,
  write text,
  fetched integer,
  used integer,
  excluded integer,
  excluded_by_reason jsonb,
  explanation jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (run_id, patient_id, model_id)
);
CREATE INDEX patient_outcomes_by_run ON ${SCHEMA}.patient_outcomes (run_id, model_id, status);
CREATE INDEX patient_outcomes_by_batch ON ${SCHEMA}.patient_outcomes (run_id, batch_seq);

CREATE TABLE ${SCHEMA}.run_exclusions (
  run_id uuid NOT NULL REFERENCES ${SCHEMA}.runs (id) ON DELETE CASCADE,
  batch_seq integer NOT NULL,
  model_id text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('excluded', 'part-issue', 'skipped')),
  reason text NOT NULL,
  count integer NOT NULL,
  PRIMARY KEY (run_id, batch_seq, model_id, kind, reason)
);

CREATE TABLE ${SCHEMA}.watermarks (
  source_id text NOT NULL,
  model_id text NOT NULL,
  watermark timestamptz NOT NULL,
  run_id uuid,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (source_id, model_id)
);

CREATE TABLE ${SCHEMA}.patient_scores (
  source_id text NOT NULL,
  model_id text NOT NULL,
  patient_id text NOT NULL,
  model_version text NOT NULL,
  input_hash text,
  last_as_of timestamptz NOT NULL,
  last_run_id uuid,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (source_id, model_id, patient_id)
);
CREATE INDEX patient_scores_by_age ON ${SCHEMA}.patient_scores (source_id, model_id, last_as_of);

CREATE TABLE ${SCHEMA}.console_sessions (
  id_hash text PRIMARY KEY,
  principal text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
`,
  },
];
