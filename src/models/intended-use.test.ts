import { packagePath } from '../core/paths.js';
import { join } from 'node:path';
import type { Condition, Patient } from 'fhir/r4.js';
import { haveSynthea, syntheaFiles, syntheaPatient } from '../clinical/testing/synthea.js';
import { compileIntendedUse, evaluateIntendedUse } from './intended-use.js';
import { readModelCard } from './loader.js';
import type { ModelCard } from './model-card.js';
import { SKIP_REASONS } from './skip-reasons.js';
import { loadValueSets } from './value-sets.js';

const SNOMED = 'http://snomed.info/sct';
const ICD10CM = 'http://hl7.org/fhir/sid/icd-10-cm';
const valueSets = loadValueSets();
let diabetes: ModelCard;
let curb65: ModelCard;
beforeAll(async () => {
  diabetes = await readModelCard(join(packagePath('models'), 'diabetes-progression'));
  curb65 = await readModelCard(join(packagePath('models'), 'curb65'));
});

const patient = (extra: Partial<Patient> = {}): Patient => ({ resourceType: 'Patient', id: 'p1', birthDate: '1960-05-01', gender: 'female', ...extra });
function condition(id: string, system: string, code: string, extra: Partial<Condition> & { clinical?: string; verification?: string } = {}): Condition {
  const { clinical = 'active', verification = 'confirmed', ...rest } = extra;
  return {
    resourceType: 'Condition',
    id,
    subject: { reference: 'Patient/p1' },
    code: { coding: [{ system, code }] },
    clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: clinical }] },
    verificationStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-ver-status', code: verification }] },
    recordedDate: '2015-01-01',
    ...rest,
  };
}
const asOf = new Date('2024-06-30T00:00:00Z');

describe('evaluateIntendedUse: diabetes-progression (ages 19-79 with diabetes mellitus)', () => {
  const evaluate = (p: Patient, conditions: Condition[], when = asOf) => evaluateIntendedUse(diabetes, { patient: p, conditions, asOf: when }, valueSets);

  it('admits an adult with active, confirmed type 2 diabetes and names the Condition as evidence', () => {
    expect(evaluate(patient(), [condition('dm', SNOMED, '44054006')])).toEqual({
      eligible: true,
      ageYears: 64,
      evidence: [{ criterionId: 'diabetes-mellitus', references: ['Condition/dm'] }],
      conditionExclusions: [],
    });
  });

  it('admits ICD-10-CM E11 subcodes through the value set, and refuses prediabetes', () => {
    expect(evaluate(patient(), [condition('dm', ICD10CM, 'E11.65')]).eligible).toBe(true);
    expect(evaluate(patient(), [condition('dm', ICD10CM, 'E1165')]).eligible).toBe(true);
    expect(evaluate(patient(), [condition('pre', SNOMED, '15777000'), condition('pre2', ICD10CM, 'R73.03')])).toMatchObject({
      eligible: false,
      reason: 'missing-required-condition',
      detail: 'diabetes-mellitus: no matching Condition',
    });
  });

  it('does not admit on a provisional, resolved, refuted or entered-in-error diabetes diagnosis', () => {
    expect(evaluate(patient(), [condition('dm', SNOMED, '44054006', { verification: 'provisional' })])).toMatchObject({
      reason: 'missing-required-condition',
      detail: 'diabetes-mellitus: only suspected records',
    });
    expect(evaluate(patient(), [condition('dm', SNOMED, '44054006', { clinical: 'resolved' })])).toMatchObject({ detail: 'diabetes-mellitus: only resolved records' });
    const refuted = evaluate(patient(), [condition('dm', SNOMED, '44054006', { verification: 'refuted' }), condition('x', SNOMED, '44054006', { verification: 'entered-in-error' })]);
    expect(refuted).toMatchObject({ eligible: false, reason: 'missing-required-condition', detail: 'diabetes-mellitus: no matching Condition' });
    expect(refuted.conditionExclusions).toEqual([
      { reference: 'Condition/dm', reason: 'status', detail: 'verificationStatus refuted' },
      { reference: 'Condition/x', reason: 'status', detail: 'verificationStatus entered-in-error' },
    ]);
  });

  it('refuses ages outside 19-79, an unknown age, and ignores another patient\'s Condition', () => {
    const dm = condition('dm', SNOMED, '44054006');
    expect(evaluate(patient({ birthDate: '2010-01-01' }), [dm])).toMatchObject({ eligible: false, reason: 'age-out-of-range', ageYears: 14 });
    expect(evaluate(patient({ birthDate: '1944-06-30' }), [dm])).toMatchObject({ reason: 'age-out-of-range', ageYears: 80 });
    expect(evaluate(patient({ birthDate: '1944-07-01' }), [dm])).toMatchObject({ eligible: true, ageYears: 79 });
    expect(evaluate(patient({ birthDate: undefined }), [dm])).toMatchObject({ reason: 'age-unknown' });
    const other = { ...dm, subject: { reference: 'Patient/p2' } };
    expect(evaluate(patient(), [other])).toMatchObject({
      reason: 'missing-required-condition',
      conditionExclusions: [{ reference: 'Condition/dm', reason: 'no-subject', detail: 'subject is not this patient' }],
    });
  });

  it('never scores a deceased patient or an inactive record, whatever the Conditions', () => {
    const dm = [condition('dm', SNOMED, '44054006')];
    expect(evaluate(patient({ deceasedBoolean: true }), dm)).toMatchObject({ eligible: false, reason: 'deceased', detail: 'deceasedBoolean true' });
    expect(evaluate(patient({ deceasedDateTime: '2024-06-30T00:00:00Z' }), dm)).toMatchObject({ reason: 'deceased' }); // at as-of
    expect(evaluate(patient({ deceasedDateTime: '2024' }), dm)).toMatchObject({ reason: 'deceased' }); // died in 2024: possibly before as-of
    expect(evaluate(patient({ deceasedDateTime: 'June 2024' }), dm)).toMatchObject({ reason: 'deceased', detail: expect.stringMatching(/not a valid/) });
    expect(evaluate(patient({ deceasedDateTime: '2024-07-01' }), dm).eligible).toBe(true); // alive at as-of
    expect(evaluate(patient({ deceasedBoolean: false }), dm).eligible).toBe(true);
    expect(evaluate(patient({ active: false, deceasedBoolean: true }), dm)).toMatchObject({ reason: 'inactive-record' });
  });
});

