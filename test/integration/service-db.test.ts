import { parseServiceConfig } from '../../src/config/sources.js';
import { systemClock } from '../../src/core/clock.js';
import { CdsHooksStore } from '../../src/db/cds-hooks.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import { MIGRATIONS, SCHEMA } from '../../src/db/migrations.js';
import { PatientScoreStore } from '../../src/db/patient-scores.js';
import { RunStore } from '../../src/db/runs.js';
import { SessionStore } from '../../src/db/sessions.js';
import { PgBulkExportStore, StagingStore } from '../../src/db/staging.js';
import { WatermarkStore } from '../../src/db/watermarks.js';
import { runRetention } from '../../src/jobs/retention.js';
import { createTestDatabase, type TestDatabase } from './support/service.js';

/** Migrations and stores on the machine's PostgreSQL, in a database of this file's own. */
let database: TestDatabase;
let a: Database;
let b: Database;

beforeAll(async () => {
  database = await createTestDatabase('db');
  a = await openDatabase({ url: database.url });
  b = await openDatabase({ url: database.url });
});

afterAll(async () => {
  await a?.close();
  await b?.close();
  await database?.drop();
});

test('two processes migrating at once apply each migration exactly once', async () => {
  const [ra, rb] = await Promise.all([migrate(a), migrate(b)]);
  expect([...ra.applied, ...rb.applied].sort()).toEqual(MIGRATIONS.map((m) => m.version));
  const { rows } = await a.query<{ version: number }>(`SELECT version FROM ${SCHEMA}.schema_migrations`);
  expect(rows.map((r) => r.version)).toEqual(MIGRATIONS.map((m) => m.version));
  expect((await migrate(a)).applied).toEqual([]);
});

test('an edited migration or a database newer than the adapter stops the start', async () => {
  const edited = MIGRATIONS.map((m) => (m.version === 1 ? { ...m, sql: `${m.sql}\n-- edited` } : m));
  await expect(migrate(a, { migrations: edited })).rejects.toThrow(/migration 1 .* differs/);
  await a.query(`INSERT INTO ${SCHEMA}.schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')`);
  try {
    await expect(migrate(a)).rejects.toThrow(/schema is at version 999, newer than this adapter knows/);
  } finally {
    await a.query(`DELETE FROM ${SCHEMA}.schema_migrations WHERE version = 999`);
  }
});

test('one active run per source; watermarks only move forward; patient scores keep the latest as-of', async () => {
  const runs = new RunStore(a);
  const first = await runs.create({ sourceId: 's1', trigger: 'api', asOf: new Date(), modelIds: ['m'] });
  expect(first.created).toBe(true);
  const second = await runs.create({ sourceId: 's1', trigger: 'api', asOf: new Date(), modelIds: ['m'] });
  expect(second).toEqual({ created: false, activeRunId: first.created ? first.run.id : '' });
  expect((await runs.create({ sourceId: 's2', trigger: 'api', asOf: new Date(), modelIds: ['m'] })).created).toBe(true);

  const marks = new WatermarkStore(a);
  const runId = first.created ? first.run.id : '';
  await a.transaction((tx) => marks.advance(tx, 's1', ['m'], new Date('2026-01-02T00:00:00Z'), runId));
  await a.transaction((tx) => marks.advance(tx, 's1', ['m'], new Date('2026-01-01T00:00:00Z'), runId));
  expect((await marks.get('s1', ['m'])).get('m')?.toISOString()).toBe('2026-01-02T00:00:00.000Z');

  const scores = new PatientScoreStore(a);
  const rec = (asOf: string, hash: string | null, version = '1.0.0') =>
    a.transaction((tx) => scores.record(tx, 's1', runId, [{ patientId: 'p1', modelId: 'm', modelVersion: version, inputHash: hash, asOf: new Date(asOf) }]));
  await rec('2026-01-02T00:00:00Z', 'h2');
  await rec('2026-01-01T00:00:00Z', 'h1'); // older: ignored
  expect((await scores.get('s1', 'm', ['p1'])).get('p1')).toMatchObject({ inputHash: 'h2', lastAsOf: new Date('2026-01-02T00:00:00Z') });
  await rec('2026-01-03T00:00:00Z', null); // no hash yet (today's executor): the last known one stays for the same version
  expect((await scores.get('s1', 'm', ['p1'])).get('p1')?.inputHash).toBe('h2');
  await rec('2026-01-04T00:00:00Z', null, '2.0.0'); // a new model version forgets the old hash
  expect((await scores.get('s1', 'm', ['p1'])).get('p1')).toMatchObject({ inputHash: null, modelVersion: '2.0.0' });
  expect(await scores.staleBefore('s1', ['m'], new Date('2026-01-05T00:00:00Z'))).toEqual(['p1']);
  expect(await scores.staleBefore('s1', ['m'], new Date('2026-01-04T00:00:00Z'))).toEqual([]);
});

