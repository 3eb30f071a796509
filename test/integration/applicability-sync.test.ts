/**
 * Integration: applicability end to end, over HTTP against the embedded FHIR server with the real ONNX
 * model and its out-of-distribution autoencoder (same batch, same input array).
 * - Imputed and out-of-range inputs are reported in the written RiskAssessment (the
 *   prediction-applicability extension, conforming to its StructureDefinition, and the readable note),
 *   next to the clinician-readable rationale; and in the per-patient result.
 * - Each policy is applied: the shipped card (preliminary above 2 imputed, skip above 5, preliminary
 *   out of range, skip out of distribution), and test copies of the card whose policy always scores or
 *   always skips.
 * - A shifted patient (a glucose in mmol/L sent with the unit mg/dL) is flagged out of distribution.
 */
import type { Resource } from '@medplum/fhirtypes';
import type { Condition, FhirResource, Observation, Patient, RiskAssessment } from 'fhir/r4.js';
import { packagePath } from '../../src/core/paths.js';
import { FhirClient } from '../../src/fhir/client.js';
import { editCard, tempModelCopy } from '../../src/models/testing/helpers.js';
import { startFhirServer, type RunningFhirServer } from '../../src/server/index.js';
import { validationIssues } from '../../src/server/repository.js';
import { prepareModels, runSync, type PatientResult, type SyncModel, type SyncResult } from '../../src/sync/index.js';
import { APPLICABILITY_EXTENSION_URL, subExtension } from '../../src/writeback/extensions.js';
import { extensionDefinition, extensionProblems } from '../../src/writeback/testing/extension-check.js';

const AS_OF = new Date('2025-06-30T00:00:00Z');
const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';
const daysBefore = (d: number) => new Date(AS_OF.getTime() - d * 86_400_000).toISOString();

interface Measured {
  bmi?: number;
  bp?: [number, number];
  tc?: number;
  ldl?: number;
  hdl?: number;
  tg?: number;
  glucose?: number;
  glucoseUnit?: string;
}

function patientWith(id: string, m: Measured): FhirResource[] {
  const patient: Patient = { resourceType: 'Patient', id, birthDate: '1968-03-01', gender: 'female' };
  const dm: Condition = {
    resourceType: 'Condition',
    id: `${id}-dm`,
    subject: { reference: `Patient/${id}` },
    clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] },
    code: { coding: [{ system: 'http://snomed.info/sct', code: '44054006' }] },
    onsetDateTime: '2016-04-01',
  };
  const q = (key: string, code: string, value: number, unit: string, days: number): Observation => ({
    resourceType: 'Observation',
    id: `${id}-${key}`,
    status: 'final',
    code: { coding: [{ system: LOINC, code }] },
    subject: { reference: `Patient/${id}` },
    effectiveDateTime: daysBefore(days),
    valueQuantity: { value, unit, system: UCUM, code: unit },
  });
  const out: FhirResource[] = [patient, dm];
  if (m.bmi !== undefined) out.push(q('bmi', '39156-5', m.bmi, 'kg/m2', 10));
  if (m.bp) out.push(q('sbp', '8480-6', m.bp[0], 'mm[Hg]', 10), q('dbp', '8462-4', m.bp[1], 'mm[Hg]', 10));
  if (m.tc !== undefined) out.push(q('tc', '2093-3', m.tc, 'mg/dL', 30));
  if (m.ldl !== undefined) out.push(q('ldl', '18262-6', m.ldl, 'mg/dL', 30));
  if (m.hdl !== undefined) out.push(q('hdl', '2085-9', m.hdl, 'mg/dL', 30));
  if (m.tg !== undefined) out.push(q('tg', '2571-8', m.tg, 'mg/dL', 30));
  if (m.glucose !== undefined) out.push(q('glu', '2339-0', m.glucose, m.glucoseUnit ?? 'mg/dL', 30));
  return out;
}

