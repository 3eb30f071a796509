import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Bundle, CarePlan, Observation, Procedure, Resource, RiskAssessment, ServiceRequest } from 'fhir/r4.js';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { packagePath } from '../../src/core/paths.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import { PgBulkExportStore, StagingStore } from '../../src/db/staging.js';
import { DEMO_MODELS, seedDemo } from '../../src/demo/demo.js';
import { demoPatientId } from '../../src/demo/seed.js';
import { loadDiabetesRows } from '../../src/demo/diabetes-rows.js';
import { FhirClient, type SearchPage, type SearchParams } from '../../src/fhir/client.js';
import { createBulkPull } from '../../src/fhir/pull-bulk.js';
import { DEFAULT_PULL_OPTIONS } from '../../src/fhir/pull-options.js';
import type { CarePullResult, CarePullSpec } from '../../src/fhir/care-pull.js';
import { bulkStrategy, chooseStrategy, perPatientStrategy, searchStrategy, type PullStrategyFactory } from '../../src/fhir/strategy.js';
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
  for (const s of [searchServer, singlePatientServer, bulkServer]) {
    await seedDemo(s, rows, dataAsOf);
    await s.load(existingCare() as Parameters<RunningFhirServer['load']>[0]);
  }
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

const SCT = 'http://snomed.info/sct';
const ADDITIONAL = 'https://fhir-ml-adapter.dev/test/care';

/**
 * Care four patients about to get proposals already have, one of each kind the care read looks for: a
 * recent HbA1c result (filed under laboratory), an active dietitian referral, a recent blood-pressure
 * review, an active care plan with an HbA1c activity.
 */
function existingCare(): Resource[] {
  const subject = (id: string) => ({ reference: `Patient/${id}` });
  const recently = new Date(dataAsOf.getTime() - 20 * 86_400_000).toISOString();
  return [
    {
      resourceType: 'Observation',
      id: 'care-0001-hba1c',
      status: 'final',
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }],
      code: { coding: [{ system: 'http://loinc.org', code: '4548-4' }] },
      subject: subject('demo-0001'),
      effectiveDateTime: recently,
      valueQuantity: { value: 7.4, unit: '%', system: 'http://unitsofmeasure.org', code: '%' },
    } as Observation,
    { resourceType: 'ServiceRequest', id: 'care-0003-dietitian', status: 'active', intent: 'order', code: { coding: [{ system: SCT, code: '103699006' }] }, subject: subject('demo-0003'), authoredOn: recently } as ServiceRequest,
    { resourceType: 'Procedure', id: 'care-0008-bp', status: 'completed', code: { coding: [{ system: SCT, code: '46973005' }] }, subject: subject('demo-0008'), performedDateTime: recently } as Procedure,
    {
      resourceType: 'CarePlan',
      id: 'care-0010-plan',
      identifier: [{ system: ADDITIONAL, value: 'plan-0010' }],
      status: 'active',
      intent: 'plan',
      subject: subject('demo-0010'),
      activity: [{ detail: { status: 'scheduled', code: { coding: [{ system: SCT, code: '43396009' }] } } }],
    } as CarePlan,
  ];
}

