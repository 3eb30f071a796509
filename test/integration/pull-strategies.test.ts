import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Bundle, Observation, RiskAssessment } from 'fhir/r4.js';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { packagePath } from '../../src/core/paths.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import { PgBulkExportStore, StagingStore } from '../../src/db/staging.js';
import { DEMO_MODELS, seedDemo } from '../../src/demo/demo.js';
import { loadDiabetesRows } from '../../src/demo/diabetes-rows.js';
import { FhirClient } from '../../src/fhir/client.js';
import { createBulkPull } from '../../src/fhir/pull-bulk.js';
import { DEFAULT_PULL_OPTIONS } from '../../src/fhir/pull-options.js';
import { bulkStrategy, chooseStrategy, perPatientStrategy, type PullStrategyFactory } from '../../src/fhir/strategy.js';
import { startFhirServer, type RunningFhirServer } from '../../src/server/index.js';
import { prepareModels, type SyncModel } from '../../src/sync/models.js';
import { pullSpecFor } from '../../src/sync/pull-step.js';
import { runSync } from '../../src/sync/run.js';
import type { SyncResult } from '../../src/sync/totals.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../../src/writeback/identifiers.js';
import { createTestDatabase, type TestDatabase } from './support/service.js';

const ADAPTER = { modelsDir: packagePath('models'), mappingsDir: packagePath('mappings'), identifierSystem: DEFAULT_IDENTIFIER_SYSTEM };

/**
 * The pull strategies end to end on the embedded FHIR server, each on its own server seeded with the
 * same demo patients: the search strategy (reference); per-patient against a server that refuses
 * searches over several patients and Observation searches without a category (with the categories
 * stated in the mapping); bulk (export, staging in PostgreSQL, scoring, write-back). All three write the
 * same RiskAssessments and count the same exclusions. Plus: a refused multi-patient search named as
 * such, auto's choices, and an incremental bulk export (`_since`) that applies changes and deletions.
 */
const PATIENTS = 10;
const rows = loadDiabetesRows().slice(0, PATIENTS);
const dataAsOf = new Date(Date.now() - 86_400_000);
const asOf = new Date(Date.now() - 60_000);
const VITAL_SIGNS = new Set(['39156-5', '85354-9', '55284-4', '8480-6', '8462-4', '29463-7', '8302-2', '9279-1', '8867-4', '8310-5', '59408-5', '2708-6']);

let database: TestDatabase;
let db: Database;
let searchServer: RunningFhirServer;
let singlePatientServer: RunningFhirServer;
let bulkServer: RunningFhirServer;
let models: SyncModel[];
let categorisedModels: SyncModel[];
let mappingsDir: string;

beforeAll(async () => {
  database = await createTestDatabase('strategies');
  db = await openDatabase({ url: database.url });
  await migrate(db);
  [searchServer, singlePatientServer, bulkServer] = await Promise.all([
    startFhirServer({ port: 0 }),
    startFhirServer({ port: 0, requireSinglePatient: true, requireObservationCategory: true }),
    startFhirServer({ port: 0 }),
  ]);
  for (const s of [searchServer, singlePatientServer, bulkServer]) await seedDemo(s, rows, dataAsOf);
  models = await prepareModels(DEMO_MODELS, ADAPTER);

  // The same mappings, with the category each Observation code is filed under.
  mappingsDir = mkdtempSync(path.join(tmpdir(), 'fhir-ml-mappings-'));
  cpSync(packagePath('mappings'), mappingsDir, { recursive: true });
  for (const id of DEMO_MODELS) {
    const file = path.join(mappingsDir, `${id}.yaml`);
    const mapping = parseYaml(readFileSync(file, 'utf8')) as { features: { source: { kind: string; codes?: { code: string; category?: string }[]; panels?: { code: string; category?: string }[] } }[] };
    for (const f of mapping.features) {
      if (f.source.kind !== 'observation') continue;
      for (const c of [...(f.source.codes ?? []), ...(f.source.panels ?? [])]) c.category = VITAL_SIGNS.has(c.code) ? 'vital-signs' : 'laboratory';
    }
    writeFileSync(file, stringifyYaml(mapping));
  }
  categorisedModels = await prepareModels(DEMO_MODELS, { ...ADAPTER, mappingsDir });
});

