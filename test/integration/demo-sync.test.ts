/**
 * Integration: the demo end to end over HTTP against the embedded FHIR server (medplum's implementation),
 * with the real ONNX model. Pins the foundation's acceptance criteria:
 * - every demo patient's written probability equals the model evaluated directly on its dataset row,
 *   including patients whose labs arrive in mmol/L and whose blood pressure arrives as a panel; the few
 *   rows the out-of-distribution check flags are not written, by the card's policy;
 * - the showcase patients: refused by the intended-use gate with their reasons (child, deceased,
 *   prediabetes), BMI derived from weight and height, a preliminary score, an OOD refusal, proposals
 *   that leave out the care a patient already has; and the demo's output shows all of it;
 * - every resource written validates against the R4 base StructureDefinitions;
 * - a second sync for the same as-of writes nothing new, CarePlans included.
 */
import type { Resource } from '@medplum/fhirtypes';
import type { CarePlan, Provenance, RiskAssessment } from 'fhir/r4.js';
import { createApp } from '../../src/app.js';
import { formatSyncSummary } from '../../src/cli/summary.js';
import { runDemo, type DemoRun } from '../../src/demo/demo.js';
import { demoPatientId, demoVariant, DEMO_AS_OF } from '../../src/demo/seed.js';
import { formatShowcase } from '../../src/demo/showcase.js';
import { APPLICABILITY_EXTENSION_URL } from '../../src/writeback/extensions.js';
import { validationIssues } from '../../src/server/repository.js';
import { runSync } from '../../src/sync/index.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../../src/writeback/identifiers.js';
import type { FhirClient } from '../../src/fhir/client.js';

async function searchAll<T extends fhir4.FhirResource>(client: FhirClient, type: string, params: Record<string, string> = {}): Promise<T[]> {
  const out: T[] = [];
  for await (const page of client.search<T>(type, { _count: '1000', ...params })) out.push(...page.resources);
  return out;
}

