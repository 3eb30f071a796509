import type { Observation } from 'fhir/r4.js';
import { loadMapping, mapPatient, parseMapping } from './index.js';
import { completedYears } from '../core/time.js';
import { bpPanel, col, expectReconciled, LOINC, obs, patient, reasonsOf, record, UCUM } from './testing/helpers.js';

const diabetes = loadMapping('mappings/diabetes-progression.yaml');
const curb = loadMapping('mappings/curb65.yaml');
const AS_OF = new Date('2024-03-10T12:00:00Z');

/** A small mapping exercising aggregates, transforms and missing policies. */
const test_mapping = parseMapping(
  `id: t
version: 1.0.0
model: t
features:
  - id: age
    source: { kind: patient-age }
    unit: a
    missing: { strategy: required }
  - id: glu_latest
    source: { kind: observation, codes: [{ system: http://loinc.org, code: 2345-7 }, { system: http://loinc.org, code: 15074-8 }] }
    unit: mg/dL
    molarMass: 180.156
    lookback: P1Y
    plausible: { min: 10, max: 2000 }
    missing: { strategy: constant, value: 90, indicator: true }
  - id: glu_mean
    source: { kind: observation, codes: [{ system: http://loinc.org, code: 2345-7 }] }
    unit: mg/dL
    lookback: P1Y
    aggregate: mean
    missing: { strategy: mean, value: 100 }
  - id: glu_min
    source: { kind: observation, codes: [{ system: http://loinc.org, code: 2345-7 }] }
    unit: mg/dL
    lookback: P1Y
    aggregate: min
    missing: { strategy: required }
  - id: glu_max
    source: { kind: observation, codes: [{ system: http://loinc.org, code: 2345-7 }] }
    unit: mg/dL
    lookback: P1Y
    aggregate: max
    plausible: { min: 1 }
    missing: { strategy: mean }
    transforms: [log, { standardize: { mean: 4.5, std: 0.5 } }, { clip: { min: -1, max: 1 } }]
  - id: glu_count
    source: { kind: observation, codes: [{ system: http://loinc.org, code: 2345-7 }] }
    unit: mg/dL
    lookback: P1Y
    aggregate: count
  - id: smoker
    source: { kind: observation, codes: [{ system: http://loinc.org, code: 72166-2 }] }
    lookback: P5Y
    oneHot: ['449868002', '8517006']
`,
  'test.yaml',
);

describe('patient sources', () => {
  test.each([
    ['1970-03-10', 54],
    ['1970-03-11', 53],
    ['1970', 53], // year only: counted from 1970-12-31
    ['1970-02', 54], // year-month: counted from 1970-02-28
    ['1970-03', 53], // 1970-03-31 is after the birthday date in March
    ['2025-01-01', null],
    ['garbage', null],
  ])('age from birthDate %s', (birthDate, years) => {
    expect(completedYears(birthDate, AS_OF)).toBe(years);
  });

  test('age and sex columns; missing birthDate skips the patient (required)', () => {
    const row = mapPatient(diabetes, record(patient('p1', '1970-03-10', 'female')), AS_OF);
    expect(row.raw.age).toBe(54);
    expect(col(row, 'age')).toBeCloseTo((54 - 48.23193) / 13.194, 5);
    expect(col(row, 'sex=male')).toBe(0);
    expect(row.raw['sex=male']).toBe(0);
    const male = mapPatient(diabetes, record(patient('p1', '1970-03-10', 'male')), AS_OF);
    expect(col(male, 'sex=male')).toBe(1);
    const noBirth = mapPatient(diabetes, record({ resourceType: 'Patient', id: 'p1' }), AS_OF);
    expect(noBirth.skipReason).toBe('missing-required-feature:age');
    expect(noBirth.imputed[noBirth.columns.indexOf('sex=male')]).toBe(true);
  });

  test('a patient with only age and sex is not scored', () => {
    const row = mapPatient(diabetes, record(patient()), AS_OF);
    expect(row.skipReason).toBe('too-few-observed-features');
    // every standardised missing column is the training mean (0)
    for (const c of ['bmi', 'map', 'tc', 'ldl', 'hdl', 'tc_hdl_ratio', 'ln_tg', 'glucose']) {
      expect(col(row, c)).toBe(0);
      expect(row.imputed[row.columns.indexOf(c)]).toBe(true);
    }
    expect(row.counts).toEqual({ fetched: 0, used: 0, excluded: 0 });
  });
});