afterAll(async () => {
  await Promise.all([...(models ?? []), ...(categorisedModels ?? [])].map((m) => m.runner.close()));
  await Promise.all([searchServer, singlePatientServer, bulkServer].map((s) => s?.close()));
  await db?.close();
  await database?.drop();
  if (mappingsDir) rmSync(mappingsDir, { recursive: true, force: true });
});

function sync(server: RunningFhirServer, m: SyncModel[], pullStrategy?: PullStrategyFactory): Promise<SyncResult> {
  return runSync(new FhirClient({ baseUrl: server.url }), m, {
    asOf,
    identifierSystem: ADAPTER.identifierSystem,
    // CarePlan proposals read the care of several patients per search: not for single-patient servers.
    carePlans: false,
    explain: true,
    collectPatients: true,
    pullStrategy,
  });
}

/** Every RiskAssessment on a server, by identifier, without what the server assigns (ids, meta, the Device's id). */
async function writtenAssessments(server: RunningFhirServer): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  let url: string | undefined = `${server.url}/RiskAssessment?_count=1000`;
  while (url) {
    const bundle = (await (await fetch(url)).json()) as Bundle;
    for (const e of bundle.entry ?? []) {
      const { id: _id, meta: _meta, ...ra } = e.resource as RiskAssessment;
      const text = JSON.stringify(ra).replace(/Device\/[A-Za-z0-9\-.]+/g, 'Device/model');
      out.set(ra.identifier![0].value!, JSON.parse(text));
    }
    url = bundle.link?.find((l) => l.relation === 'next')?.url;
  }
  return out;
}

const totals = (r: SyncResult) => ({ patients: r.patients, notFound: r.notFound, failed: r.failed, unattributed: r.unattributed, byModel: r.byModel });
const scored = (r: SyncResult) => Object.values(r.byModel).reduce((n, m) => n + m.scored, 0);

describe('pull strategies give the same RiskAssessments', () => {
  let reference: SyncResult;
  let expected: Map<string, unknown>;
  beforeAll(async () => {
    reference = await sync(searchServer, models);
    expected = await writtenAssessments(searchServer);
  });

  it('search: the reference run scores and writes', () => {
    expect(reference.aborted).toBeUndefined();
    expect(reference.failed).toBe(0);
    expect(scored(reference)).toBeGreaterThan(0);
    expect(expected.size).toBe(scored(reference));
  });

  it('per-patient, against a server refusing multi-patient and category-less searches, with categories in the mapping', async () => {
    const result = await sync(singlePatientServer, categorisedModels, perPatientStrategy({ patientConcurrency: 3 }));
    expect(result.aborted).toBeUndefined();
    expect(totals(result)).toEqual(totals(reference));
    expect(await writtenAssessments(singlePatientServer)).toEqual(expected);
  });

  it('bulk: export from the server, staging in PostgreSQL, scoring and write-back, staging purged after', async () => {
    const staging = new StagingStore(db);
    const exports = new PgBulkExportStore(db);
    const result = await sync(bulkServer, models, bulkStrategy({ sourceId: 'bulk-e2e', population: { kind: 'all' }, options: DEFAULT_PULL_OPTIONS.bulk, staging, exports }));
    expect(result.aborted).toBeUndefined();
    expect(totals(result)).toEqual(totals(reference));
    expect(await writtenAssessments(bulkServer)).toEqual(expected);
    expect(await staging.counts('bulk-e2e')).toEqual({});
    const last = await exports.lastComplete('bulk-e2e');
    expect(last).toBeDefined();
    const exported = await exports.get(last!.id);
    expect(exported?.report?.deletedOnServer).toBe(true);
  });
});