describe('demo sync (integration)', () => {
  let demo: DemoRun;

  beforeAll(async () => {
    demo = await runDemo(createApp({ env: {} }));
  }, 600_000);

  afterAll(async () => {
    await demo?.server.close();
  });

  const rowIds = () => new Set(demo.rows.map((_, i) => demoPatientId(i)));
  const resultOf = (patientId: string, modelId = 'diabetes-progression') => demo.result.results.find((r) => r.patientId === patientId && r.modelId === modelId)!;

  it('scores every demo patient of the data set with the diabetes model, but the few its OOD check flags, and fails none', () => {
    const totals = demo.result.byModel['diabetes-progression'];
    expect(demo.result.failed).toBe(0);
    const rows = demo.result.results.filter((r) => r.modelId === 'diabetes-progression' && rowIds().has(r.patientId));
    expect(rows).toHaveLength(demo.rows.length);
    const notScored = rows.filter((r) => r.status !== 'scored');
    // Every one of them had diabetes and was 19-79: only the autoencoder flags a few training rows (0.9%: 3 of 332).
    expect(notScored.map((r) => r.reason)).toEqual(['out-of-distribution', 'out-of-distribution', 'out-of-distribution']);
    expect(totals.scored + totals.skipped).toBe(demo.result.patients);
    expect(totals.created).toBe(totals.scored);
    expect(totals.fetched).toBe(totals.used + totals.excluded);
    // The seeded noise is excluded with its reason, never used.
    for (const reason of ['status', 'comparator', 'data-absent', 'implausible', 'non-numeric', 'unit-unconvertible', 'superseded'] as const) {
      expect(totals.excludedByReason[reason]).toBeGreaterThan(0);
    }
  });

  it('writes, for every demo patient, the probability of the model evaluated directly on its dataset row', async () => {
    const model = demo.models.find((m) => m.runner.card.id === 'diabetes-progression')!;
    const card = model.runner.card;
    // The dataset row -> model input, computed here independently of FHIR, UCUM and the mapping engine.
    const d = card.featureIds.length;
    const flat = new Float32Array(demo.rows.length * d);
    demo.rows.forEach((row, i) => {
      const raw: Record<string, number> = {
        age: row.age,
        'sex=male': row.sex === 2 ? 1 : 0,
        bmi: row.bmi,
        map: row.bp,
        tc: row.tc,
        ldl: row.ldl,
        hdl: row.hdl,
        tc_hdl_ratio: row.tc / row.hdl,
        ln_tg: row.ltg,
        glucose: row.glu,
      };
      card.featureIds.forEach((id, j) => {
        const std = card.preprocessing.columns[id];
        flat[i * d + j] = std ? (raw[id] - std.mean) / std.std : raw[id];
      });
    });
    const expected = await model.runner.predict(flat, demo.rows.length);

    const assessments = await searchAll<RiskAssessment>(demo.client, 'RiskAssessment', { method: `${'https://fhir-ml-adapter.dev/fhir/CodeSystem/model'}|diabetes-progression` });
    const byPatient = new Map(assessments.map((ra) => [ra.subject.reference!, ra]));
    const skipped = new Set(demo.result.results.filter((r) => r.modelId === 'diabetes-progression' && r.status === 'skipped').map((r) => r.patientId));
    expect([...rowIds()].filter((id) => !skipped.has(id) && byPatient.has(`Patient/${id}`))).toHaveLength(demo.rows.length - 3);
    const variantsSeen = { cholesterolInMmol: 0, glucoseInMmol: 0, bloodPressureAsPanel: 0, separateBp: 0, withNoise: 0 };
    demo.rows.forEach((_, i) => {
      const ra = byPatient.get(`Patient/${demoPatientId(i)}`);
      if (skipped.has(demoPatientId(i))) return expect(ra).toBeUndefined();
      expect(ra).toBeDefined();
      const written = ra!.prediction![0].probabilityDecimal!;
      expect(Math.abs(written - expected[i])).toBeLessThan(1e-5);
      const v = demoVariant(i);
      if (v.cholesterolInMmol) variantsSeen.cholesterolInMmol++;
      if (v.glucoseInMmol) variantsSeen.glucoseInMmol++;
      if (v.bloodPressureAsPanel) variantsSeen.bloodPressureAsPanel++;
      else variantsSeen.separateBp++;
      if (v.withNoise) variantsSeen.withNoise++;
    });
    for (const n of Object.values(variantsSeen)) expect(n).toBeGreaterThan(10);
  });

  it('writes resources that validate against R4, with basis, performer and Provenance', async () => {
    const assessments = await searchAll<RiskAssessment>(demo.client, 'RiskAssessment');
    const carePlans = await searchAll<CarePlan>(demo.client, 'CarePlan');
    const provenances = await searchAll<Provenance>(demo.client, 'Provenance');
    const devices = await searchAll<fhir4.Device>(demo.client, 'Device');
    expect(devices).toHaveLength(demo.models.length);
    expect(carePlans.length).toBeGreaterThan(100);
    expect(provenances).toHaveLength(assessments.length + carePlans.length);
    for (const r of [...assessments, ...carePlans, ...provenances, ...devices]) {
      expect(validationIssues(r as unknown as Resource).filter((i) => i.severity === 'error')).toEqual([]);
    }
    const target = new Set(provenances.map((p) => p.target[0].reference));
    for (const ra of assessments) {
      expect(target.has(`RiskAssessment/${ra.id}`)).toBe(true);
      expect(ra.basis!.length).toBeGreaterThan(1);
      // Age and sex are inputs of both models, so the Patient is basis too.
      expect(ra.basis!.map((b) => b.reference)).toContain(ra.subject.reference);
      expect(ra.performer!.reference).toMatch(/^Device\//);
      // Applicability travels with every score: the extension and its sentence.
      expect(ra.prediction![0].extension?.[0].url).toBe(APPLICABILITY_EXTENSION_URL);
      expect(ra.note?.some((n) => n.text.startsWith('Applicability:'))).toBe(true);
    }
    for (const cp of carePlans) {
      expect(cp).toMatchObject({ status: 'draft', intent: 'proposal', meta: { security: [expect.objectContaining({ code: 'AIAST' })] } });
      expect(target.has(`CarePlan/${cp.id}`)).toBe(true);
      // It answers a RiskAssessment that is on the server, written final.
      const ra = assessments.find((a) => `RiskAssessment/${a.id}` === cp.supportingInfo![0].reference)!;
      expect(ra).toMatchObject({ status: 'final', subject: cp.subject });
    }
    // The diabetes proposals address the diagnosis that admitted the patient; its Condition is basis of the RiskAssessment.
    const dm = carePlans.find((cp) => cp.subject.reference === `Patient/${demoPatientId(0)}`)!;
    expect(dm.addresses).toEqual([{ reference: `Condition/${demoPatientId(0)}-dm` }]);
    expect(assessments.find((a) => a.subject.reference === dm.subject.reference && a.method?.coding?.[0].code === 'diabetes-progression')!.basis).toContainEqual({
      reference: `Condition/${demoPatientId(0)}-dm`,
    });
  });

  it('refuses the patients outside the intended use, each with its reason, and writes nothing for them', async () => {
    expect(resultOf('demo-child')).toMatchObject({ status: 'skipped', reason: 'age-out-of-range', reasonDetail: 'age 12 outside 19-79 years' });
    expect(resultOf('demo-child', 'curb65')).toMatchObject({ status: 'skipped', reason: 'age-out-of-range' });
    expect(resultOf('demo-deceased')).toMatchObject({ status: 'skipped', reason: 'deceased' });
    expect(resultOf('demo-deceased', 'curb65')).toMatchObject({ status: 'skipped', reason: 'deceased' });
    expect(resultOf('demo-prediabetes')).toMatchObject({ status: 'skipped', reason: 'missing-required-condition' });
    expect(resultOf('demo-unit-error')).toMatchObject({ status: 'skipped', reason: 'out-of-distribution', applicability: { decision: 'skip', ood: { flagged: true } } });
    for (const id of ['demo-child', 'demo-deceased', 'demo-prediabetes', 'demo-unit-error']) {
      expect(await searchAll(demo.client, 'RiskAssessment', { subject: `Patient/${id}` })).toEqual([]);
      expect(await searchAll(demo.client, 'CarePlan', { subject: `Patient/${id}` })).toEqual([]);
    }
    expect(demo.result.byModel['diabetes-progression'].skippedByReason).toEqual({ 'age-out-of-range': 1, deceased: 1, 'missing-required-condition': 1, 'out-of-distribution': 4 });
  });

  it('derives BMI from weight and height, writes a preliminary score with its imputed inputs, and leaves out care the patient has', async () => {
    // 104 kg (229.28 lb), 1.78 m: 32.8 kg/m2, in the rationale and behind the dietitian referral
    const noBmi = resultOf('demo-no-bmi');
    expect(noBmi).toMatchObject({ status: 'scored', riskAssessmentStatus: 'final' });
    expect(noBmi.rationale!.items.find((i) => i.column === 'bmi')).toMatchObject({ value: expect.closeTo(32.82, 2), unit: 'kg/m2', imputed: false });
    expect(noBmi.proposals![0].proposed).toContain('Dietitian referral');
    const few = resultOf('demo-few-labs');
    expect(few).toMatchObject({ status: 'scored', riskAssessmentStatus: 'preliminary', applicability: { decision: 'score-preliminary', imputed: ['tc', 'ldl', 'hdl', 'tc_hdl_ratio', 'ln_tg'] } });
    expect(few.carePlans).toBeUndefined();
    const [fewRa] = await searchAll<RiskAssessment>(demo.client, 'RiskAssessment', { subject: 'Patient/demo-few-labs', method: 'https://fhir-ml-adapter.dev/fhir/CodeSystem/model|diabetes-progression' });
    expect(fewRa.status).toBe('preliminary');
    const imputed = fewRa.prediction![0].extension![0].extension!.filter((e) => e.url === 'imputedInput').map((e) => e.valueString);
    expect(imputed).toEqual(['tc', 'ldl', 'hdl', 'tc_hdl_ratio', 'ln_tg']);
    // an HbA1c 40 days ago, an active dietitian referral: not proposed again, and the plan says why
    expect(resultOf(demoPatientId(0)).proposals![0]).toMatchObject({ omitted: [{ activity: 'HbA1c every 3 months', reason: 'recent-result', evidence: `Observation/${demoPatientId(0)}-hba1c` }] });
    expect(resultOf(demoPatientId(2)).proposals![0]).toMatchObject({ omitted: [{ activity: 'Dietitian referral', reason: 'already-requested' }] });
    const [plan] = await searchAll<CarePlan>(demo.client, 'CarePlan', { subject: `Patient/${demoPatientId(0)}` });
    expect(plan.activity!.map((a) => a.detail!.code!.text)).toEqual(['Dietitian referral']);
    expect(plan.note![0].text).toMatch(/^Not proposed because the patient already has them: HbA1c every 3 months \(a recent result exists/);
  });

  it('prints skips by reason, the CarePlans written and the showcase patients one by one', () => {
    const summary = formatSyncSummary(demo.result);
    expect(summary).toMatch(/Patients not scored, by reason\n[\s\S]*age-out-of-range +1 +1\n[\s\S]*deceased +1 +1\n[\s\S]*missing-required-condition +1 +0\n[\s\S]*out-of-distribution +4 +0/);
    const created = demo.result.byModel['diabetes-progression'].carePlans.created;
    expect(created).toBeGreaterThan(100);
    const carePlanTable = summary.slice(summary.indexOf('CarePlan proposals'));
    expect(carePlanTable.split('\n').find((l) => l.startsWith('created'))!.split(/ +/)).toEqual(['created', String(created), String(demo.result.byModel.curb65.carePlans.created)]);
    const showcase = formatShowcase(demo.result, demo.showcase);
    expect(showcase).toContain(`${demoPatientId(0)}: high risk; an HbA1c 40 days ago`);
    expect(showcase).toMatch(/diabetes-progression: high risk, probability 0\.\d\d; RiskAssessment final, created\n {4}why: body mass index 32\.1 kg\/m² raises the risk/);
    expect(showcase).toContain('left out: HbA1c every 3 months (recent-result, Observation/demo-0001-hba1c)');
    expect(showcase).toContain('applicability: imputed tc, ldl, hdl, tc_hdl_ratio, ln_tg -> score-preliminary');
    expect(showcase).toContain('demo-child: 12 years old');
    expect(showcase).toContain('diabetes-progression: NOT SCORED, age-out-of-range (age 12 outside 19-79 years)');
    expect(showcase).toContain('diabetes-progression: NOT SCORED, deceased');
    expect(showcase).toContain('diabetes-progression: NOT SCORED, out-of-distribution');
  });

  it('writes nothing new when the same as-of is synced again', async () => {
    const before = {
      ra: (await searchAll(demo.client, 'RiskAssessment')).length,
      prov: (await searchAll(demo.client, 'Provenance')).length,
      dev: (await searchAll(demo.client, 'Device')).length,
    };
    const cps = (await searchAll(demo.client, 'CarePlan')).length;
    const again = await runSync(demo.client, demo.models, { asOf: DEMO_AS_OF, identifierSystem: DEFAULT_IDENTIFIER_SYSTEM, explain: false });
    for (const [id, totals] of Object.entries(again.byModel)) {
      expect(totals.created).toBe(0);
      expect(totals.alreadyPresent).toBe(totals.scored);
      expect(totals.carePlans).toEqual({ created: 0, alreadyPresent: demo.result.byModel[id].carePlans.created, revoked: 0, untouched: 0 });
    }
    expect((await searchAll(demo.client, 'CarePlan')).length).toBe(cps);
    expect((await searchAll(demo.client, 'RiskAssessment')).length).toBe(before.ra);
    expect((await searchAll(demo.client, 'Provenance')).length).toBe(before.prov);
    expect((await searchAll(demo.client, 'Device')).length).toBe(before.dev);
  }, 300_000);
});
