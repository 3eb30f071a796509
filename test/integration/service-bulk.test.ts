import type { Observation, RiskAssessment } from 'fhir/r4.js';
import { createApp, type App } from '../../src/app.js';
import { startService, type RunningService } from '../../src/api/service.js';
import { parseServiceConfig } from '../../src/config/sources.js';
import { SCHEMA } from '../../src/db/migrations.js';
import { RunStore, type OutcomeRow, type RunRow } from '../../src/db/runs.js';
import { StagingStore } from '../../src/db/staging.js';
import { startFaultProxy, type FaultProxy } from '../../src/fhir/testing/fault-proxy.js';
import type { RunningFhirServer } from '../../src/server/index.js';
import { API_KEY, API_KEY_SHA256, allRiskAssessments, createTestDatabase, seededFhirServer, waitFor, type TestDatabase } from './support/service.js';

/**
 * Bulk Data runs in the service, on the machine's PostgreSQL against three embedded FHIR servers seeded
 * with the same demo patients: a source pulled by search (the reference), one by bulk that purges its
 * staging after each run, and one by bulk that keeps it (so its next run exports `_since`). The bulk
 * source's server sits behind a fault proxy that fails the first export file download with no retries
 * left, so the run's first selection attempt dies mid-download and the retried one resumes the export.
 */
const PATIENTS = 10;
let database: TestDatabase;
let servers: Record<'search' | 'bulk' | 'kept', RunningFhirServer>;
let proxy: FaultProxy;
let keptProxy: FaultProxy;
/** Arms the kept source's proxy: the second export file downloaded gets a 500. */
let armed = false;
let keptDownloads = 0;
let ids: string[];
let app: App;
let service: RunningService;
let runs: RunStore;
let staging: StagingStore;