describe('evaluateIntendedUse: curb65 (adults; excluding HIV, tuberculosis, bronchiectasis)', () => {
  const evaluate = (p: Patient, conditions: Condition[]) => evaluateIntendedUse(curb65, { patient: p, conditions, asOf }, valueSets);

  it('admits any adult without an excluding condition, and refuses children', () => {
    expect(evaluate(patient({ gender: undefined }), [])).toEqual({ eligible: true, ageYears: 64, evidence: [], conditionExclusions: [] });
    expect(evaluate(patient({ birthDate: '2006-07-01' }), [])).toMatchObject({ reason: 'age-out-of-range', ageYears: 17 });
    expect(evaluate(patient({ birthDate: '2006-06-30' }), []).eligible).toBe(true);
  });

  it('refuses on an excluding condition even when only suspected, not when resolved before as-of', () => {
    expect(evaluate(patient(), [condition('hiv', SNOMED, '86406008')])).toMatchObject({ eligible: false, reason: 'excluding-condition', detail: 'hiv-infection (Condition/hiv)' });
    expect(evaluate(patient(), [condition('tb', ICD10CM, 'A15.0', { verification: 'provisional' })])).toMatchObject({
      reason: 'excluding-condition',
      detail: 'tuberculosis (Condition/tb, suspected)',
    });
    expect(evaluate(patient(), [condition('tb', SNOMED, '56717001', { clinical: 'resolved', abatementDateTime: '2019-01-01' })]).eligible).toBe(true);
  });
});

