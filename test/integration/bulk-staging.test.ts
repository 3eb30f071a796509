import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { packagePath } from '../../src/core/paths.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import { PgBulkExportStore, StagingStore } from '../../src/db/staging.js';
import { BulkDataClient, runBulkExport, type StagedResource } from '../../src/fhir/bulk/index.js';
import { FhirClient } from '../../src/fhir/client.js';
import { startBulkPeer, type BulkPeer } from '../../src/fhir/testing/bulk-peer.js';
import { createTestDatabase, waitFor, type TestDatabase } from './support/service.js';

/**
 * Staging on the machine's PostgreSQL (a database of this file's own) and on the embedded PGlite:
 * idempotent upserts, newest version wins, patient batches, deletions, purge; and an export whose
 * process is killed with SIGKILL mid-download, resumed without downloading finished files again.
 */
let database: TestDatabase;
let pg: Database;
let child: ChildProcess | undefined;
const peers: BulkPeer[] = [];

beforeAll(async () => {
  database = await createTestDatabase('staging');
  pg = await openDatabase({ url: database.url });
  await migrate(pg);
});

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await Promise.all(peers.map((p) => p.close()));
  await pg?.close();
  await database?.drop();
});

const row = (resourceType: string, id: string, patientId: string | undefined, lastUpdated: string, extra: object = {}): StagedResource => ({
  resourceType,
  id,
  lastUpdated,
  ...(patientId ? { patientId } : {}),
  json: JSON.stringify({ resourceType, id, meta: { lastUpdated }, ...extra }),
});

describe.each([
  ['PostgreSQL', async () => pg],
  ['embedded PGlite', async () => {
    const db = await openDatabase({ dataDir: 'memory://' });
    await migrate(db);
    return db;
  }],
])('staging on %s', (_name, open) => {
  let db: Database;
  let staging: StagingStore;
  beforeAll(async () => {
    db = await open();
    staging = new StagingStore(db);
  });
  afterAll(async () => {
    if (db !== pg) await db.close();
  });

  it('upserts idempotently, keeps the newest version, reads patients in pages and batches', async () => {
    const source = `s-${Math.random().toString(36).slice(2, 8)}`;
    const rows = [
      row('Patient', 'p1', 'p1', '2025-01-01T00:00:00Z'),
      row('Patient', 'p2', 'p2', '2025-01-01T00:00:00Z'),
      row('Patient', 'p3', 'p3', '2025-01-01T00:00:00Z'),
      row('Observation', 'o1', 'p1', '2025-01-02T00:00:00Z', { status: 'final' }),
      row('Observation', 'o2', 'p2', '2025-01-02T00:00:00Z'),
      row('Observation', 'o3', undefined, '2025-01-02T00:00:00Z'),
      row('Observation', 'o4', 'p9', '2025-01-02T00:00:00Z'),
    ];
    await staging.stage(source, '1', rows);
    await staging.stage(source, '1', rows); // a file downloaded again
    expect(await staging.counts(source)).toEqual({ Observation: 4, Patient: 3 });

    // An older copy does not overwrite a newer one; a newer one does.
    await staging.stage(source, '1', [row('Observation', 'o1', 'p1', '2024-12-01T00:00:00Z', { status: 'preliminary' })]);
    expect((await staging.resourcesOf(source, ['p1'])).find((r) => r.id === 'o1')!.body.status).toBe('final');
    await staging.stage(source, '1', [row('Observation', 'o1', 'p1', '2025-02-01T00:00:00Z', { status: 'amended' })]);
    expect((await staging.resourcesOf(source, ['p1'])).find((r) => r.id === 'o1')!.body.status).toBe('amended');

    expect(await staging.patientIds(source, { limit: 2 })).toEqual(['p1', 'p2']);
    expect(await staging.patientIds(source, { after: 'p2', limit: 2 })).toEqual(['p3']);
    const batch = await staging.resourcesOf(source, ['p1', 'p2']);
    expect(batch.map((r) => `${r.resourceType}/${r.id}`).sort()).toEqual(['Observation/o1', 'Observation/o2', 'Patient/p1', 'Patient/p2']);

    const orphans = await staging.unattributed(source);
    expect(orphans).toEqual({
      total: 2,
      items: [
        { reference: 'Observation/o3', detail: 'missing-subject' },
        { reference: 'Observation/o4', detail: 'patient-not-found' },
      ],
    });

    // Deletions name the patients whose data changed; an incremental export's changed patients include them.
    expect(await staging.remove(source, '2', [{ resourceType: 'Observation', id: 'o2' }, { resourceType: 'Observation', id: 'nope' }])).toBe(1);
    await staging.stage(source, '2', [row('Observation', 'o5', 'p3', '2025-03-01T00:00:00Z')]);
    expect(await staging.patientIds(source, { limit: 10, changedIn: '2' })).toEqual(['p2', 'p3']);

    expect(await staging.purge(source)).toBe(7);
    expect(await staging.counts(source)).toEqual({});
  });

  it('stages 5,000 rows in one statement per chunk', async () => {
    const source = `big-${Math.random().toString(36).slice(2, 8)}`;
    const rows = Array.from({ length: 5000 }, (_, i) => row('Observation', `o${i}`, `p${i % 100}`, '2025-01-01T00:00:00Z', { value: i }));
    for (let i = 0; i < rows.length; i += 1000) await staging.stage(source, '1', rows.slice(i, i + 1000));
    expect(await staging.counts(source)).toEqual({ Observation: 5000 });
    await staging.purge(source);
  });
});