describe('observations', () => {
  test('diabetes row from single observations and a BP panel', () => {
    const rec = record(patient(), [
      obs('bmi', '39156-5', 31, 'kg/m2', '2024-01-01T00:00:00Z'),
      bpPanel('bp', 140, 85, '2024-02-01T00:00:00Z'),
      obs('tc', '2093-3', 220, 'mg/dL', '2023-06-01'),
      obs('ldl', '13457-7', 130, 'mg/dL', '2023-06-01'),
      obs('hdl', '2085-9', 44, 'mg/dL', '2023-06-01'),
      obs('tg', '2571-8', 150, 'mg/dL', '2023-06-01'),
      obs('glu', '15074-8', 6.3, 'mmol/L', '2023-06-01'),
    ]);
    const row = expectReconciled(mapPatient(diabetes, rec, AS_OF));
    expect(row.skipReason).toBeUndefined();
    expect(row.raw.map).toBeCloseTo((140 + 2 * 85) / 3, 10);
    expect(row.raw.tc_hdl_ratio).toBeCloseTo(220 / 44, 10);
    expect(row.raw.ln_tg).toBe(150);
    expect(col(row, 'ln_tg')).toBeCloseTo((Math.log(150) - 4.648105) / 0.5296825, 5);
    expect(row.raw.glucose).toBeCloseTo(113.498, 3); // 6.3 mmol/L * 180.156 g/mol / 10
    expect(row.basis).toEqual(['Observation/bmi', 'Observation/bp', 'Observation/glu', 'Observation/hdl', 'Observation/ldl', 'Observation/tc', 'Observation/tg']);
    // the BP panel feeds sbp and dbp but counts once
    expect(row.counts).toEqual({ fetched: 7, used: 7, excluded: 0 });
    expect(row.imputed.every((x) => !x)).toBe(true);
  });

  test('panel 55284-4 (Synthea) and stand-alone systolic/diastolic', () => {
    const row = mapPatient(
      diabetes,
      record(patient(), [bpPanel('bp', 120, 80, '2024-01-01', '55284-4'), obs('s', '8480-6', 150, 'mm[Hg]', '2024-02-01'), obs('d', '8462-4', 90, 'mm[Hg]', '2024-02-01')]),
      AS_OF,
    );
    expectReconciled(row);
    expect(row.raw.sbp).toBe(150);
    expect(row.raw.dbp).toBe(90);
    expect(reasonsOf(row, 'Observation/bp').sort()).toEqual(['superseded', 'superseded']);
  });

  test('unit conversions: cholesterol mmol/L, glucose, BUN and urea to mmol/L', () => {
    const row = mapPatient(
      diabetes,
      record(patient(), [obs('tc', '14647-2', 5.2, 'mmol/L', '2024-01-01'), obs('hdl', '2085-9', 1.3, 'mmol/L', '2024-01-01'), obs('g', '2345-7', 5, 'mmol/L', '2024-01-01')]),
      AS_OF,
    );
    expect(row.raw.tc).toBeCloseTo(5.2 * 38.6654, 3);
    expect(row.raw.hdl).toBeCloseTo(1.3 * 38.6654, 3);
    expect(row.raw.tc_hdl_ratio).toBeCloseTo(4, 6);
    expect(row.raw.glucose).toBeCloseTo(90.078, 3);

    const t = new Date('2024-03-10T12:00:00Z');
    const urea = (o: Observation) => mapPatient(curb, record(patient(), [o]), t).raw.urea;
    expect(urea(obs('u1', '3094-0', 14, 'mg/dL', '2024-03-10T08:00:00Z'))).toBeCloseTo(14 / 2.80134, 4); // BUN
    expect(urea(obs('u2', '6299-2', 28.0134, 'mg/dL', '2024-03-10T08:00:00Z'))).toBeCloseTo(10, 6);
    expect(urea(obs('u3', '3091-6', 30.03, 'mg/dL', '2024-03-10T08:00:00Z'))).toBeCloseTo(5, 6); // urea 60.06 g/mol
    expect(urea(obs('u4', '14937-7', 7.5, 'mmol/L', '2024-03-10T08:00:00Z'))).toBe(7.5);
    // respiratory rate with an annotation unit
    const rr = mapPatient(curb, record(patient(), [obs('r', '9279-1', 22, '{breaths}/min', '2024-03-10T08:00:00Z')]), t);
    expect(rr.raw.resp_rate).toBe(22);
  });

  test('non-UCUM quantity system falls back to the human unit', () => {
    const o = obs('g', '2345-7', 100, undefined, '2024-01-01', { valueQuantity: { value: 100, unit: 'mg/dL', system: 'http://snomed.info/sct', code: '258797006' } });
    expect(mapPatient(diabetes, record(patient(), [o]), AS_OF).raw.glucose).toBe(100);
  });

  test('aggregates latest/mean/min/max/count, transforms, clip, indicator and one-hot codes', () => {
    const rec = record(patient('p1', '1980-01-01'), [
      obs('a', '2345-7', 100, 'mg/dL', '2024-01-01T00:00:00Z'),
      obs('b', '2345-7', 300, 'mg/dL', '2024-02-01T00:00:00Z'),
      obs('c', '2345-7', 80, 'mg/dL', '2023-12-01T00:00:00Z'),
      {
        resourceType: 'Observation',
        id: 'smk',
        status: 'final',
        code: { coding: [{ system: LOINC, code: '72166-2' }] },
        subject: { reference: 'Patient/p1' },
        effectiveDateTime: '2023-01-01',
        valueCodeableConcept: { coding: [{ system: 'http://snomed.info/sct', code: '8517006' }] },
      },
    ]);
    const row = expectReconciled(mapPatient(test_mapping, rec, AS_OF));
    expect(row.columns).toEqual(['age', 'glu_latest', 'glu_latest__missing', 'glu_mean', 'glu_min', 'glu_max', 'glu_count', 'smoker=449868002', 'smoker=8517006']);
    expect(row.raw.glu_latest).toBe(300);
    expect(row.raw.glu_mean).toBe(160);
    expect(row.raw.glu_min).toBe(80);
    expect(row.raw.glu_max).toBe(300);
    expect(row.raw.glu_count).toBe(3);
    expect(col(row, 'glu_max')).toBe(1); // (ln 300 - 4.5)/0.5 = 2.41 clipped to 1
    expect(col(row, 'glu_latest__missing')).toBe(0);
    expect(col(row, 'smoker=449868002')).toBe(0);
    expect(col(row, 'smoker=8517006')).toBe(1);
    expect(row.basis).toContain('Observation/smk');

    const empty = mapPatient(test_mapping, record(patient('p1', '1980-01-01')), AS_OF);
    expect(col(empty, 'glu_latest')).toBe(90);
    expect(col(empty, 'glu_latest__missing')).toBe(1);
    expect(col(empty, 'glu_mean')).toBe(100);
    expect(col(empty, 'glu_count')).toBe(0);
    expect(empty.imputed[empty.columns.indexOf('glu_count')]).toBe(false);
    expect(col(empty, 'glu_max')).toBe(0); // mean without value: the standardize mean -> 0
    expect(empty.skipReason).toBe('missing-required-feature:glu_min');
    expect(empty.raw.glu_latest).toBeNull();
  });

  test('latest ties are broken by id, whatever the record order', () => {
    const a = obs('a', '2345-7', 100, 'mg/dL', '2024-01-01T00:00:00Z');
    const b = obs('b', '2345-7', 200, 'mg/dL', '2024-01-01T00:00:00Z');
    const r1 = mapPatient(diabetes, record(patient(), [a, b]), AS_OF);
    const r2 = mapPatient(diabetes, record(patient(), [b, a]), AS_OF);
    expect(r1.raw.glucose).toBe(200);
    expect(r1).toEqual(r2);
    expect(reasonsOf(r1, 'Observation/a')).toEqual(['superseded']);
  });
});

