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
  {
    version: 2,
    name: 'bulk exports, staged resources, CDS Hooks cards, feedback and JWT ids',
    sql: `
-- Bulk Data exports a source has run or is running: the status URL as soon as the server gives it, the
-- manifest's files and which of them are staged, so a run that dies resumes without a second kick-off or
-- a second download.
CREATE TABLE ${SCHEMA}.bulk_exports (
  id bigserial PRIMARY KEY,
  source_id text NOT NULL,
  request_key text NOT NULL,
  level text NOT NULL,
  since timestamptz,
  status_url text NOT NULL,
  state text NOT NULL CHECK (state IN ('kicked-off', 'downloading', 'complete', 'failed', 'expired', 'abandoned')),
  transaction_time timestamptz,
  requires_access_token boolean,
  report jsonb,
  error_code text,
  error_message text,
  created_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
);
CREATE UNIQUE INDEX bulk_exports_one_open_per_source ON ${SCHEMA}.bulk_exports (source_id) WHERE state IN ('kicked-off', 'downloading');
CREATE INDEX bulk_exports_by_source ON ${SCHEMA}.bulk_exports (source_id, id DESC);

CREATE TABLE ${SCHEMA}.bulk_export_files (
  export_id bigint NOT NULL REFERENCES ${SCHEMA}.bulk_exports (id) ON DELETE CASCADE,
  seq integer NOT NULL,
  kind text NOT NULL CHECK (kind IN ('output', 'error', 'deleted')),
  resource_type text NOT NULL,
  url text NOT NULL,
  expected_count integer,
  state text NOT NULL CHECK (state IN ('pending', 'done')),
  counts jsonb,
  finished_at timestamptz,
  PRIMARY KEY (export_id, seq)
);

-- Staged resources, one row per resource of a source (the newest version wins), keyed by patient for
-- batch reads. Patient data: purged after the run unless the source keeps it for incremental exports.
CREATE TABLE ${SCHEMA}.staged_resources (
  source_id text NOT NULL,
  resource_type text NOT NULL,
  resource_id text NOT NULL,
  version_id text,
  last_updated timestamptz,
  patient_id text,
  export_id bigint NOT NULL,
  body jsonb NOT NULL,
  PRIMARY KEY (source_id, resource_type, resource_id)
);
-- Batches read by patient; an incremental export's changed patients are found through this index too.
CREATE INDEX staged_resources_by_patient ON ${SCHEMA}.staged_resources (source_id, patient_id);

-- Patients whose staged data an export deleted (incremental exports: they are scored again).
CREATE TABLE ${SCHEMA}.staged_changes (
  export_id bigint NOT NULL,
  patient_id text NOT NULL,
  PRIMARY KEY (export_id, patient_id)
);

-- CDS Hooks: cards handed out (ids, model and band only), feedback on them, and the ids of the JWTs
-- CDS Clients authenticated with (a JWT is accepted once).
CREATE TABLE ${SCHEMA}.cds_cards (
  uuid uuid PRIMARY KEY,
  service_id text NOT NULL,
  hook_instance text NOT NULL,
  model_id text NOT NULL,
  model_version text NOT NULL,
  patient_id text NOT NULL,
  band text,
  probability double precision,
  suggestion_ids text[] NOT NULL DEFAULT '{}',
  issuer text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cds_cards_by_created ON ${SCHEMA}.cds_cards (created_at);

CREATE TABLE ${SCHEMA}.cds_feedback (
  id bigserial PRIMARY KEY,
  service_id text NOT NULL,
  card_uuid text NOT NULL,
  card_known boolean NOT NULL,
  outcome text NOT NULL CHECK (outcome IN ('accepted', 'overridden')),
  accepted_suggestions text[] NOT NULL DEFAULT '{}',
  override_system text,
  override_code text,
  has_comment boolean NOT NULL DEFAULT false,
  outcome_at timestamptz NOT NULL,
  issuer text NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cds_feedback_by_card ON ${SCHEMA}.cds_feedback (card_uuid);

CREATE TABLE ${SCHEMA}.cds_jwt_ids (
  issuer text NOT NULL,
  jti text NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (issuer, jti)
);
CREATE INDEX cds_jwt_ids_by_expiry ON ${SCHEMA}.cds_jwt_ids (expires_at);
`,
  },
  {
    version: 3,
    name: 'selection heartbeats',
    sql: `
-- A run's selection step (which may run a Bulk Data export for hours) reports like a batch does, so the
-- selection of a worker that died is released for retry without waiting for its job's expiry.
ALTER TABLE ${SCHEMA}.runs ADD COLUMN selection_job_id uuid, ADD COLUMN selection_heartbeat_at timestamptz;
`,
  },
];
