/**
 * Integration: real EHR-shaped data. The 58 Synthea patients (../shared/datasets/synthea-r4, blood
 * pressure as panels with components, Synthea's units, deceased patients, children, diabetes and
 * prediabetes Conditions) are loaded into the embedded FHIR server and synced with diabetes-progression
 * at an as-of inside their data. Skips cleanly without the datasets.
 * - The model as shipped: no deceased patient is ever scored; children and patients without diabetes
 *   are refused with their reasons (decided here from the raw bundles, independently of the adapter);
 *   counts reconcile, the gate's Conditions included.
 * - The mapping on real data: a copy of the card without its safety sections (intended use,
 *   applicability policy) scores every patient with enough data, and only those.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Resource } from '@medplum/fhirtypes';
import type { RiskAssessment } from 'fhir/r4.js';
import { sharedDatasetsDir } from '../../src/config/index.js';
import { packagePath } from '../../src/core/paths.js';
import { editCard } from '../../src/models/testing/helpers.js';
import { FhirClient } from '../../src/fhir/client.js';
import { loadFiles, startFhirServer, type RunningFhirServer } from '../../src/server/index.js';
import { validationIssues } from '../../src/server/repository.js';
import { prepareModels, type SyncModel } from '../../src/sync/index.js';
import { runSync, type SyncResult } from '../../src/sync/index.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../../src/writeback/identifiers.js';

const datasets = sharedDatasetsDir();
const describeWithData = datasets ? describe : describe.skip;
// Straight to stderr: jest hides console output of a suite whose tests are all skipped.
if (!datasets) process.stderr.write('skipping: synthea-sync: ../shared/datasets not found (FHIR_ML_SHARED_DATASETS); the Synthea integration test is skipped\n');

const AS_OF = new Date('2020-06-30T00:00:00Z');
const SNOMED = 'http://snomed.info/sct';

describeWithData('Synthea patients through the embedded server (integration)', () => {
  let server: RunningFhirServer;
  let client: FhirClient;
  let models: SyncModel[];
  /** The model as shipped (intended use, applicability policy, OOD check). */
  let gated: SyncResult;
  /** A copy of the card without intended use and policy: what the mapping alone decides. */
  let result: SyncResult;
  let registry: string;
  let loadedPatients: number;
  let patientsInFiles: number;
  let syntheaObservations: fhir4.Observation[];
  let syntheaPatients: fhir4.Patient[];
  let syntheaConditions: fhir4.Condition[];
  /** Bundle-local patient id (urn:uuid) -> the id the server assigned on POST, matched by MRN. */
  const serverIdOf = new Map<string, string>();

  beforeAll(async () => {
    server = await startFhirServer({ port: 0 });
    const dir = path.join(datasets!, 'synthea-r4');
    // Counted independently of the loader (one bundle holds only Practitioners).
    const bundles = readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as fhir4.Bundle);
    const all = bundles.flatMap((b) => (b.entry ?? []).map((e) => e.resource!));
    patientsInFiles = all.filter((r) => r.resourceType === 'Patient').length;
    syntheaObservations = all.filter((r): r is fhir4.Observation => r.resourceType === 'Observation');
    syntheaPatients = all.filter((r): r is fhir4.Patient => r.resourceType === 'Patient');
    syntheaConditions = all.filter((r): r is fhir4.Condition => r.resourceType === 'Condition');
    const mrn = (p: fhir4.Patient) => p.identifier?.find((i) => i.system === 'https://github.com/synthetichealth/synthea')?.value;
    const bundleIdByMrn = new Map(all.filter((r): r is fhir4.Patient => r.resourceType === 'Patient').map((p) => [mrn(p), p.id!]));
    const loaded = await loadFiles(server, [dir]);
    loadedPatients = loaded.counts.Patient ?? 0;
    client = new FhirClient({ baseUrl: server.url, auth: { type: 'none' } });
    for await (const page of client.search<fhir4.Patient>('Patient', { _count: '500' })) {
      for (const p of page.resources) serverIdOf.set(bundleIdByMrn.get(mrn(p))!, p.id!);
    }
    const shipped = await prepareModels(['diabetes-progression'], { modelsDir: packagePath('models'), mappingsDir: packagePath('mappings') });
    gated = await runSync(client, shipped, { asOf: AS_OF, identifierSystem: DEFAULT_IDENTIFIER_SYSTEM, batchSize: 20 });
    await shipped[0].runner.close();
    // The mapping alone, on the same server: written under another identifier system so the two runs do not meet.
    registry = await mkdtemp(path.join(tmpdir(), 'fhir-ml-synthea-'));
    await cp(packagePath('models', 'diabetes-progression'), path.join(registry, 'diabetes-progression'), { recursive: true });
    await editCard(path.join(registry, 'diabetes-progression'), (card) => {
      delete card.intendedPopulation;
      delete card.applicabilityPolicy;
    });
    models = await prepareModels(['diabetes-progression'], { modelsDir: registry, mappingsDir: packagePath('mappings') });
    result = await runSync(client, models, { asOf: AS_OF, identifierSystem: 'https://example.org/fhir-ml/mapping-only', batchSize: 20, carePlans: false });
  }, 600_000);

  afterAll(async () => {
    await Promise.all((models ?? []).map((m) => m.runner.close()));
    await server?.close();
    if (registry) await rm(registry, { recursive: true, force: true });
  });

  /** Server id -> what the raw bundle says at as-of: dead, age, and an active diabetes / prediabetes diagnosis. */
  function facts(): Map<string, { deceased: boolean; age: number; diabetes: boolean; prediabetes: boolean }> {
    const out = new Map<string, { deceased: boolean; age: number; diabetes: boolean; prediabetes: boolean }>();
    const active = (code: string, patientUrn: string) =>
      syntheaConditions.some(
        (c) =>
          c.subject.reference === `urn:uuid:${patientUrn}` &&
          c.code?.coding?.some((x) => x.system === SNOMED && x.code === code) &&
          c.clinicalStatus?.coding?.[0]?.code === 'active' &&
          new Date(c.onsetDateTime ?? c.recordedDate ?? 0) <= AS_OF,
      );
    for (const p of syntheaPatients) {
      const born = new Date(`${p.birthDate}T00:00:00Z`);
      let age = AS_OF.getUTCFullYear() - born.getUTCFullYear();
      if (AS_OF.getUTCMonth() < born.getUTCMonth() || (AS_OF.getUTCMonth() === born.getUTCMonth() && AS_OF.getUTCDate() < born.getUTCDate())) age--;
      out.set(serverIdOf.get(p.id!)!, {
        deceased: p.deceasedDateTime !== undefined && new Date(p.deceasedDateTime) <= AS_OF,
        age,
        diabetes: active('44054006', p.id!),
        prediabetes: active('15777000', p.id!),
      });
    }
    return out;
  }

  it('never scores a deceased patient; refuses children and patients without diabetes with their reasons', async () => {
    const f = facts();
    const byPatient = new Map(gated.results.map((r) => [r.patientId, r]));
    let deceased = 0;
    let children = 0;
    let elderly = 0;
    let withoutDiabetes = 0;
    let prediabetesOnly = 0;
    for (const [id, x] of f) {
      const r = byPatient.get(id)!;
      if (x.deceased) {
        deceased++;
        expect({ id, status: r.status, reason: r.reason }).toEqual({ id, status: 'skipped', reason: 'deceased' });
      } else if (x.age < 19) {
        children++;
        expect({ id, status: r.status, reason: r.reason }).toEqual({ id, status: 'skipped', reason: 'age-out-of-range' });
        expect(r.reasonDetail).toBe(`age ${x.age} outside 19-79 years`);
      } else if (x.age > 79) {
        elderly++;
        expect({ id, status: r.status, reason: r.reason }).toEqual({ id, status: 'skipped', reason: 'age-out-of-range' });
      } else if (!x.diabetes) {
        withoutDiabetes++;
        if (x.prediabetes) prediabetesOnly++;
        expect({ id, status: r.status, reason: r.reason }).toEqual({ id, status: 'skipped', reason: 'missing-required-condition' });
      } else {
        // admitted by the gate: scored, or refused for its data only (too little measured, the policy)
        expect([r.status === 'scored', ['too-few-observed-features', 'too-many-imputed', 'out-of-distribution'].includes(r.reason ?? '')]).toContain(true);
      }
    }
    // The bundles hold all three kinds, and the prediabetic patients among those without diabetes.
    expect(deceased).toBeGreaterThan(5);
    expect(children).toBeGreaterThan(3);
    expect(withoutDiabetes).toBeGreaterThan(20);
    expect(prediabetesOnly).toBeGreaterThan(5);
    const totals = gated.byModel['diabetes-progression'];
    expect(totals.skippedByReason).toMatchObject({ deceased, 'age-out-of-range': children + elderly, 'missing-required-condition': withoutDiabetes });
    // Nothing was written for any refused patient.
    const assessments: RiskAssessment[] = [];
    for await (const page of client.search<RiskAssessment>('RiskAssessment', { identifier: `${DEFAULT_IDENTIFIER_SYSTEM}|`, _count: '500' })) assessments.push(...page.resources);
    expect(assessments.map((ra) => ra.subject.reference!.replace('Patient/', '')).sort()).toEqual(gated.results.filter((r) => r.status === 'scored').map((r) => r.patientId).sort());
    for (const ra of assessments) {
      expect(f.get(ra.subject.reference!.replace('Patient/', ''))).toMatchObject({ deceased: false, diabetes: true });
      // the diagnosis that admitted the patient is basis of the assessment
      expect(ra.basis!.some((b) => b.reference!.startsWith('Condition/'))).toBe(true);
    }
  });

  it('reconciles with the gate in place: per patient and model, fetched = used + excluded; scored + skipped + not found + failed = requested', () => {
    const totals = gated.byModel['diabetes-progression'];
    expect(gated.failed).toBe(0);
    expect(totals.scored + totals.skipped + gated.notFound + gated.failed).toBe(patientsInFiles);
    let fetched = 0;
    for (const r of gated.results) {
      expect(r.counts!.fetched).toBe(r.counts!.used + r.counts!.excluded);
      expect(Object.values(r.excluded ?? {}).reduce((a, b) => a + (b ?? 0), 0)).toBe(r.counts!.excluded);
      fetched += r.counts!.fetched;
    }
    expect(totals.fetched).toBe(fetched);
    expect(totals.fetched).toBe(totals.used + totals.excluded);
    // The Conditions the gate read are counted too: more fetched than the mapping alone considers.
    expect(totals.fetched).toBeGreaterThan(result.byModel['diabetes-progression'].fetched);
  });

  it('accounts for every patient: scored, or skipped with a reason', () => {
    expect(patientsInFiles).toBeGreaterThan(50);
    expect(loadedPatients).toBe(patientsInFiles);
    expect(result.patients).toBe(patientsInFiles);
    expect(result.failed).toBe(0);
    const totals = result.byModel['diabetes-progression'];
    expect(totals.scored + totals.skipped).toBe(patientsInFiles);
    expect(totals.scored).toBeGreaterThan(0);
    const perPatient = result.results.filter((r) => r.modelId === 'diabetes-progression');
    expect(new Set(perPatient.map((r) => r.patientId)).size).toBe(patientsInFiles);
    for (const r of perPatient) {
      if (r.status === 'skipped') expect(r.reason).toMatch(/\S/);
      else expect(r.status).toBe('scored');
    }
  });

  it('scores every patient that has enough data, and only those', () => {
    // Counted here from the raw bundles, independently of the mapping engine: which model inputs have a
    // final numeric value inside a generous window before as-of. Clear cases must agree with the sync.
    const LAB = 2 * 365.25 * 86_400_000;
    const VITAL = 365.25 * 86_400_000;
    const groups: Record<string, { codes: string[]; window: number }> = {
      bmi: { codes: ['39156-5'], window: VITAL },
      sbp: { codes: ['8480-6'], window: VITAL },
      dbp: { codes: ['8462-4'], window: VITAL },
      tc: { codes: ['2093-3', '14647-2'], window: LAB },
      ldl: { codes: ['18262-6', '13457-7', '2089-1'], window: LAB },
      hdl: { codes: ['2085-9'], window: LAB },
      tg: { codes: ['2571-8'], window: LAB },
      glucose: { codes: ['2339-0', '2345-7', '15074-8'], window: LAB },
    };
    const observed = new Map<string, Set<string>>();
    for (const obs of syntheaObservations) {
      if (obs.status !== 'final' && obs.status !== 'amended' && obs.status !== 'corrected') continue;
      const at = new Date(obs.effectiveDateTime ?? obs.issued ?? 0).getTime();
      const patient = serverIdOf.get(obs.subject?.reference?.replace(/^urn:uuid:/, '') ?? '') ?? '';
      const values = [obs, ...(obs.component ?? [])].filter((o) => typeof o.valueQuantity?.value === 'number');
      for (const [id, g] of Object.entries(groups)) {
        if (at > AS_OF.getTime() || at < AS_OF.getTime() - g.window) continue;
        if (values.some((v) => v.code.coding?.some((c) => g.codes.includes(c.code ?? '')))) {
          if (!observed.has(patient)) observed.set(patient, new Set());
          observed.get(patient)!.add(id);
        }
      }
    }
    let clearlyEnough = 0;
    let clearlyTooLittle = 0;
    const f = facts();
    for (const r of result.results) {
      // Whatever the card says, a patient who died before as-of is never scored.
      if (f.get(r.patientId)!.deceased) {
        expect({ patient: r.patientId, status: r.status, reason: r.reason }).toEqual({ patient: r.patientId, status: 'skipped', reason: 'deceased' });
        continue;
      }
      const seen = observed.get(r.patientId) ?? new Set();
      const inputs = ['bmi', 'tc', 'ldl', 'hdl', 'tg', 'glucose'].filter((g) => seen.has(g)).length + (seen.has('sbp') && seen.has('dbp') ? 1 : 0);
      if (inputs >= 5) {
        clearlyEnough++;
        expect({ patient: r.patientId, status: r.status }).toEqual({ patient: r.patientId, status: 'scored' });
      }
      if (inputs === 0) {
        clearlyTooLittle++;
        expect({ patient: r.patientId, status: r.status }).toEqual({ patient: r.patientId, status: 'skipped' });
      }
    }
    expect(clearlyEnough).toBeGreaterThan(0);
    // Clear cases are at least half of the living patients (the rest have some inputs but not five).
    const living = result.results.filter((r) => !f.get(r.patientId)!.deceased).length;
    expect(clearlyEnough + clearlyTooLittle).toBeGreaterThanOrEqual(living / 2);
  });

  it('reconciles, for every patient, the Observations fetched with used + excluded by reason', () => {
    let fetched = 0;
    for (const r of result.results) {
      const counts = r.counts!;
      expect(counts.fetched).toBe(counts.used + counts.excluded);
      const byReason = Object.values(r.excluded ?? {}).reduce((a, b) => a + (b ?? 0), 0);
      expect(byReason).toBe(counts.excluded);
      fetched += counts.fetched;
    }
    const totals = result.byModel['diabetes-progression'];
    expect(totals.fetched).toBe(fetched);
    expect(totals.fetched).toBe(totals.used + totals.excluded);
    expect(totals.used).toBeGreaterThan(0);
  });

  it('writes one valid RiskAssessment per scored patient, its basis being Observations of that patient', async () => {
    const assessments: RiskAssessment[] = [];
    for await (const page of client.search<RiskAssessment>('RiskAssessment', { identifier: 'https://example.org/fhir-ml/mapping-only|', _count: '500' })) assessments.push(...page.resources);
    const scored = result.results.filter((r) => r.status === 'scored');
    expect(assessments).toHaveLength(scored.length);
    for (const ra of assessments) {
      expect(validationIssues(ra as unknown as Resource).filter((i) => i.severity === 'error')).toEqual([]);
      for (const b of ra.basis ?? []) {
        // Age and sex are inputs: the Patient itself is basis.
        if (b.reference === ra.subject.reference) continue;
        const [type, id] = b.reference!.split('/');
        expect(type).toBe('Observation');
        const obs = await client.read<fhir4.Observation>('Observation', id);
        expect(obs.subject?.reference).toBe(ra.subject.reference);
        // Nothing after as-of is ever used.
        expect(new Date(obs.effectiveDateTime ?? obs.issued!).getTime()).toBeLessThanOrEqual(AS_OF.getTime());
      }
    }
  }, 300_000);
});