describe('as-of', () => {
  const before = obs('old', '2345-7', 100, 'mg/dL', '2024-03-01T00:00:00Z');
  const exactly = obs('now', '2345-7', 150, 'mg/dL', AS_OF.toISOString());
  const after = obs('late', '2345-7', 200, 'mg/dL', new Date(AS_OF.getTime() + 1).toISOString());

  test('an Observation 1 ms after as-of is never used; one at as-of is', () => {
    const row = expectReconciled(mapPatient(diabetes, record(patient(), [before, exactly, after]), AS_OF));
    expect(row.raw.glucose).toBe(150);
    expect(reasonsOf(row, 'Observation/late')).toEqual(['after-as-of']);
    expect(reasonsOf(row, 'Observation/old')).toEqual(['superseded']);
  });

  test('issued after as-of is not used even when effective before', () => {
    const o = obs('i', '2345-7', 100, 'mg/dL', '2024-03-01T00:00:00Z', { issued: '2024-03-10T12:00:00.001Z' });
    expect(reasonsOf(mapPatient(diabetes, record(patient(), [o]), AS_OF), 'Observation/i')).toEqual(['after-as-of']);
  });

  test('a date-only value counts from the end of its day', () => {
    const o = obs('d', '2345-7', 100, 'mg/dL', '2024-03-10');
    expect(reasonsOf(mapPatient(diabetes, record(patient(), [o]), AS_OF), 'Observation/d')).toEqual(['after-as-of']);
    expect(mapPatient(diabetes, record(patient(), [o]), new Date('2024-03-10T23:59:59.999Z')).raw.glucose).toBe(100);
  });

  test('re-running for an earlier as-of reproduces the earlier row', () => {
    const earlier = new Date('2024-03-05T00:00:00Z');
    const then = mapPatient(diabetes, record(patient(), [before]), earlier);
    const now = mapPatient(diabetes, record(patient(), [before, exactly, after]), earlier);
    expect(Array.from(now.values)).toEqual(Array.from(then.values));
    expect(now.basis).toEqual(then.basis);
    expect(now.raw).toEqual(then.raw);
  });

  test('lookback window: P1Y for BMI', () => {
    const row = mapPatient(diabetes, record(patient(), [obs('b', '39156-5', 25, 'kg/m2', '2023-03-10T11:59:59Z')]), AS_OF);
    expect(reasonsOf(row, 'Observation/b')).toEqual(['outside-window']);
    const inside = mapPatient(diabetes, record(patient(), [obs('b', '39156-5', 25, 'kg/m2', '2023-03-10T12:00:00Z')]), AS_OF);
    expect(inside.raw.bmi).toBe(25);
  });
});