async function runNow(sourceId: string, body: Record<string, unknown> = {}): Promise<{ run: RunRow; outcomes: Map<string, OutcomeRow> }> {
  const response = await fetch(`${service.url}/sources/${sourceId}/runs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(response.status).toBe(202);
  const { run } = (await response.json()) as { run: RunRow };
  const done = await waitFor(
    `run ${run.id}`,
    async () => {
      const r = await runs.get(run.id);
      return r?.state === 'succeeded' || r?.state === 'failed' ? r : undefined;
    },
    120_000,
  );
  const { items } = await runs.outcomes(run.id, { limit: 1000 });
  return { run: done, outcomes: new Map(items.map((o) => [`${o.patientId}|${o.modelId}`, o])) };
}

/** RiskAssessments by identifier, without what each server assigns (ids, meta, the Device's id). */
async function written(server: RunningFhirServer): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  for (const ra of await allRiskAssessments(server.url)) {
    const { id: _id, meta: _meta, ...rest } = ra;
    out.set(ra.identifier![0].value!, JSON.parse(JSON.stringify(rest).replace(/Device\/[A-Za-z0-9\-.]+/g, 'Device/model')));
  }
  return out;
}

async function raiseGlucose(server: RunningFhirServer, patientId: string): Promise<void> {
  const glucose = (await (await fetch(`${server.url}/Observation/${patientId}-glu`)).json()) as Observation;
  const res = await fetch(`${server.url}/Observation/${patientId}-glu`, {
    method: 'PUT',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ ...glucose, valueQuantity: { ...glucose.valueQuantity, value: glucose.valueQuantity!.value! + 9 } }),
  });
  expect(res.ok).toBe(true);
}

const comparable = (o: OutcomeRow) => ({ status: o.status, reason: o.reason, probability: o.probability, band: o.band });

beforeAll(async () => {
  database = await createTestDatabase('bulkruns');
  const [search, bulk, kept] = await Promise.all([seededFhirServer(PATIENTS), seededFhirServer(PATIENTS), seededFhirServer(PATIENTS)]);
  servers = { search: search.server, bulk: bulk.server, kept: kept.server };
  ids = search.patientIds;
  const upstream = new URL(servers.bulk.url);
  proxy = await startFaultProxy({ target: upstream.origin, script: [{ match: (r) => r.method === 'GET' && r.url.includes('/$export-file/'), faults: ['500'] }] });
  keptProxy = await startFaultProxy({
    target: new URL(servers.kept.url).origin,
    script: [{ match: (r) => armed && r.method === 'GET' && r.url.includes('/$export-file/') && ++keptDownloads === 2, faults: ['500'] }],
  });
  // No retries in the client: the injected 500 fails the selection attempt, as a worker dying would.
  app = createApp({ env: { FHIR_ML_LOG_LEVEL: 'silent', FHIR_ML_MAX_RETRIES: '0' } });
  const source = (id: string, baseUrl: string, pull: Record<string, unknown>) => ({
    id,
    baseUrl,
    models: ['diabetes-progression'],
    options: { batchSize: 4, overlap: 'PT0S', rescoreInterval: 'P7D' },
    pull,
  });
  const config = parseServiceConfig(
    {
      service: {
        apiKeys: [{ name: 'test', sha256: API_KEY_SHA256 }],
        worker: { heartbeatSeconds: 1, heartbeatTimeoutSeconds: 5, retryLimit: 3, retryDelaySeconds: 1, pollingIntervalSeconds: 0.5, shutdownGraceSeconds: 5, batchConcurrency: 2 },
      },
      sources: [
        source('search', servers.search.url, { strategy: 'search' }),
        source('bulk', `${proxy.origin}${upstream.pathname}`, { strategy: 'bulk', bulk: { pollIntervalMs: 50 } }),
        source('kept', `${keptProxy.origin}${upstream.pathname}`, { strategy: 'bulk', bulk: { pollIntervalMs: 50, retention: 'P1D' } }),
      ],
    },
    { env: { DATABASE_URL: database.url } },
  );
  service = await startService({ config, app, listen: { port: 0 } });
  runs = new RunStore(service.db);
  staging = new StagingStore(service.db);
}, 120_000);

afterAll(async () => {
  await service?.stop({ graceSeconds: 1 });
  await app?.close();
  await proxy?.close();
  await keptProxy?.close();
  await Promise.all(Object.values(servers ?? {}).map((s) => s.close()));
  await database?.drop();
});

describe('bulk runs in the service', () => {
  const asOf = new Date(Date.now() - 60_000).toISOString();
  let reference: Awaited<ReturnType<typeof runNow>>;
  let expected: Map<string, unknown>;

  beforeAll(async () => {
    reference = await runNow('search', { asOf });
    expected = await written(servers.search);
  }, 120_000);

  it('export, staging, batches read from staging, write-back: the same RiskAssessments as the search strategy; staging purged after', async () => {
    expect(reference.run.state).toBe('succeeded');
    expect(expected.size).toBeGreaterThan(0);

    const { run, outcomes } = await runNow('bulk', { asOf });
    expect(run).toMatchObject({ state: 'succeeded', mode: 'full', patientsTotal: PATIENTS });
    // Resumed: the first selection attempt kicked the export off and died on its first file.
    expect(run.selection?.bulk).toMatchObject({ reason: 'configured', resumed: true, malformed: 0, errors: 0, unattributed: 0 });
    expect(run.selection!.bulk!.staged.Patient).toBe(PATIENTS);
    // The selection's own FHIR requests are counted: the resumed export's status poll, its files, the DELETE.
    expect(run.selection!.requests).toBeGreaterThanOrEqual(3);
    expect([...outcomes.keys()].sort()).toEqual([...reference.outcomes.keys()].sort());
    for (const [key, o] of outcomes) expect(comparable(o)).toEqual(comparable(reference.outcomes.get(key)!));
    expect(await written(servers.bulk)).toEqual(expected);
    // The batches read staging: no patient listing and no Condition search reached the server (the
    // CarePlan step's care reads are searches, after scoring).
    expect(proxy.log.filter((e) => e.method === 'GET' && (e.path.endsWith('/Patient') || e.path.endsWith('/Condition')))).toEqual([]);
    // Patient data does not outlive the run.
    expect(await staging.counts('bulk')).toEqual({});
  }, 120_000);

  it('a selection that died mid-download resumed the export: one kick-off, no file downloaded twice', () => {
    expect(proxy.injected()['500']).toBe(1);
    const kickOffs = proxy.log.filter((e) => e.path.endsWith('/$export') && e.forwarded);
    expect(kickOffs).toHaveLength(1);
    const downloads = proxy.log.filter((e) => e.path.includes('/$export-file/') && e.status === 200).map((e) => e.path);
    expect(downloads.length).toBeGreaterThan(0);
    expect(new Set(downloads).size).toBe(downloads.length);
  });

  it('a source that keeps staging: the next run exports only what changed and scores only that patient', async () => {
    const first = await runNow('kept', { asOf });
    expect(first.run).toMatchObject({ state: 'succeeded', mode: 'full', patientsTotal: PATIENTS });
    expect(await written(servers.kept)).toEqual(expected);
    expect((await staging.counts('kept')).Patient).toBe(PATIENTS);

    await new Promise((r) => setTimeout(r, 20));
    await raiseGlucose(servers.kept, ids[3]);
    const before = (await allRiskAssessments(servers.kept.url)).length;
    const second = await runNow('kept');
    expect(second.run).toMatchObject({ state: 'succeeded', mode: 'incremental', patientsTotal: 1 });
    expect(second.run.selection).toMatchObject({ changed: 1, stale: 0, total: 1 });
    // `_since` the first export: the changed Observation only.
    expect(second.run.selection!.bulk!.staged).toEqual({ Observation: 1 });
    expect([...second.outcomes.values()].map((o) => [o.patientId, o.status])).toEqual([[ids[3], 'scored']]);
    expect((await allRiskAssessments(servers.kept.url)).length).toBe(before + 1);
    expect((await staging.counts('kept')).Patient).toBe(PATIENTS);
  }, 120_000);

  it('a kept source with nothing changed selects nobody: the export it read last is not read again', async () => {
    const { run } = await runNow('kept');
    expect(run).toMatchObject({ state: 'succeeded', mode: 'incremental', patientsTotal: 0 });
    expect(run.selection).toMatchObject({ changed: 0, total: 0 });
  }, 120_000);

  it('a kept source whose staging outlived its retention exports in full; a selection that dies mid-download resumes without losing the files already staged', async () => {
    const before = await staging.counts('kept');
    await service.db.query(`UPDATE ${SCHEMA}.bulk_exports SET finished_at = now() - interval '3 days' WHERE source_id = 'kept' AND state = 'complete'`);
    armed = true;
    const { run, outcomes } = await runNow('kept');
    armed = false;
    expect(keptProxy.injected()['500']).toBe(1);
    expect(run).toMatchObject({ state: 'succeeded', mode: 'incremental', patientsTotal: PATIENTS });
    // A full export (no `_since`), resumed by the retried selection.
    expect(run.selection!.bulk).toMatchObject({ resumed: true, staged: { Patient: PATIENTS } });
    expect(await staging.counts('kept')).toEqual(before);
    // Every patient read in full: the same inputs as their last score, so nothing new is written.
    expect([...outcomes.values()].filter((o) => o.status === 'scored' || o.status === 'not-found')).toEqual([]);
  }, 120_000);

  it('a source that purges staging exports everything again; unchanged patients get no new RiskAssessment', async () => {
    await new Promise((r) => setTimeout(r, 20));
    await raiseGlucose(servers.bulk, ids[5]);
    const before = await allRiskAssessments(servers.bulk.url);
    const { run, outcomes } = await runNow('bulk');
    expect(run).toMatchObject({ state: 'succeeded', mode: 'incremental', patientsTotal: PATIENTS });
    const statuses = [...outcomes.values()].filter((o) => o.status !== 'unchanged').map((o) => [o.patientId, o.status]);
    expect(statuses.filter(([, s]) => s === 'scored')).toEqual([[ids[5], 'scored']]);
    const after = await allRiskAssessments(servers.bulk.url);
    const fresh = after.filter((ra) => !before.some((b) => b.id === ra.id)) as RiskAssessment[];
    expect(fresh.map((ra) => ra.subject.reference)).toEqual([`Patient/${ids[5]}`]);
    expect(await staging.counts('bulk')).toEqual({});
  }, 120_000);
});