describe('intended use as data', () => {
  it('checks sex when the card restricts it (a missing gender is not admitted)', () => {
    const card = { id: 'x', intendedPopulation: { sex: ['female' as const], requiredConditions: [], excludingConditions: [], otherCriteria: [], basis: 'test' } };
    expect(evaluateIntendedUse(card, { patient: patient(), conditions: [], asOf }).eligible).toBe(true);
    expect(evaluateIntendedUse(card, { patient: patient({ gender: 'male' }), conditions: [], asOf })).toMatchObject({ reason: 'sex-not-intended' });
    expect(evaluateIntendedUse(card, { patient: patient({ gender: undefined }), conditions: [], asOf })).toMatchObject({ reason: 'sex-not-intended' });
  });

  it('a card without a population gets only the universal gates', () => {
    expect(evaluateIntendedUse({ id: 'x' }, { patient: patient({ birthDate: '2020-01-01' }), conditions: [], asOf }).eligible).toBe(true);
    expect(evaluateIntendedUse({ id: 'x' }, { patient: patient({ deceasedBoolean: true }), conditions: [], asOf })).toMatchObject({ reason: 'deceased' });
  });

  it('names the model and criterion when a value set is not loaded', () => {
    expect(() => compileIntendedUse(diabetes, new Map())).toThrow(/model diabetes-progression: intendedPopulation criterion diabetes-mellitus names value set/);
  });

  it('every skip reason it returns is in the one list', () => {
    for (const r of ['inactive-record', 'deceased', 'age-unknown', 'age-out-of-range', 'sex-not-intended', 'excluding-condition', 'missing-required-condition'])
      expect(SKIP_REASONS).toContain(r);
  });
});

const synthea = haveSynthea();
(synthea ? describe : describe.skip)('diabetes-progression intended use on the Synthea patients', () => {
  it('refuses every deceased patient, every child and every patient without diabetes; admits the two adults with diabetes', () => {
    const when = new Date('2020-06-01T00:00:00Z');
    const patients = syntheaFiles().flatMap((f) => syntheaPatient(f) ?? []);
    expect(patients.length).toBe(57);
    const results = patients.map((p) => ({ p, r: evaluateIntendedUse(diabetes, { patient: p.patient, conditions: p.byType('Condition'), asOf: when }, valueSets) }));
    const reasons: Record<string, number> = {};
    for (const { r } of results) if (!r.eligible) reasons[r.reason] = (reasons[r.reason] ?? 0) + 1;
    const eligible = results.filter(({ r }) => r.eligible);
    expect(eligible.map(({ p }) => p.file).sort()).toEqual(['patient-096.json', 'patient-440.json']);
    expect(eligible.length + Object.values(reasons).reduce((a, b) => a + b, 0)).toBe(patients.length);
    for (const { p, r } of results) {
      if (p.patient.deceasedDateTime && Date.parse(p.patient.deceasedDateTime) <= when.getTime()) expect(r).toMatchObject({ eligible: false, reason: 'deceased' });
    }
    expect(reasons.deceased).toBe(patients.filter((p) => p.patient.deceasedDateTime).length);
    // children (under 19 at as-of) are refused for their age, prediabetes-only adults for the missing condition
    for (const { p, r } of results) {
      const age = r.ageYears;
      if (!p.patient.deceasedDateTime && age !== undefined && age < 19) expect(r).toMatchObject({ reason: 'age-out-of-range' });
    }
    const prediabetesOnly = results.filter(
      ({ p, r }) => !p.patient.deceasedDateTime && (r.ageYears ?? 0) >= 19 && (r.ageYears ?? 0) <= 79 && p.byType('Condition').some((c) => c.code?.coding?.[0].code === '15777000') && !p.byType('Condition').some((c) => c.code?.coding?.[0].code === '44054006'),
    );
    expect(prediabetesOnly.length).toBeGreaterThan(5);
    for (const { r } of prediabetesOnly) expect(r).toMatchObject({ eligible: false, reason: 'missing-required-condition' });
    expect(reasons['age-out-of-range']).toBeGreaterThanOrEqual(5);
  });

  it('as-of decides: patient-440 is not admitted before the diabetes was recorded, nor patient-248 after her death', () => {
    const p440 = syntheaPatient('patient-440.json')!;
    const r = evaluateIntendedUse(diabetes, { patient: p440.patient, conditions: p440.byType('Condition'), asOf: new Date('2002-11-01T00:00:00Z') }, valueSets);
    expect(r).toMatchObject({ eligible: false, reason: 'missing-required-condition' });
    expect(r.conditionExclusions.some((e) => e.reason === 'after-as-of')).toBe(true);
    const p248 = syntheaPatient('patient-248.json')!;
    expect(evaluateIntendedUse(curb65, { patient: p248.patient, conditions: p248.byType('Condition'), asOf: new Date('2016-04-01T00:00:00Z') }, valueSets).eligible).toBe(true);
    expect(evaluateIntendedUse(curb65, { patient: p248.patient, conditions: p248.byType('Condition'), asOf: new Date('2016-04-06T00:00:00Z') }, valueSets)).toMatchObject({ reason: 'deceased' });
  });
});
