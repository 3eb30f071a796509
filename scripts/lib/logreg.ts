/**
 * L2-regularised logistic regression fitted by Newton-Raphson (IRLS) with a fixed iteration count.
 * Pure float64 arithmetic in a fixed order, so results are deterministic. The intercept is not penalised.
 */
export interface LogRegFit {
  weights: number[];
  bias: number;
  iterations: number;
  /** Max |step| of the last Newton iteration (convergence diagnostic). */
  lastStep: number;
}

export function sigmoid(z: number): number {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

export function fitLogistic(x: number[][], y: number[], lambda: number, iterations = 25): LogRegFit {
  const n = x.length;
  const d = x[0].length;
  const p = d + 1; // parameters: [bias, w_1..w_d]
  let beta = new Array<number>(p).fill(0);
  let lastStep = Infinity;
  for (let it = 0; it < iterations; it++) {
    const grad = new Array<number>(p).fill(0);
    const hess = Array.from({ length: p }, () => new Array<number>(p).fill(0));
    for (let i = 0; i < n; i++) {
      const row = [1, ...x[i]];
      let z = 0;
      for (let j = 0; j < p; j++) z += beta[j] * row[j];
      const mu = sigmoid(z);
      const w = mu * (1 - mu);
      for (let j = 0; j < p; j++) {
        grad[j] += (mu - y[i]) * row[j];
        for (let k = 0; k < p; k++) hess[j][k] += w * row[j] * row[k];
      }
    }
    for (let j = 1; j < p; j++) {
      grad[j] += lambda * beta[j];
      hess[j][j] += lambda;
    }
    const step = solve(hess, grad);
    beta = beta.map((b, j) => b - step[j]);
    lastStep = Math.max(...step.map(Math.abs));
  }
  return { bias: beta[0], weights: beta.slice(1), iterations, lastStep };
}

/** Gaussian elimination with partial pivoting (small dense systems). */
export function solve(a: number[][], b: number[]): number[] {
  const n = b.length;
  const m = a.map((row, i) => [...row, b[i]]);
  for (let c = 0; c < n; c++) {
    let piv = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r][c]) > Math.abs(m[piv][c])) piv = r;
    if (Math.abs(m[piv][c]) < 1e-12) throw new Error('singular matrix');
    [m[c], m[piv]] = [m[piv], m[c]];
    for (let r = c + 1; r < n; r++) {
      const f = m[r][c] / m[c][c];
      for (let k = c; k <= n; k++) m[r][k] -= f * m[c][k];
    }
  }
  const out = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = m[r][n];
    for (let k = r + 1; k < n; k++) s -= m[r][k] * out[k];
    out[r] = s / m[r][r];
  }
  return out;
}
