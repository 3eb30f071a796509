import { AdapterError } from '../core/errors.js';
import type { ModelRunner } from './runner.js';

export interface Contribution {
  featureId: string;
  /** logit(p(row)) - logit(p(row with this column at its baseline)). */
  contribution: number;
}

const EPS = 1e-7; // float32 probabilities: keep the logit finite
const logit = (p: number) => {
  const q = Math.min(1 - EPS, Math.max(EPS, p));
  return Math.log(q / (1 - q));
};

/**
 * Model-agnostic occlusion attribution: each column in turn is replaced by its baseline (default the
 * card's `explanation.baseline`, 0 for standardised columns) and the drop in logit is its contribution.
 * Returns the `top` largest non-zero contributions by magnitude (ties: column order).
 */
export async function explain(
  runner: ModelRunner,
  row: Float32Array,
  baseline: ArrayLike<number> = runner.card.explanation.baseline,
  top = 5,
): Promise<Contribution[]> {
  return (await explainBatch(runner, [row], baseline, top))[0];
}

/**
 * `explain` for many rows: every row and all its d variants go through the model in ONE batched run
 * (n * (d + 1) rows), so explanations cost one session.run per batch of patients, not one per patient.
 */
export async function explainBatch(
  runner: ModelRunner,
  rows: Float32Array[],
  baseline: ArrayLike<number> = runner.card.explanation.baseline,
  top = 5,
): Promise<Contribution[][]> {
  const ids = runner.card.featureIds;
  const d = ids.length;
  if (baseline.length !== d) throw new AdapterError('inference-failed', `model ${runner.card.id}: explain needs ${d} baseline values`);
  const n = rows.length;
  if (n === 0) return [];
  const flat = new Float32Array(n * (d + 1) * d);
  rows.forEach((row, r) => {
    if (row.length !== d) throw new AdapterError('inference-failed', `model ${runner.card.id}: explain needs ${d} values per row`);
    for (let v = 0; v <= d; v++) {
      const at = (r * (d + 1) + v) * d;
      flat.set(row, at);
      if (v > 0) flat[at + (v - 1)] = baseline[v - 1];
    }
  });
  const p = await runner.predict(flat, n * (d + 1));
  return rows.map((_, r) => {
    const at = r * (d + 1);
    const base = logit(p[at]);
    return ids
      .map((featureId, j) => ({ featureId, contribution: base - logit(p[at + j + 1]), j }))
      .filter((c) => c.contribution !== 0)
      .sort((a, b) => Math.abs(b.contribution) - Math.abs(a.contribution) || a.j - b.j)
      .slice(0, top)
      .map(({ featureId, contribution }) => ({ featureId, contribution }));
  });
}