describe('exclusion reasons and counts', () => {
  test('every observation reason is counted once and reconciles', () => {
    const t = '2024-01-01T00:00:00Z';
    const cases: [Observation, string[]][] = [
      [obs('cancelled', '2345-7', 100, 'mg/dL', t, { status: 'cancelled' }), ['status']],
      [obs('eie', '2345-7', 100, 'mg/dL', t, { status: 'entered-in-error' }), ['status']],
      [obs('prelim', '2345-7', 100, 'mg/dL', t, { status: 'preliminary' }), ['status']],
      [obs('dar', '2345-7', 0, 'mg/dL', t, { valueQuantity: undefined, dataAbsentReason: { text: 'error' } }), ['data-absent']],
      [obs('str', '2345-7', 0, 'mg/dL', t, { valueQuantity: undefined, valueString: 'high' }), ['non-numeric']],
      [obs('cmp', '2345-7', 0, 'mg/dL', t, { valueQuantity: { value: 40, comparator: '<', system: UCUM, code: 'mg/dL' } }), ['comparator']],
      [obs('nounit', '2345-7', 100, undefined, t), ['unit-unconvertible']],
      [obs('badunit', '2345-7', 100, 'mm[Hg]', t), ['unit-unconvertible']],
      [obs('implaus', '2345-7', 5000, 'mg/dL', t), ['implausible']],
      [obs('old', '2345-7', 100, 'mg/dL', '2020-01-01'), ['outside-window']],
      [obs('future', '2345-7', 100, 'mg/dL', '2025-01-01'), ['after-as-of']],
      [obs('other', '2345-7', 100, 'mg/dL', t, {}, 'Patient/someone-else'), ['no-subject']],
      [obs('nosubj', '2345-7', 100, 'mg/dL', t, { subject: undefined }), ['no-subject']],
      [obs('nodate', '2345-7', 100, 'mg/dL', t, { effectiveDateTime: undefined }), ['malformed']],
      [obs('older', '2345-7', 100, 'mg/dL', '2023-12-01'), ['superseded']],
      [bpPanel('sysonly', 120, null, t), ['unmatched']], // dbp missing -> map missing -> systolic unused
      [bpPanel('nocomp', null, null, t), ['unmatched']], // panel without the wanted components
      [obs('chosen', '2345-7', 100, 'mg/dL', t), []],
    ];
    const row = expectReconciled(mapPatient(diabetes, record(patient(), cases.map(([o]) => o)), AS_OF));
    for (const [o, reasons] of cases) expect([o.id, [...new Set(reasonsOf(row, `Observation/${o.id}`))]]).toEqual([o.id, reasons]);
    expect(row.counts).toEqual({ fetched: cases.length, used: 1, excluded: cases.length - 1 });
    // details are safe to log: never values from the resource
    expect(row.exclusions.find((e) => e.reference === 'Observation/implaus')?.detail).toBe('outside [10, 2000] mg/dL');
    // observations of codes the mapping does not ask for are not counted
    const other = mapPatient(diabetes, record(patient(), [obs('x', '718-7', 13, 'g/dL', t)]), AS_OF);
    expect(other.counts).toEqual({ fetched: 0, used: 0, excluded: 0 });
  });

  test('data-absent component, cancelled panel', () => {
    const t = '2024-01-01T00:00:00Z';
    const dar = bpPanel('dar', 120, 80, t);
    dar.component![1] = { code: dar.component![1].code, dataAbsentReason: { text: 'not measured' } };
    const row = expectReconciled(mapPatient(diabetes, record(patient(), [dar, bpPanel('c', 120, 80, t, '85354-9', { status: 'cancelled' })]), AS_OF));
    expect(reasonsOf(row, 'Observation/dar').sort()).toEqual(['data-absent', 'unmatched']);
    expect(reasonsOf(row, 'Observation/c')).toEqual(['status', 'status']);
    expect(row.raw.sbp).toBe(120);
    expect(row.raw.map).toBeNull();
  });

  test('the same resource listed twice counts once', () => {
    const o = obs('g', '2345-7', 100, 'mg/dL', '2024-01-01');
    const row = expectReconciled(mapPatient(diabetes, record(patient(), [o, o]), AS_OF));
    expect(row.counts).toEqual({ fetched: 1, used: 1, excluded: 0 });
  });
});
