import { loadMapping, mapPatient, parseMapping } from '../index.js';
import { col, expectReconciled, obs, patient, reasonsOf, record } from '../testing/helpers.js';

/** `bmi` and `first-available` through the shipped diabetes-progression mapping (BMI recorded, else from weight and height). */
const diabetes = loadMapping('mappings/diabetes-progression.yaml');
const AS_OF = new Date('2024-03-10T12:00:00Z');
const BMI_STD = { mean: 26.3003, std: 4.357154 };

describe('BMI from body weight and height', () => {
  test('no BMI recorded: weight / height^2, the height older than the weight and in another unit; both are basis', () => {
    const rec = record(patient(), [obs('w', '29463-7', 198.416, '[lb_av]', '2024-02-01'), obs('h', '8302-2', 71, '[in_i]', '2023-01-15')]);
    const row = expectReconciled(mapPatient(diabetes, rec, AS_OF));
    const kg = 198.416 * 0.45359237;
    const m = 71 * 0.0254;
    expect(row.raw.bmi).toBeCloseTo(kg / (m * m), 6);
    expect(row.raw.bmi_recorded).toBeNull();
    expect(col(row, 'bmi')).toBeCloseTo((kg / (m * m) - BMI_STD.mean) / BMI_STD.std, 5);
    expect(row.imputed[row.columns.indexOf('bmi')]).toBe(false);
    expect(row.basis).toEqual(expect.arrayContaining(['Observation/h', 'Observation/w']));
  });

  test('a recorded BMI is preferred: weight and height are superseded, the score does not change', () => {
    const rec = record(patient(), [obs('b', '39156-5', 31.2, 'kg/m2', '2024-01-01'), obs('w', '29463-7', 90, 'kg', '2024-02-01'), obs('h', '8302-2', 170, 'cm', '2023-01-15')]);
    const row = expectReconciled(mapPatient(diabetes, rec, AS_OF));
    expect(row.raw.bmi).toBeCloseTo(31.2, 6);
    expect(row.basis).toContain('Observation/b');
    expect(reasonsOf(row, 'Observation/w')).toEqual(['superseded']);
    expect(reasonsOf(row, 'Observation/h')).toEqual(['superseded']);
    const recordedOnly = expectReconciled(mapPatient(diabetes, record(patient(), [obs('b', '39156-5', 31.2, 'kg/m2', '2024-01-01')]), AS_OF));
    expect(col(row, 'bmi')).toBe(col(recordedOnly, 'bmi'));
  });

  test('weight without height: BMI imputed, the weight excluded as unmatched; an implausible result is refused', () => {
    const row = expectReconciled(mapPatient(diabetes, record(patient(), [obs('w', '29463-7', 90, 'kg', '2024-02-01')]), AS_OF));
    expect(row.raw.bmi).toBeNull();
    expect(row.imputed[row.columns.indexOf('bmi')]).toBe(true);
    expect(reasonsOf(row, 'Observation/w')).toEqual(['unmatched']);
    // 300 kg at 1.0 m: 300 kg/m2, outside 10-80
    const bad = expectReconciled(mapPatient(diabetes, record(patient(), [obs('w', '29463-7', 300, 'kg', '2024-02-01'), obs('h', '8302-2', 100, 'cm', '2024-02-01')]), AS_OF));
    expect(bad.raw.bmi).toBeNull();
    expect(reasonsOf(bad, 'Observation/w')).toEqual(['implausible']);
  });

  test('a height older than its window is not used', () => {
    const row = expectReconciled(mapPatient(diabetes, record(patient(), [obs('w', '29463-7', 90, 'kg', '2024-02-01'), obs('h', '8302-2', 170, 'cm', '2021-01-15')]), AS_OF));
    expect(row.raw.bmi).toBeNull();
    expect(reasonsOf(row, 'Observation/h')).toEqual(['outside-window']);
  });

  test('bmi needs its inputs in kg and m and gives kg/m2; first-available inputs share its unit', () => {
    const text = `id: t
version: 1.0.0
model: t
features:
  - id: w
    input: false
    source: { kind: observation, codes: [{ system: http://loinc.org, code: 29463-7 }] }
    unit: g
    lookback: P1Y
  - id: h
    input: false
    source: { kind: observation, codes: [{ system: http://loinc.org, code: 8302-2 }] }
    unit: cm
    lookback: P1Y
  - id: b
    source: { kind: derived, op: bmi, of: [w, h] }
    unit: '1'
    missing: { strategy: mean, value: 25 }
  - id: either
    source: { kind: derived, op: first-available, of: [w, h] }
    unit: g
    missing: { strategy: mean, value: 1 }
`;
    expect(() => parseMapping(text, 't.yaml')).toThrow(
      /features\[2\]\.unit: bmi gives kg\/m2[\s\S]*features\[2\]\.source\.of\[0\]: bmi needs "w" in "kg"[\s\S]*features\[2\]\.source\.of\[1\]: bmi needs "h" in "m"[\s\S]*features\[3\]\.source\.of\[1\]: "h" is in "cm" but first-available/,
    );
  });
});
