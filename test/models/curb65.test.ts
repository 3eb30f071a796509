import { CITATION, MORTALITY_BY_SCORE, curb65Score } from '../../scripts/lib/curb65.js';
import { packagePath } from '../../src/core/paths.js';
import { loadModel } from '../../src/models/loader.js';
import type { OnnxModelRunner } from '../../src/models/runner.js';

/** The bundled CURB-65 ONNX graph against the reference score of scripts/ (the rule as published). */

// [confusion, urea mmol/L, resp_rate /min, sbp, dbp, age] -> hand-computed score
const CASES: [string, number[], number][] = [
  ['nothing', [0, 5, 16, 120, 80, 40], 0],
  ['urea exactly 7 -> 0 points', [0, 7, 16, 120, 80, 40], 0],
  ['urea 7.1 -> 1 point', [0, 7.1, 16, 120, 80, 40], 1],
  ['rr 29 -> 0 points', [0, 5, 29, 120, 80, 40], 0],
  ['rr exactly 30 -> 1 point', [0, 5, 30, 120, 80, 40], 1],
  ['sbp exactly 90 -> 0 points', [0, 5, 16, 90, 80, 40], 0],
  ['sbp 89 -> 1 point', [0, 5, 16, 89, 80, 40], 1],
  ['dbp 61 -> 0 points', [0, 5, 16, 120, 61, 40], 0],
  ['dbp exactly 60 -> 1 point', [0, 5, 16, 120, 60, 40], 1],
  ['sbp 85 and dbp 55 -> still 1 point (B is one criterion)', [0, 5, 16, 85, 55, 40], 1],
  ['age 64 -> 0 points', [0, 5, 16, 120, 80, 64], 0],
  ['age exactly 65 -> 1 point', [0, 5, 16, 120, 80, 65], 1],
  ['confusion 1 -> 1 point', [1, 5, 16, 120, 80, 40], 1],
  ['score 2: confusion + age', [1, 5, 16, 120, 80, 70], 2],
  ['score 3: urea + rr + bp', [0, 9, 32, 100, 58, 40], 3],
  ['score 4: all but confusion', [0, 9, 32, 100, 58, 80], 4],
  ['score 5: everything', [1, 20, 40, 80, 40, 90], 5],
];

describe('CURB-65 ONNX model', () => {
  let model: OnnxModelRunner;
  beforeAll(async () => {
    model = await loadModel(packagePath('models', 'curb65'));
  });
  afterAll(async () => model?.close());

  it('publishes the derivation-cohort mortality table with its source', () => {
    expect(MORTALITY_BY_SCORE).toEqual([0.007, 0.032, 0.13, 0.17, 0.415, 0.57]);
    expect(model.card.evaluation.kind).toBe('published-rule');
    expect(model.card.evaluation.table?.map((r) => r.probability)).toEqual([...MORTALITY_BY_SCORE]);
    expect(model.card.trainingData.citation).toBe(CITATION);
    const scores = model.card.goldenVectors.map((g) => g.expected.score[0]);
    expect(new Set(scores)).toEqual(new Set([0, 1, 2, 3, 4, 5]));
  });

  it.each(CASES)('%s', async (_name, input, score) => {
    expect(curb65Score(input)).toBe(score);
    const out = await model.run([Float32Array.from(input)]);
    expect(out.score[0]).toBe(score);
    expect(out.probability[0]).toBe(Math.fround(MORTALITY_BY_SCORE[score]));
  });

  it('scores all cases in one batch identically', async () => {
    const out = await model.run(CASES.map(([, input]) => Float32Array.from(input)));
    expect(Array.from(out.score)).toEqual(CASES.map(([, , s]) => s));
  });
});