function sync(server: RunningFhirServer, m: SyncModel[], pullStrategy?: PullStrategyFactory): Promise<SyncResult> {
  return runSync(new FhirClient({ baseUrl: server.url }), m, {
    asOf,
    identifierSystem: ADAPTER.identifierSystem,
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

/**
 * This adapter's CarePlans on a server (read one patient at a time, as a single-patient server wants), by
 * identifier, without what the server assigns: ids and meta, the Device's id, the RiskAssessment's id
 * (named by its identifier instead), and the content hash (it covers the Device reference).
 */
async function writtenCarePlans(server: RunningFhirServer): Promise<Map<string, unknown>> {
  const assessments = new Map<string, string>();
  for (const ra of await all<RiskAssessment>(server, 'RiskAssessment')) assessments.set(`RiskAssessment/${ra.id}`, `RiskAssessment/{${ra.identifier![0].value}}`);
  const out = new Map<string, unknown>();
  const plans: CarePlan[] = [];
  for (let i = 0; i < PATIENTS; i++) plans.push(...(await all<CarePlan>(server, 'CarePlan', `patient=${demoPatientId(i)}`)));
  for (const { id: _id, meta: _meta, ...plan } of plans) {
    if (plan.identifier?.[0]?.system !== ADAPTER.identifierSystem) continue;
    const text = JSON.stringify(plan)
      .replace(/"url":"contentHash","valueString":"[0-9a-f]+"/g, '"url":"contentHash"')
      .replace(/Device\/[A-Za-z0-9\-.]+/g, 'Device/model')
      .replace(/RiskAssessment\/[A-Za-z0-9\-.]+/g, (ref) => assessments.get(ref) ?? ref);
    out.set(plan.identifier![0].value!, JSON.parse(text));
  }
  return out;
}

/** `Patient/x: activity, activity` per CarePlan. */
const proposals = (plans: Map<string, unknown>) =>
  [...(plans.values() as Iterable<CarePlan>)].map((p) => `${p.subject.reference}: ${(p.activity ?? []).map((a) => a.detail?.code?.text).join(', ')}`);
const orderNote = (plan: unknown) => (plan as CarePlan).note?.find((n) => n.text.startsWith('Order:'))?.text;
/** The CarePlans without their order note (and the narrative, which repeats the notes). */
function withoutOrderNote(plans: Map<string, unknown>): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [key, { text: _text, ...plan }] of plans as Map<string, CarePlan>) out.set(key, { ...plan, note: plan.note?.filter((n) => !n.text.startsWith('Order:')) });
  return out;
}

async function all<T extends Resource>(server: RunningFhirServer, type: string, query = ''): Promise<T[]> {
  const out: T[] = [];
  let url: string | undefined = `${server.url}/${type}?_count=1000${query ? `&${query}` : ''}`;
  while (url) {
    const bundle = (await (await fetch(url)).json()) as Bundle;
    out.push(...(bundle.entry ?? []).map((e) => e.resource as T));
    url = bundle.link?.find((l) => l.relation === 'next')?.url;
  }
  return out;
}

const totals = (r: SyncResult) => ({ patients: r.patients, notFound: r.notFound, failed: r.failed, unattributed: r.unattributed, byModel: r.byModel });
const scored = (r: SyncResult) => Object.values(r.byModel).reduce((n, m) => n + m.scored, 0);

describe('pull strategies give the same RiskAssessments', () => {
  let reference: SyncResult;
  let expected: Map<string, unknown>;
  let expectedCarePlans: Map<string, unknown>;
  beforeAll(async () => {
    reference = await sync(searchServer, models);
    expected = await writtenAssessments(searchServer);
    expectedCarePlans = await writtenCarePlans(searchServer);
  });

  it('search: the reference run scores and writes', () => {
    expect(reference.aborted).toBeUndefined();
    expect(reference.failed).toBe(0);
    expect(scored(reference)).toBeGreaterThan(0);
    expect(expected.size).toBe(scored(reference));
    // CarePlans are proposed, and what four patients already have is left out of theirs.
    expect(expectedCarePlans.size).toBeGreaterThan(0);
    expect(reference.byModel['diabetes-progression'].carePlans.created).toBe(expectedCarePlans.size - reference.byModel.curb65.carePlans.created);
    expect(proposals(expectedCarePlans)).toEqual(
      expect.arrayContaining([
        'Patient/demo-0001: Dietitian referral',
        'Patient/demo-0003: HbA1c every 3 months',
        'Patient/demo-0008: Lipid-lowering therapy review',
        'Patient/demo-0010: Dietitian referral',
      ]),
    );
  });

  it('per-patient, against a server refusing multi-patient and category-less searches, with categories in the mapping', async () => {
    const result = await sync(singlePatientServer, categorisedModels, perPatientStrategy({ patientConcurrency: 3 }));
    expect(result.aborted).toBeUndefined();
    expect(totals(result)).toEqual(totals(reference));
    expect(await writtenAssessments(singlePatientServer)).toEqual(expected);
    // The same CarePlans, but for the order note: a server that refuses CarePlan searches naming no
    // patient cannot give the acceptance of earlier proposals, and the note says so.
    const plans = await writtenCarePlans(singlePatientServer);
    expect(plans.size).toBe(expectedCarePlans.size);
    expect(withoutOrderNote(plans)).toEqual(withoutOrderNote(expectedCarePlans));
    for (const plan of plans.values()) expect(orderNote(plan)).toMatch(/acceptance of this adapter's earlier proposals is not used: this server does not search CarePlans across patients/);
    for (const plan of expectedCarePlans.values()) expect(orderNote(plan)).toMatch(/\(none decided yet\)/);
  });

  it('bulk: export from the server, staging in PostgreSQL, scoring and write-back, staging purged after', async () => {
    const staging = new StagingStore(db);
    const exports = new PgBulkExportStore(db);
    const result = await sync(bulkServer, models, bulkStrategy({ sourceId: 'bulk-e2e', population: { kind: 'all' }, options: DEFAULT_PULL_OPTIONS.bulk, staging, exports }));
    expect(result.aborted).toBeUndefined();
    expect(totals(result)).toEqual(totals(reference));
    expect(await writtenAssessments(bulkServer)).toEqual(expected);
    expect(await writtenCarePlans(bulkServer)).toEqual(expectedCarePlans);
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

describe('care reads for CarePlan proposals', () => {
  /** Records every search a reader starts. */
  class ObservedClient extends FhirClient {
    readonly searches: { type: string; params: SearchParams }[] = [];
    override search<T extends Resource>(resourceType: string, params: SearchParams = {}): AsyncGenerator<SearchPage<T>, void, undefined> {
      this.searches.push({ type: resourceType, params });
      return super.search<T>(resourceType, params);
    }
  }
  const patientValues = (params: SearchParams) => [params.patient, params.subject].flat().filter((v): v is string => !!v).flatMap((v) => v.split(','));
  const withoutMeta = (care: CarePullResult) => JSON.parse(JSON.stringify([...care.byPatient], (k, v) => (k === 'meta' ? undefined : v)));

  it('bulk: by search, and one patient per request from the first refusal on, for the rest of the run', async () => {
    const [plain, single] = await Promise.all([startFhirServer({ port: 0 }), startFhirServer({ port: 0, requireSinglePatient: true })]);
    try {
      for (const s of [plain, single]) {
        await seedDemo(s, rows, dataAsOf);
        await s.load(existingCare() as Parameters<RunningFhirServer['load']>[0]);
      }
      const patients = rows.map((_, i) => demoPatientId(i));
      const care: CarePullSpec = {
        carePlanPatients: patients,
        activityPatients: patients.slice(0, 8),
        activityCodes: [
          { system: SCT, code: '43396009' },
          { system: 'http://loinc.org', code: '4548-4' },
          { system: SCT, code: '103699006' },
          { system: SCT, code: '46973005' },
        ],
        resultsSince: new Date(dataAsOf.getTime() - 365 * 86_400_000),
      };
      const ctx = (client: FhirClient) => ({ client, spec: pullSpecFor(models, asOf), asOf });
      const bulk = bulkStrategy({ sourceId: 'bulk-care', population: { kind: 'all' }, options: DEFAULT_PULL_OPTIONS.bulk, staging: new StagingStore(db), exports: new PgBulkExportStore(db), patientConcurrency: 2 });

      // On a server taking multi-patient searches, bulk reads care as the search strategy does.
      const plainClient = new ObservedClient({ baseUrl: plain.url });
      const expected = await (await searchStrategy()(ctx(new FhirClient({ baseUrl: plain.url })))).readCare(care);
      expect([...expected.byPatient.keys()].sort()).toEqual(['demo-0001', 'demo-0003', 'demo-0008', 'demo-0010']);
      const byPlain = await (await bulk(ctx(plainClient))).readCare(care);
      expect(withoutMeta(byPlain)).toEqual(withoutMeta(expected));
      expect(plainClient.searches.every((s) => patientValues(s.params).length === patients.length || patientValues(s.params).length === 8)).toBe(true);

      // On one that refuses them: the first read is refused, then read one patient per request, and so is every later one.
      const client = new ObservedClient({ baseUrl: single.url });
      const strategy = await bulk(ctx(client));
      const first = await strategy.readCare(care);
      expect(withoutMeta(first)).toEqual(withoutMeta(expected));
      const multi = client.searches.filter((s) => patientValues(s.params).length > 1);
      expect(multi.length).toBeGreaterThan(0);
      const afterFirst = client.searches.length;
      const second = await strategy.readCare(care);
      expect(withoutMeta(second)).toEqual(withoutMeta(expected));
      const later = client.searches.slice(afterFirst);
      expect(later).toHaveLength(patients.length + 3 * 8);
      for (const s of later) expect(patientValues(s.params)).toHaveLength(1);
      expect(second.requests).toBe(later.length);
      await strategy.close?.();
    } finally {
      await Promise.all([plain.close(), single.close()]);
    }
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
