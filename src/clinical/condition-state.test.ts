import type { Condition } from 'fhir/r4.js';
import { conditionState } from './condition-state.js';
import { haveSynthea, syntheaFiles, syntheaPatient } from './testing/synthea.js';

const CLINICAL = 'http://terminology.hl7.org/CodeSystem/condition-clinical';
const VERIFICATION = 'http://terminology.hl7.org/CodeSystem/condition-ver-status';

function condition(extra: Partial<Condition> & { clinical?: string; verification?: string } = {}): Condition {
  const { clinical = 'active', verification = 'confirmed', ...rest } = extra;
  return {
    resourceType: 'Condition',
    id: 'c1',
    subject: { reference: 'Patient/p1' },
    code: { coding: [{ system: 'http://snomed.info/sct', code: '44054006' }] },
    clinicalStatus: clinical ? { coding: [{ system: CLINICAL, code: clinical }] } : undefined,
    verificationStatus: verification ? { coding: [{ system: VERIFICATION, code: verification }] } : undefined,
    onsetDateTime: '2010-03-01',
    recordedDate: '2010-03-02',
    ...rest,
  };
}
const at = (iso: string) => new Date(iso);

describe('conditionState', () => {
  it('excludes entered-in-error and refuted Conditions with the status reason', () => {
    expect(conditionState(condition({ verification: 'entered-in-error' }), at('2020-01-01'))).toEqual({
      active: false,
      verification: 'confirmed',
      excluded: { reason: 'status', detail: 'verificationStatus entered-in-error' },
    });
    expect(conditionState(condition({ verification: 'refuted' }), at('2020-01-01')).excluded).toEqual({ reason: 'status', detail: 'verificationStatus refuted' });
  });

  it('reports unconfirmed, provisional and differential diagnoses as suspected, still active', () => {
    for (const v of ['unconfirmed', 'provisional', 'differential'])
      expect(conditionState(condition({ verification: v }), at('2020-01-01'))).toEqual({ active: true, verification: 'suspected' });
    expect(conditionState(condition({ verification: '' }), at('2020-01-01'))).toEqual({ active: true, verification: 'confirmed' });
  });

  it('maps clinical status: active, recurrence, relapse are active; inactive, remission, resolved are not', () => {
    for (const c of ['active', 'recurrence', 'relapse']) expect(conditionState(condition({ clinical: c }), at('2020-01-01')).active).toBe(true);
    for (const c of ['inactive', 'remission', 'resolved'])
      expect(conditionState(condition({ clinical: c }), at('2020-01-01'))).toEqual({ active: false, verification: 'confirmed', inactiveBecause: c });
  });

  it('excludes a Condition recorded after as-of, and treats a later onset as not yet active', () => {
    expect(conditionState(condition(), at('2010-03-01T12:00:00Z')).excluded).toEqual({ reason: 'after-as-of', detail: 'recordedDate after as-of' });
    expect(conditionState(condition({ recordedDate: undefined, onsetDateTime: '2011-01-01' }), at('2010-06-01')).excluded?.reason).toBe('after-as-of');
    expect(conditionState(condition({ recordedDate: '2009-12-01', onsetDateTime: '2011-01-01' }), at('2010-06-01'))).toEqual({
      active: false,
      verification: 'confirmed',
      inactiveBecause: 'onset-after-as-of',
    });
  });

  it('places the abatement in time: a resolved condition was active at an as-of before its abatement', () => {
    const resolved = condition({ clinical: 'resolved', abatementDateTime: '2015-05-01T00:00:00Z' });
    expect(conditionState(resolved, at('2014-01-01')).active).toBe(true);
    expect(conditionState(resolved, at('2015-05-01T00:00:00Z'))).toMatchObject({ active: false, inactiveBecause: 'abated' });
    // active with a past abatement contradicts con-4: the dates win
    expect(conditionState(condition({ abatementDateTime: '2015-05-01' }), at('2016-01-01')).active).toBe(false);
    // recurrence after an abatement: active again
    expect(conditionState(condition({ clinical: 'recurrence', abatementDateTime: '2015-05-01' }), at('2016-01-01')).active).toBe(true);
  });

  it('reads onset and abatement as Period, Age, Range and string', () => {
    const birthDate = '1960-07-15';
    expect(conditionState(condition({ onsetDateTime: undefined, onsetPeriod: { start: '2010-01-01' }, abatementPeriod: { start: '2012-01-01', end: '2012-06-30' } }), at('2012-03-01')).active).toBe(true);
    expect(conditionState(condition({ onsetDateTime: undefined, abatementPeriod: { start: '2012-01-01', end: '2012-06-30' } }), at('2012-07-01')).active).toBe(false);
    expect(conditionState(condition({ abatementPeriod: { start: '2012-01-01' } }), at('2030-01-01')).active).toBe(true); // open end: not abated
    // onset at age 55 (2015-07-15), no recordedDate: before that, recorded after as-of
    const byAge = condition({ onsetDateTime: undefined, recordedDate: undefined, onsetAge: { value: 55, unit: 'a', system: 'http://unitsofmeasure.org', code: 'a' } });
    expect(conditionState(byAge, at('2015-07-14'), { birthDate }).excluded?.reason).toBe('after-as-of');
    expect(conditionState(byAge, at('2015-07-16'), { birthDate }).active).toBe(true);
    const ageRange = condition({ clinical: 'resolved', abatementRange: { low: { value: 50, unit: 'a', code: 'a' }, high: { value: 52, unit: 'a', code: 'a' } } });
    expect(conditionState(ageRange, at('2012-01-01'), { birthDate }).active).toBe(true); // before the end of age 52
    expect(conditionState(ageRange, at('2013-07-16'), { birthDate }).active).toBe(false);
    // an abatement string cannot be placed: the clinical status decides, and without one it counts as abated
    expect(conditionState(condition({ clinical: 'resolved', abatementString: 'in childhood' }), at('2020-01-01')).active).toBe(false);
    expect(conditionState(condition({ clinical: '', abatementString: 'in childhood' }), at('2020-01-01'))).toMatchObject({ active: false, inactiveBecause: 'abated' });
    expect(conditionState(condition({ clinical: '' }), at('2020-01-01')).active).toBe(true);
  });

  it('resolves partial dates toward active: onset from its first instant, abatement from its last', () => {
    const c = condition({ recordedDate: undefined, onsetDateTime: '2012', clinical: 'resolved', abatementDateTime: '2012-09' });
    expect(conditionState(c, at('2012-01-01T00:00:00Z')).active).toBe(true);
    expect(conditionState(c, at('2012-09-30T12:00:00Z')).active).toBe(true);
    expect(conditionState(c, at('2012-10-01T00:00:00Z')).active).toBe(false);
  });

  const synthea = haveSynthea();
  (synthea ? describe : describe.skip)('on the Synthea Conditions', () => {
    const patients = synthea ? syntheaFiles().flatMap((f) => syntheaPatient(f) ?? []) : [];
    const conditions = patients.flatMap((p) => p.byType('Condition').map((c) => ({ c, birthDate: p.patient.birthDate })));

    it('has resolved and active, confirmed Conditions with onset and abatement dateTimes', () => {
      expect(conditions.length).toBeGreaterThan(300);
      expect(conditions.some(({ c }) => c.abatementDateTime)).toBe(true);
    });

    it('at as-of 2015-01-01: later Conditions are excluded, abated ones inactive, the rest active; none refuted or suspected', () => {
      const asOf = at('2015-01-01T00:00:00Z');
      const states = conditions.map(({ c, birthDate }) => ({ c, s: conditionState(c, asOf, { birthDate }) }));
      const later = states.filter(({ c }) => Date.parse(c.recordedDate ?? c.onsetDateTime!) > asOf.getTime());
      expect(later.length).toBeGreaterThan(0);
      expect(later.every(({ s }) => s.excluded?.reason === 'after-as-of')).toBe(true);
      const known = states.filter(({ s }) => !s.excluded);
      expect(known.length + later.length).toBe(states.length);
      for (const { c, s } of known) {
        const abated = c.abatementDateTime !== undefined && Date.parse(c.abatementDateTime) <= asOf.getTime();
        expect({ id: c.id, active: s.active }).toEqual({ id: c.id, active: !abated });
        expect(s.verification).toBe('confirmed');
      }
      // a condition resolved today was active at an as-of before its abatement
      expect(known.some(({ c, s }) => c.clinicalStatus?.coding?.[0].code === 'resolved' && s.active)).toBe(true);
    });

    it('the type 2 diabetes of patient-440 is active from its recorded date on', () => {
      const p = syntheaPatient('patient-440.json')!;
      const dm = p.byType('Condition').find((c) => c.code?.coding?.[0].code === '44054006')!;
      expect(conditionState(dm, at('2002-11-30'), { birthDate: p.patient.birthDate }).excluded?.reason).toBe('after-as-of');
      expect(conditionState(dm, at('2020-01-01'), { birthDate: p.patient.birthDate })).toEqual({ active: true, verification: 'confirmed' });
    });
  });
});