describe('an export killed mid-download', () => {
  it('resumes without a second kick-off and without downloading the files already staged', async () => {
    const patients = Array.from({ length: 120 }, (_, i) => JSON.stringify({ resourceType: 'Patient', id: `p${i}`, meta: { lastUpdated: '2025-01-01T00:00:00Z' } }));
    const observations = Array.from({ length: 400 }, (_, i) =>
      JSON.stringify({ resourceType: 'Observation', id: `o${i}`, status: 'final', code: { text: 'x' }, subject: { reference: `Patient/p${i % 120}` }, meta: { lastUpdated: '2025-01-01T00:00:00Z' } }),
    );
    const peer = await startBulkPeer({
      statusScript: [{ status: 202, headers: { 'retry-after': '0' } }],
      files: [
        { kind: 'output', type: 'Patient', lines: patients },
        { kind: 'output', type: 'Observation', lines: observations, stallFirstAfter: 250 },
      ],
    });
    peers.push(peer);

    const lines: string[] = [];
    child = spawn(process.execPath, ['--import', 'tsx', path.join(packagePath('test', 'integration', 'support'), 'bulk-child.ts')], {
      cwd: packagePath(),
      env: { ...process.env, TEST_DATABASE_URL: database.url, TEST_FHIR_URL: peer.baseUrl },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    child.stdout!.on('data', (chunk: Buffer) => lines.push(...chunk.toString().split('\n').filter(Boolean)));
    await waitFor('file 1 staged by the child', async () => lines.includes('FILE_DONE 1'), 60_000);
    await peer.stalled;
    // The child has staged part of file 2 (chunks of 50) when it dies.
    await waitFor('part of file 2 staged', async () => ((await new StagingStore(pg).counts('resume')).Observation ?? 0) >= 200, 30_000);
    child.kill('SIGKILL');
    await new Promise((resolve) => child!.once('exit', resolve));
    expect(lines).not.toContain('EXPORT_DONE');

    const exportsStore = new PgBulkExportStore(pg);
    const open = await exportsStore.open('resume');
    expect(open?.done.has(1)).toBe(true);
    expect(open?.done.has(2)).toBe(false);

    const bulk = new BulkDataClient(new FhirClient({ baseUrl: peer.baseUrl }), { pollIntervalMs: 50 });
    const report = await runBulkExport(bulk, exportsStore, new StagingStore(pg), {
      sourceId: 'resume',
      request: { level: { kind: 'patient' }, types: ['Patient', 'Observation'] },
    });
    expect(report.resumed).toBe(true);
    expect(peer.kickOffs).toHaveLength(1);
    expect(peer.downloads.get(1)).toHaveLength(1);
    expect(peer.downloads.get(2)).toHaveLength(2);
    expect(report.files).toMatchObject({ downloaded: 1, alreadyStaged: 1 });
    expect(report.staged).toEqual({ Patient: 120, Observation: 400 });
    expect(await new StagingStore(pg).counts('resume')).toEqual({ Observation: 400, Patient: 120 });
    expect(peer.deletes).toHaveLength(1);
    expect((await exportsStore.get(report.exportId))?.state).toBe('complete');
    expect(await exportsStore.open('resume')).toBeUndefined();
  });
});