describe('refusals and the choice of a strategy', () => {
  it('names a refused multi-patient search and the strategy to use, and stops the run', async () => {
    const result = await sync(singlePatientServer, models);
    expect(result.aborted?.code).toBe('config-invalid');
    expect(result.aborted?.message).toContain('refuses searches over several patients');
    expect(result.aborted?.message).toContain('per-patient');
    expect((result.aborted?.error.details?.detailCodes as string[]).join()).toMatch(/single.patient.required/i);
  });

  it('names a refused Observation search without a category', async () => {
    const result = await sync(singlePatientServer, models, perPatientStrategy());
    expect(result.aborted?.code).toBe('config-invalid');
    expect(result.aborted?.message).toContain('requires a category on Observation searches');
  });

  it('auto: bulk where $export is offered and staging is possible, per-patient where multi-patient searches are refused, else search', async () => {
    const spec = pullSpecFor(models, asOf);
    const a = new FhirClient({ baseUrl: searchServer.url });
    expect((await chooseStrategy(a, spec, { bulkAvailable: true })).name).toBe('bulk');
    expect((await chooseStrategy(a, spec, { bulkAvailable: false })).name).toBe('search');
    const b = await chooseStrategy(new FhirClient({ baseUrl: singlePatientServer.url }), spec, { bulkAvailable: false });
    expect(b).toEqual({ name: 'per-patient', reason: expect.stringMatching(/refused \(single.patient.required\)/i) });
  });
});

describe('incremental bulk export', () => {
  it('exports only what changed since the kept staging, applies deletions, and names the changed patients', async () => {
    const server = await startFhirServer({ port: 0 });
    try {
      await seedDemo(server, rows.slice(0, 5), dataAsOf);
      const client = new FhirClient({ baseUrl: server.url });
      const staging = new StagingStore(db);
      const exports = new PgBulkExportStore(db);
      const deps = {
        client,
        spec: pullSpecFor(models, asOf),
        asOf,
        sourceId: 'incremental',
        population: { kind: 'all' as const },
        options: { ...DEFAULT_PULL_OPTIONS.bulk, retention: 'P1D' },
        staging,
        exports,
        changedOnly: true,
      };
      const first = createBulkPull(deps);
      await first.prepare();
      const all: string[] = [];
      for await (const page of first.patients(100)) all.push(...page);
      expect(all).toHaveLength(5);
      await first.close();
      expect((await staging.counts('incremental')).Patient).toBe(5); // kept: retention P1D

      // One result corrected, one entered in error and deleted.
      const glucose = (await (await fetch(`${server.url}/Observation/demo-0002-glu`)).json()) as Observation;
      const corrected = { ...glucose, status: 'corrected' as const, valueQuantity: { ...glucose.valueQuantity!, value: 123 } };
      expect((await fetch(`${server.url}/Observation/demo-0002-glu`, { method: 'PUT', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(corrected) })).status).toBe(200);
      expect((await fetch(`${server.url}/Observation/demo-0004-hdl`, { method: 'DELETE' })).status).toBeLessThan(300);

      const second = createBulkPull(deps);
      const report = await second.prepare();
      expect(report.deleted).toBe(1);
      expect(report.staged.Observation).toBe(1);
      const changed: string[] = [];
      for await (const page of second.patients(100)) changed.push(...page);
      expect(changed).toEqual(['demo-0002', 'demo-0004']);
      const pulled = await second.pull(changed);
      const obs = (id: string) => pulled.records.get(id)!.observations.map((o) => o.id);
      expect(pulled.records.get('demo-0002')!.observations.find((o) => o.id === 'demo-0002-glu')?.valueQuantity?.value).toBe(123);
      expect(obs('demo-0004')).not.toContain('demo-0004-hdl');
      expect(obs('demo-0004').length).toBeGreaterThan(0); // the rest of the record is still staged
      await staging.purge('incremental');
    } finally {
      await server.close();
    }
  });
});
