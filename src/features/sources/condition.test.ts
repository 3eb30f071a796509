import type { Condition } from 'fhir/r4.js';
import { mapPatient } from '../engine.js';
import { parseMapping } from '../mapping/load.js';
import { resourceNeeds } from '../mapping/queries.js';
import { expectReconciled, patient, reasonsOf, record } from '../testing/helpers.js';

/** The `condition` source: activity at as-of by the one rule of src/clinical/condition-state.ts. */
const AS_OF = new Date('2024-03-10T12:00:00Z');
const SCT = 'http://snomed.info/sct';
const ICD10CM = 'http://hl7.org/fhir/sid/icd-10-cm';

const mapping = parseMapping(
  `id: t
version: 1.0.0
model: t
features:
  - id: age
    source: { kind: patient-age }
    unit: a
    missing: { strategy: required }
  - id: diabetes
    source:
      kind: condition
      codes:
        - { system: ${SCT}, code: '44054006' }
        - { system: ${ICD10CM}, code: E11, descendants: true }
  - id: diabetes_any
    source:
      kind: condition
      verification: any
      codes: [{ system: ${SCT}, code: '44054006' }]
`,
  't.yaml',
);

function condition(id: string, extra: Partial<Condition> = {}, code: { system: string; code: string } = { system: SCT, code: '44054006' }): Condition {
  return {
    resourceType: 'Condition',
    id,
    subject: { reference: 'Patient/p1' },
    code: { coding: [code] },
    clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] },
    onsetDateTime: '2015-05-01',
    ...extra,
  };
}
const clinical = (code: string) => ({ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code }] });
const verification = (code: string) => ({ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-ver-status', code }] });

describe('condition source', () => {
  test('an active, confirmed Condition gives 1 and is basis; an ICD-10-CM subcode matches its parent', () => {
    const row = expectReconciled(
      mapPatient(mapping, record(patient(), [], { conditions: [condition('c1'), condition('c2', {}, { system: ICD10CM, code: 'E11.65' })] }), AS_OF),
    );
    expect(row.raw.diabetes).toBe(1);
    expect(row.basis).toEqual(['Condition/c1', 'Condition/c2']);
    expect(row.imputed).toEqual([false, false, false]);
  });

  test('inactive, refuted, entered-in-error, abated, after as-of and suspected Conditions give 0, each excluded with its reason', () => {
    const conditions = [
      condition('resolved', { clinicalStatus: clinical('resolved') }),
      condition('refuted', { verificationStatus: verification('refuted') }),
      condition('error', { verificationStatus: verification('entered-in-error') }),
      condition('abated', { clinicalStatus: undefined, abatementDateTime: '2020-01-01' }),
      condition('later', { recordedDate: '2024-05-01' }),
      condition('suspected', { verificationStatus: verification('provisional') }),
      condition('other-code', {}, { system: SCT, code: '15777000' }),
      { ...condition('elsewhere'), subject: { reference: 'Patient/p2' } },
    ];
    const row = expectReconciled(mapPatient(mapping, record(patient(), [], { conditions }), AS_OF));
    expect(row.raw.diabetes).toBe(0);
    expect(reasonsOf(row, 'Condition/resolved')).toEqual(['status', 'status']);
    expect(row.exclusions.find((e) => e.reference === 'Condition/resolved')?.detail).toBe('not active at as-of (resolved)');
    expect(reasonsOf(row, 'Condition/refuted')).toEqual(['status', 'status']);
    expect(reasonsOf(row, 'Condition/error')).toEqual(['status', 'status']);
    expect(reasonsOf(row, 'Condition/abated')).toEqual(['status', 'status']);
    expect(reasonsOf(row, 'Condition/later')).toEqual(['after-as-of', 'after-as-of']);
    expect(reasonsOf(row, 'Condition/elsewhere')).toEqual(['no-subject']);
    // a provisional diagnosis counts only where the feature accepts a suspected one
    expect(row.raw.diabetes_any).toBe(1);
    expect(row.basis).toEqual(['Condition/suspected']);
    // a Condition with no feature's code is not considered at all
    expect(row.counts).toEqual({ fetched: 7, used: 1, excluded: 6 });
  });

  test('the pull asks for Conditions by code, or for every Condition when a code has descendants', () => {
    expect(resourceNeeds(mapping, AS_OF).Condition).toEqual({ codes: undefined });
    const exact = parseMapping(
      `id: t\nversion: 1.0.0\nmodel: t\nfeatures:\n  - id: dm\n    source: { kind: condition, codes: [{ system: ${SCT}, code: '44054006' }] }\n`,
      't.yaml',
    );
    expect(resourceNeeds(exact, AS_OF)).toEqual({ Condition: { codes: [{ system: SCT, code: '44054006' }] } });
  });

  test('descendants only for code systems with a lexical hierarchy', () => {
    expect(() =>
      parseMapping(`id: t\nversion: 1.0.0\nmodel: t\nfeatures:\n  - id: dm\n    source: { kind: condition, codes: [{ system: ${SCT}, code: '73211009', descendants: true }] }\n`, 't.yaml'),
    ).toThrow(/descendants is only supported for/);
  });
});