test('retention deletes finished runs older than the setting with their batches and outcomes, and expired sessions', async () => {
  const runs = new RunStore(a);
  const created = await runs.create({ sourceId: 'old', trigger: 'api', asOf: new Date(), modelIds: ['m'] });
  if (!created.created) throw new Error('not created');
  const id = created.run.id;
  await runs.markSelecting(id);
  await a.transaction(async (tx) => {
    await runs.fanOut(tx, id, { mode: 'full', changesUntil: new Date(), selection: { total: 1 }, batchSizes: [1] });
  });
  const claim = await runs.claimBatch(id, 0, '00000000-0000-4000-8000-000000000001', 'w');
  await a.transaction((tx) =>
    runs.completeBatch(tx, { runId: id, seq: 0, attempt: claim!.attempt, outcomes: [{ patientId: 'p', modelId: 'm', status: 'scored', probability: 0.4, band: 'moderate' }], exclusions: [], requests: 3, durationMs: 10 }),
  );
  expect((await runs.get(id))?.state).toBe('succeeded');
  await a.query(`UPDATE ${SCHEMA}.runs SET created_at = now() - interval '100 days' WHERE id = $1`, [id]);
  expect(await runs.deleteOlderThan(90)).toBe(1);
  expect(await runs.get(id)).toBeUndefined();
  const { rows } = await a.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${SCHEMA}.patient_outcomes WHERE run_id = $1`, [id]);
  expect(rows[0].n).toBe(0);

  const sessions = new SessionStore(a);
  const live = await sessions.create('key:x', 60_000);
  const dead = await sessions.create('key:y', -1000);
  expect(await sessions.principalOf(live.id)).toBe('key:x');
  expect(await sessions.principalOf(dead.id)).toBeUndefined();
  expect(await sessions.deleteExpired()).toBe(1);
});

test('a run fans out only from selecting: a failed run, or one another attempt fanned out, stays as it is', async () => {
  const runs = new RunStore(a);
  const created = await runs.create({ sourceId: 'fanout', trigger: 'api', asOf: new Date(), modelIds: ['m'] });
  if (!created.created) throw new Error('not created');
  const id = created.run.id;
  await runs.markSelecting(id);
  const plan = { mode: 'full' as const, changesUntil: new Date(), selection: { total: 1 }, batchSizes: [1] };
  expect(await a.transaction((tx) => runs.fanOut(tx, id, plan))).toBe(true);
  expect(await a.transaction((tx) => runs.fanOut(tx, id, plan))).toBe(false);
  expect((await runs.batches(id)).length).toBe(1);

  const other = await runs.create({ sourceId: 'fanout-failed', trigger: 'api', asOf: new Date(), modelIds: ['m'] });
  if (!other.created) throw new Error('not created');
  await runs.markSelecting(other.run.id);
  await runs.failRun(other.run.id, 'selection-failed', 'selecting the patients failed on every attempt');
  expect(await a.transaction((tx) => runs.fanOut(tx, other.run.id, plan))).toBe(false);
  expect((await runs.get(other.run.id))?.state).toBe('failed');
});

test('a batch result from an attempt that another worker has taken over is dropped', async () => {
  const runs = new RunStore(a);
  const created = await runs.create({ sourceId: 'takeover', trigger: 'api', asOf: new Date(), modelIds: ['m'] });
  if (!created.created) throw new Error('not created');
  const id = created.run.id;
  await runs.markSelecting(id);
  await a.transaction((tx) => runs.fanOut(tx, id, { mode: 'full', changesUntil: new Date(), selection: { total: 1 }, batchSizes: [1] }));
  const stale = await runs.claimBatch(id, 0, '00000000-0000-4000-8000-000000000002', 'dead');
  const current = await runs.claimBatch(id, 0, '00000000-0000-4000-8000-000000000002', 'alive');
  const outcome = { patientId: 'p', modelId: 'm', status: 'scored' as const };
  expect(await a.transaction((tx) => runs.completeBatch(tx, { runId: id, seq: 0, attempt: stale!.attempt, outcomes: [outcome], exclusions: [], requests: 1, durationMs: 1 }))).toBeUndefined();
  const done = await a.transaction((tx) => runs.completeBatch(tx, { runId: id, seq: 0, attempt: current!.attempt, outcomes: [outcome], exclusions: [], requests: 1, durationMs: 1 }));
  expect(done).toMatchObject({ state: 'succeeded', finished: true });
});

test('the retention job purges old CDS Hooks records, leftover staging and old export records, and keeps what a source still keeps', async () => {
  const cds = new CdsHooksStore(a);
  await cds.recordCards(
    ['0', '1'].map((n) => ({ uuid: `00000000-0000-4000-8000-00000000000${n}`, serviceId: 's', hookInstance: 'h', modelId: 'm', modelVersion: '1', patientId: 'p', suggestionIds: [], issuer: 'i' })),
  );
  await cds.recordFeedback([{ serviceId: 's', card: '00000000-0000-4000-8000-000000000000', outcome: 'accepted', acceptedSuggestions: [], hasComment: false, outcomeAt: new Date(), issuer: 'i' }]);
  await a.query(`UPDATE ${SCHEMA}.cds_cards SET created_at = now() - interval '100 days' WHERE uuid = '00000000-0000-4000-8000-000000000000'`);
  await a.query(`UPDATE ${SCHEMA}.cds_feedback SET received_at = now() - interval '100 days'`);

  // Three sources with staged data: one that keeps nothing (a run ended early), one within its retention,
  // one whose export is still open (the next run resumes it).
  const exports = new PgBulkExportStore(a);
  const staging = new StagingStore(a);
  const stage = async (sourceId: string, complete: boolean) => {
    const id = await exports.create(sourceId, 'k', { level: 'patient' }, `https://ehr.example/status/${sourceId}`);
    await staging.stage(sourceId, id, [{ resourceType: 'Patient', id: 'p1', patientId: 'p1', json: '{"resourceType":"Patient","id":"p1"}' }]);
    if (complete) await exports.close(id, 'complete');
    return id;
  };
  const oldExport = await stage('purged', true);
  await a.query(`UPDATE ${SCHEMA}.bulk_exports SET finished_at = now() - interval '100 days' WHERE id = $1`, [oldExport]);
  await stage('purged', true);
  await stage('kept', true);
  await stage('open', false);
  // An export a run left open two days ago and never resumed; a source no longer in the sources file;
  // a CLI run's staging (its key is the FHIR server's URL, hashed).
  const stale = await stage('stale', false);
  await a.query(`UPDATE ${SCHEMA}.bulk_exports SET created_at = now() - interval '2 days' WHERE id = $1`, [stale]);
  await stage('gone', true);
  await stage('fhir-0123456789ab', true);
  const source = (id: string, retention: string) => parseServiceConfig({ sources: [{ id, baseUrl: 'https://ehr.example/fhir', models: ['m'], pull: { strategy: 'bulk', bulk: { retention } } }] }, { env: {} }).sources[0];
  const report = await runRetention(a, { retentionDays: 90, sources: [source('purged', 'PT0S'), source('kept', 'P1D'), source('open', 'PT0S'), source('stale', 'PT0S')] }, systemClock);

  expect(report).toMatchObject({ cdsRecords: 2, stagedResources: 3, exports: 1 });
  expect(await staging.counts('stale')).toEqual({});
  expect((await exports.get(stale))?.state).toBe('abandoned');
  expect(await staging.counts('gone')).toEqual({});
  expect(await staging.counts('fhir-0123456789ab')).toEqual({ Patient: 1 });
  expect(await staging.counts('purged')).toEqual({});
  expect(await staging.counts('kept')).toEqual({ Patient: 1 });
  expect(await staging.counts('open')).toEqual({ Patient: 1 });
  expect(await exports.get(oldExport)).toBeUndefined();
  expect((await exports.lastComplete('purged'))?.id).toBeDefined();
  const { rows } = await a.query<{ uuid: string }>(`SELECT uuid::text FROM ${SCHEMA}.cds_cards`);
  expect(rows.map((r) => r.uuid)).toEqual(['00000000-0000-4000-8000-000000000001']);
});
