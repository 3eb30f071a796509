import { bandFor } from './bands.js';
import { explain } from './explain.js';
import { loadModel } from './loader.js';
import { packagePath } from '../core/paths.js';
import { modelIds } from './registry.js';
import type { OnnxModelRunner } from './runner.js';

describe('committed models', () => {
  let diabetes: OnnxModelRunner;
  let curb65: OnnxModelRunner;

  beforeAll(async () => {
    diabetes = await loadModel(packagePath('models', 'diabetes-progression'), { batchSize: 1024 });
    curb65 = await loadModel(packagePath('models', 'curb65'));
  });
  afterAll(async () => {
    await diabetes?.close();
    await curb65?.close();
  });

  it('load, validate and pass their self-tests', () => {
    expect(diabetes.card.id).toBe('diabetes-progression');
    expect(diabetes.card.featureIds).toEqual(['age', 'sex=male', 'bmi', 'map', 'tc', 'ldl', 'hdl', 'tc_hdl_ratio', 'ln_tg', 'glucose']);
    expect(curb65.card.featureIds).toEqual(['confusion', 'urea', 'resp_rate', 'sbp', 'dbp', 'age']);
  });

  it('lists the registry', async () => {
    expect(await modelIds(packagePath('models'))).toEqual(['curb65', 'diabetes-progression']);
  });

  it('batched prediction (several chunks) equals per-row prediction', async () => {
    // A fixed pseudo-random sequence (a 32-bit LCG): the same rows on every run.
    let seed = 42;
    const rand = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;
    const n = 2500; // > 2 chunks of 1024
    const d = diabetes.card.featureIds.length;
    const rows = Array.from({ length: n }, () => Float32Array.from({ length: d }, (_, j) => (j === 1 ? (rand() < 0.5 ? 1 : 0) : (rand() - 0.5) * 6)));
    const batched = await diabetes.predict(rows);
    const flat = new Float32Array(n * d);
    rows.forEach((r, i) => flat.set(r, i * d));
    expect(await diabetes.predict(flat, n)).toEqual(batched);
    for (let i = 0; i < n; i += 7) {
      const single = await diabetes.predict([rows[i]]);
      expect(single[0]).toBe(batched[i]);
    }
  });

  it('rejects wrong widths and non-finite inputs', async () => {
    await expect(diabetes.predict([new Float32Array(9)])).rejects.toMatchObject({ code: 'inference-failed' });
    const row = new Float32Array(10);
    row[9] = NaN;
    await expect(diabetes.predict([row])).rejects.toThrow(/glucose is NaN/);
    await expect(diabetes.predict(new Float32Array(25))).rejects.toMatchObject({ code: 'inference-failed' });
  });

  it('maps probabilities to risk bands', () => {
    expect(bandFor(diabetes.card, 0)).toBe('negligible');
    expect(bandFor(diabetes.card, 0.05)).toBe('low');
    expect(bandFor(diabetes.card, 0.3)).toBe('moderate');
    expect(bandFor(diabetes.card, 1)).toBe('high');
    expect(bandFor(curb65.card, Math.fround(0.032))).toBe('low');
    expect(bandFor(curb65.card, Math.fround(0.13))).toBe('moderate');
    expect(bandFor(curb65.card, Math.fround(0.17))).toBe('high');
    expect(() => bandFor(diabetes.card, NaN)).toThrow(/outside/);
  });

  it('explains by occlusion on the logit scale (linear model: contributions add up)', async () => {
    const row = Float32Array.from(diabetes.card.goldenVectors[2].input);
    const all = await explain(diabetes, row, undefined, 10);
    const baseline = Float32Array.from(diabetes.card.explanation.baseline);
    const [p, p0] = await diabetes.predict([row, baseline]);
    const logit = (q: number) => Math.log(q / (1 - q));
    const sum = all.reduce((s, c) => s + c.contribution, 0);
    expect(sum).toBeCloseTo(logit(p) - logit(p0), 4);
    const top3 = await explain(diabetes, row, undefined, 3);
    expect(top3).toEqual(all.slice(0, 3));
    expect(Math.abs(top3[0].contribution)).toBeGreaterThanOrEqual(Math.abs(top3[2].contribution));
  });

  it('explains CURB-65: only the criteria present contribute', async () => {
    const contributions = await explain(curb65, Float32Array.from([1, 5, 16, 120, 80, 70]));
    expect(contributions.map((c) => c.featureId).sort()).toEqual(['age', 'confusion']);
    expect(contributions.every((c) => c.contribution > 0)).toBe(true);
  });
});
