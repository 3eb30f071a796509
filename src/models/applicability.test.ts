import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { packagePath } from '../core/paths.js';
import { assessApplicability } from './applicability.js';
import { readModelCard } from './loader.js';
import type { ModelCard } from './model-card.js';
import { loadOodModel } from './ood.js';

let diabetes: ModelCard;
let curb65: ModelCard;
beforeAll(async () => {
  diabetes = await readModelCard(join(packagePath('models'), 'diabetes-progression'));
  curb65 = await readModelCard(join(packagePath('models'), 'curb65'));
});

/** A diabetes-progression row from measured values, standardised as the mapping does. */
function diabetesRow(measured: Record<string, number | null>) {
  const values = new Float32Array(diabetes.featureIds.length);
  const imputed = diabetes.featureIds.map((id, j) => {
    const v = measured[id];
    const std = diabetes.preprocessing.columns[id];
    if (v === null || v === undefined) return true; // training mean: 0 after standardisation
    const x = id === 'ln_tg' ? Math.log(v) : v;
    values[j] = std ? (x - std.mean) / std.std : x;
    return false;
  });
  return { values, imputed, raw: measured };
}
const typical = { age: 55, 'sex=male': 1, bmi: 27, map: 95, tc: 190, ldl: 115, hdl: 50, tc_hdl_ratio: 3.8, ln_tg: 110, glucose: 92 };
const passed = { error: 0.1, flagged: false, threshold: 1.033366 };

