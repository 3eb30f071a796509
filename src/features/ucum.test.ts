import { createRequire } from 'node:module';
import { convertUnit, isConvertible } from './ucum.js';

/** ucum-lhc called directly, as convertUnit would without any memo. */
const ucum = (createRequire(import.meta.url)('@lhncbc/ucum-lhc') as { UcumLhcUtils: { getInstance(): { convertUnitTo(f: string, v: number, t: string, o?: object): { status: string; toVal: number | null; msg: string[] } } } }).UcumLhcUtils.getInstance();
function direct(value: number, from: string, to: string, molarMass?: number) {
  const res = ucum.convertUnitTo(from, value, to, molarMass ? { molecularWeight: molarMass } : {});
  if (res.status === 'succeeded' && typeof res.toVal === 'number' && Number.isFinite(res.toVal)) return { ok: true, value: res.toVal };
  return { ok: false, message: res.msg.join(' ') || 'not convertible' };
}

describe('convertUnit', () => {
  // Always three columns: a shorter row would hand the test jest's `done` callback as its molar mass.
  const cases: [string, string, number | undefined][] = [
    ['mmol/L', 'mg/dL', 180.156],
    ['mmol/L', 'mg/dL', undefined],
    ['mg', 'mg/dL', undefined],
    ['kg', 'g', undefined],
    ['Cel', '[degF]', undefined],
    ['mm[Hg]', 'kPa', undefined],
    ['g/L', 'mg/dL', 386.654],
    ['%', '1', undefined],
  ];

  it.each(cases)('%s -> %s (molar mass %s) gives what ucum-lhc gives, every time, for every value', (from, to, molarMass) => {
    for (let round = 0; round < 3; round++) {
      for (const value of [0, 1, 5.5, -40, 123.456, 1e-9]) {
        expect(convertUnit(value, from, to, molarMass)).toEqual(direct(value, from, to, molarMass));
      }
    }
  });

  it('refuses invalid units and keeps identity conversions exact', () => {
    expect(convertUnit(1, 'not-a-unit', 'mg/dL')).toEqual({ ok: false, message: 'not a valid UCUM unit' });
    expect(convertUnit(7.25, 'mg/dL', 'mg/dL')).toEqual({ ok: true, value: 7.25 });
    expect(isConvertible('mmol/L', 'mg/dL')).toBe(false);
    expect(isConvertible('mmol/L', 'mg/dL', 180.156)).toBe(true);
  });

  it('does not let a failure for a non-finite value decide later finite ones', () => {
    expect(convertUnit(NaN, 'kg', 'g').ok).toBe(false);
    expect(convertUnit(2, 'kg', 'g')).toEqual({ ok: true, value: 2000 });
  });
});