const TYPICAL: Measured = { bmi: 27, bp: [130, 80], tc: 190, ldl: 115, hdl: 50, tg: 150, glucose: 95 };
const PATIENTS: Record<string, Measured> = {
  typical: TYPICAL,
  // total cholesterol 330 mg/dL: above the training maximum (300)
  'out-of-range': { ...TYPICAL, tc: 330, ldl: 205 },
  // vitals and a glucose: 5 of 10 inputs imputed
  'some-imputed': { bmi: 27, bp: [130, 80], glucose: 95 },
  // vitals only: 6 of 10 imputed
  'mostly-imputed': { bmi: 27, bp: [130, 80] },
  // 11.4 mmol/L (205 mg/dL) sent with the unit mg/dL: plausible as a number, unlike any training row
  shifted: { ...TYPICAL, glucose: 11.4 },
};

describe('applicability and its policies, end to end', () => {
  let server: RunningFhirServer;
  let client: FhirClient;
  const copies: { cleanup: () => Promise<void> }[] = [];
  const loaded: SyncModel[] = [];

  beforeAll(async () => {
    server = await startFhirServer({ port: 0 });
    await server.load(Object.entries(PATIENTS).flatMap(([id, m]) => patientWith(id, m)) as Parameters<RunningFhirServer['load']>[0]);
    client = new FhirClient({ baseUrl: server.url, auth: { type: 'none' } });
  });
  afterAll(async () => {
    await Promise.all(loaded.map((m) => m.runner.close()));
    await Promise.all(copies.map((c) => c.cleanup()));
    await server.close();
  });

  /** One sync of every patient under its own identifier system (so runs with different cards do not meet). */
  async function sync(label: string, policy?: unknown): Promise<{ result: SyncResult; by: (id: string) => PatientResult; assessments: Map<string, RiskAssessment> }> {
    let modelsDir = packagePath('models');
    if (policy !== undefined) {
      const copy = await tempModelCopy('diabetes-progression');
      copies.push(copy);
      await editCard(copy.dir, (card) => {
        card.applicabilityPolicy = policy;
      });
      modelsDir = copy.registry;
    }
    const models = await prepareModels(['diabetes-progression'], { modelsDir, mappingsDir: packagePath('mappings') });
    loaded.push(...models);
    const system = `https://example.org/fhir-ml/${label}`;
    const result = await runSync(client, models, { asOf: AS_OF, identifierSystem: system, carePlans: false });
    const assessments = new Map<string, RiskAssessment>();
    for await (const page of client.search<RiskAssessment>('RiskAssessment', { identifier: `${system}|`, _count: '100' })) {
      for (const ra of page.resources) assessments.set(ra.subject.reference!.replace('Patient/', ''), ra);
    }
    return { result, by: (id) => result.results.find((r) => r.patientId === id)!, assessments };
  }

  const applicabilityOf = (ra: RiskAssessment) => ra.prediction![0].extension!.find((e) => e.url === APPLICABILITY_EXTENSION_URL)!;
  const imputedOf = (ra: RiskAssessment) => applicabilityOf(ra).extension!.filter((e) => e.url === 'imputedInput').map((e) => e.valueString);

  it("the shipped card's policy: final, preliminary above 2 imputed or out of range, not written above 5 imputed or out of distribution", async () => {
    const { result, by, assessments } = await sync('shipped');
    expect(by('typical')).toMatchObject({ status: 'scored', riskAssessmentStatus: 'final', applicability: { decision: 'score', imputed: [], outOfRange: [], ood: { assessed: true, flagged: false } } });
    expect(by('out-of-range')).toMatchObject({
      status: 'scored',
      riskAssessmentStatus: 'preliminary',
      applicability: { decision: 'score-preliminary', outOfRange: [{ input: 'tc', side: 'above', min: -2.673266, max: 3.1399, measured: { value: 330, min: 97, max: 300, unit: 'mg/dL' } }] },
    });
    expect(by('some-imputed')).toMatchObject({ status: 'scored', riskAssessmentStatus: 'preliminary', applicability: { imputed: ['tc', 'ldl', 'hdl', 'tc_hdl_ratio', 'ln_tg'] } });
    expect(by('mostly-imputed')).toMatchObject({ status: 'skipped', reason: 'too-many-imputed', reasonDetail: '6 of 10 inputs imputed (more than 5)' });
    expect(by('shifted')).toMatchObject({ status: 'skipped', reason: 'out-of-distribution', applicability: { decision: 'skip', ood: { assessed: true, flagged: true } } });
    expect(result.byModel['diabetes-progression']).toMatchObject({
      scored: 3,
      preliminary: 2,
      skippedByReason: { 'too-many-imputed': 1, 'out-of-distribution': 1 },
      applicability: { imputed: 2, outOfRange: 2, outOfDistribution: 1 },
    });

    // Written: exactly the scored three, each valid R4 with a conforming extension, the note and the rationale.
    expect([...assessments.keys()].sort()).toEqual(['out-of-range', 'some-imputed', 'typical']);
    const definition = extensionDefinition('prediction-applicability');
    for (const ra of assessments.values()) {
      expect(validationIssues(ra as unknown as Resource).filter((i) => i.severity === 'error')).toEqual([]);
      expect(extensionProblems(applicabilityOf(ra), definition)).toEqual([]);
    }
    const outOfRange = assessments.get('out-of-range')!;
    expect(outOfRange.status).toBe('preliminary');
    const tc = applicabilityOf(outOfRange).extension!.find((e) => e.url === 'outOfRangeInput' && subExtension(e, 'input')?.valueString === 'tc')!;
    expect(subExtension(tc, 'measured')?.valueQuantity).toEqual({ value: 330, unit: 'mg/dL', system: UCUM, code: 'mg/dL' });
    expect(outOfRange.note!.map((n) => n.text)).toContainEqual(expect.stringMatching(/^Applicability: all 10 inputs observed; outside the training range: total cholesterol 330 mg\/dL above the training range \(97-300 mg\/dL\)/));
    expect(outOfRange.prediction![0].rationale).toMatch(/total cholesterol 330 mg\/dL (raises|lowers) the risk \([+-]\d\.\d\d log-odds\)/);
    const someImputed = assessments.get('some-imputed')!;
    expect(someImputed.status).toBe('preliminary');
    expect(imputedOf(someImputed)).toEqual(['tc', 'ldl', 'hdl', 'tc_hdl_ratio', 'ln_tg']);
    expect(someImputed.note!.map((n) => n.text)).toContainEqual(expect.stringMatching(/^Applicability: 5 of 10 inputs imputed \(total cholesterol, LDL cholesterol, HDL cholesterol, /));
    expect(subExtension(applicabilityOf(someImputed), 'decision')?.valueCode).toBe('score-preliminary');
    expect(assessments.get('typical')!.status).toBe('final');
  });

  it('a policy that always scores writes every score final, and still reports what it found', async () => {
    const { by, assessments } = await sync('lenient', { imputed: [], outOfRange: 'score', outOfDistribution: 'score', rationale: 'test: score everything' });
    for (const id of Object.keys(PATIENTS)) expect(by(id)).toMatchObject({ status: 'scored', riskAssessmentStatus: 'final' });
    const shifted = assessments.get('shifted')!;
    expect(shifted.status).toBe('final');
    const ood = applicabilityOf(shifted).extension!.find((e) => e.url === 'outOfDistribution')!;
    expect(subExtension(ood, 'flagged')?.valueBoolean).toBe(true);
    expect(subExtension(ood, 'reconstructionError')!.valueDecimal!).toBeGreaterThan(subExtension(ood, 'threshold')!.valueDecimal!);
    expect(imputedOf(assessments.get('mostly-imputed')!)).toEqual(['tc', 'ldl', 'hdl', 'tc_hdl_ratio', 'ln_tg', 'glucose']);
  });

  it('a policy that always skips writes only scores with nothing imputed, out of range or out of distribution', async () => {
    const { result, by, assessments } = await sync('strict', { imputed: [{ moreThan: 0, action: 'skip' }], outOfRange: 'skip', outOfDistribution: 'skip', rationale: 'test: skip anything flagged' });
    expect(by('typical')).toMatchObject({ status: 'scored', riskAssessmentStatus: 'final' });
    expect(by('out-of-range')).toMatchObject({ status: 'skipped', reason: 'input-out-of-range', reasonDetail: 'tc' });
    expect(by('some-imputed')).toMatchObject({ status: 'skipped', reason: 'too-many-imputed' });
    expect(by('shifted')).toMatchObject({ status: 'skipped', reason: 'out-of-distribution' });
    expect([...assessments.keys()]).toEqual(['typical']);
    const totals = result.byModel['diabetes-progression'];
    expect(totals.scored + totals.skipped).toBe(Object.keys(PATIENTS).length);
  });
});