describe('assessApplicability with the diabetes-progression policy', () => {
  it('scores as final when every input is observed, in range and in distribution', () => {
    const a = assessApplicability(diabetes, { ...diabetesRow(typical), ood: passed });
    expect(a).toMatchObject({ inputs: 10, imputed: [], outOfRange: [], rangesAssessed: true, decision: 'score', triggers: [] });
    expect(a.skipReason).toBeUndefined();
    expect(a.text).toBe(
      'Applicability: all 10 inputs observed; observed inputs within the training range; out-of-distribution check passed (reconstruction error 0.1, threshold 1.033366). Policy: written as final.',
    );
  });

  it('says in shadow mode that the score is written preliminary, never "written as final"', () => {
    const final = assessApplicability(diabetes, { ...diabetesRow(typical), ood: passed, shadow: true });
    expect(final.decision).toBe('score');
    expect(final.text).toMatch(/Policy: final, but written as preliminary \(shadow mode\)\.$/);
    expect(final.text).not.toContain('written as final');
    const some = assessApplicability(diabetes, { ...diabetesRow({ ...typical, ldl: null, hdl: null, tc_hdl_ratio: null }), ood: passed, shadow: true });
    expect(some.text).toContain('Policy: written as preliminary (too-many-imputed, shadow mode).');
  });

  it('writes preliminary above 2 imputed inputs and skips above 5 (a score on age, sex, BMI and MAP alone)', () => {
    const some = assessApplicability(diabetes, { ...diabetesRow({ ...typical, ldl: null, hdl: null, tc_hdl_ratio: null }), ood: passed });
    expect(some).toMatchObject({ imputed: ['ldl', 'hdl', 'tc_hdl_ratio'], decision: 'score-preliminary' });
    expect(some.text).toContain('3 of 10 inputs imputed (ldl, hdl, tc_hdl_ratio)');
    expect(some.text).toContain('Policy: written as preliminary (too-many-imputed).');
    const labsMissing = diabetesRow({ ...typical, tc: null, ldl: null, hdl: null, tc_hdl_ratio: null, ln_tg: null, glucose: null });
    const none = assessApplicability(diabetes, { ...labsMissing, ood: passed });
    expect(none).toMatchObject({ decision: 'skip', skipReason: 'too-many-imputed' });
    expect(none.triggers).toEqual([{ reason: 'too-many-imputed', action: 'skip', detail: '6 of 10 inputs imputed (more than 5)' }]);
  });

  it('reports an observed input outside the training range in its measured unit, and writes the score as preliminary', () => {
    const a = assessApplicability(diabetes, { ...diabetesRow({ ...typical, glucose: 182, ln_tg: 20 }), ood: passed });
    expect(a.decision).toBe('score-preliminary');
    expect(a.outOfRange.map((o) => [o.featureId, o.side])).toEqual([
      ['ln_tg', 'below'],
      ['glucose', 'above'],
    ]);
    expect(a.outOfRange[1]).toMatchObject({ min: -2.989362, max: 2.879022, measured: { value: 182, min: 58, max: 124, unit: 'mg/dL' } });
    expect(a.text).toContain('glucose 182 mg/dL above the training range (58-124 mg/dL)');
    expect(a.text).toContain('ln_tg 20 mg/dL below the training range (26-449 mg/dL)');
    const labelled = assessApplicability(diabetes, { ...diabetesRow({ ...typical, ln_tg: 20 }), ood: passed, labels: { ln_tg: 'triglycerides' } });
    expect(labelled.text).toContain('triglycerides 20 mg/dL below the training range');
  });

  it('never reports an imputed input as out of range', () => {
    const row = diabetesRow(typical);
    row.values[9] = 50; // a nonsense value in an imputed column
    row.imputed[9] = true;
    expect(assessApplicability(diabetes, { ...row, ood: passed }).outOfRange).toEqual([]);
  });

  it('skips a vector the out-of-distribution check flags; that reason wins over other skips', () => {
    const flagged = { error: 4.2, flagged: true, threshold: 1.033366 };
    expect(assessApplicability(diabetes, { ...diabetesRow(typical), ood: flagged })).toMatchObject({ decision: 'skip', skipReason: 'out-of-distribution' });
    const both = assessApplicability(diabetes, { ...diabetesRow({ ...typical, tc: null, ldl: null, hdl: null, tc_hdl_ratio: null, ln_tg: null, glucose: null }), ood: flagged });
    expect(both.skipReason).toBe('out-of-distribution');
    expect(both.triggers.map((t) => t.reason)).toEqual(['too-many-imputed', 'out-of-distribution']);
  });

  it('end to end with the shipped autoencoder: held-out rows pass, mmol/L read as mg/dL is refused', async () => {
    const runner = (await loadOodModel(join(packagePath('models'), 'diabetes-progression'), diabetes))!;
    try {
      const evaluation = JSON.parse(await readFile(packagePath(diabetes.ood!.evaluationFile), 'utf8')) as { sets: { id: string; rows: number[][] }[] };
      const row = (set: string) => Float32Array.from(evaluation.sets.find((s) => s.id === set)!.rows[0]);
      const rows = [row('held-out'), row('mmol-read-as-mg-dl')];
      const ood = await runner.run(rows);
      const decide = (i: number) =>
        assessApplicability(diabetes, { values: rows[i], imputed: Array.from(rows[i], () => false), ood: { error: ood.error[i], flagged: ood.flagged[i], threshold: ood.threshold } });
      expect(decide(0).decision).not.toBe('skip');
      expect(decide(1)).toMatchObject({ decision: 'skip', skipReason: 'out-of-distribution' });
    } finally {
      await runner.close();
    }
  });
});

describe('assessApplicability with the curb65 policy', () => {
  const row = (values: number[], imputed = [false, false, false, false, false, false]) => ({ values: Float32Array.from(values), imputed });

  it('has no training ranges to check and says so', () => {
    const a = assessApplicability(curb65, { ...row([0, 60, 16, 120, 80, 70]) });
    expect(a).toMatchObject({ rangesAssessed: false, outOfRange: [], ood: { assessed: false }, decision: 'score' });
    expect(a.text).toContain('no training range stated for this model; no out-of-distribution check');
  });

  it('writes a flagged vector and more than 2 imputed inputs as preliminary, never skips', () => {
    const a = assessApplicability(curb65, { ...row([0, 5, 16, 120, 80, 70], [false, true, true, true, false, false]), ood: { error: 9, flagged: true, threshold: 2.138909 } });
    expect(a.decision).toBe('score-preliminary');
    expect(a.triggers.map((t) => [t.reason, t.action])).toEqual([
      ['too-many-imputed', 'score-preliminary'],
      ['out-of-distribution', 'score-preliminary'],
    ]);
    expect(a.skipReason).toBeUndefined();
  });

  it('refuses a row of the wrong width', () => {
    expect(() => assessApplicability(curb65, row([1, 2, 3]))).toThrow(/needs 6 values/);
  });
});
