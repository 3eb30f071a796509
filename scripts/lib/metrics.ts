/** AUROC by the Mann-Whitney statistic (ties count one half). */
export function auroc(y: number[], p: number[]): number {
  const order = p.map((v, i) => i).sort((a, b) => p[a] - p[b] || a - b);
  const ranks = new Array<number>(p.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && p[order[j + 1]] === p[order[i]]) j++;
    const r = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) ranks[order[k]] = r;
    i = j + 1;
  }
  const nPos = y.filter((v) => v === 1).length;
  const nNeg = y.length - nPos;
  if (nPos === 0 || nNeg === 0) throw new Error('AUROC needs both classes');
  let sumPos = 0;
  for (let i = 0; i < y.length; i++) if (y[i] === 1) sumPos += ranks[i];
  return (sumPos - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
}

export function brier(y: number[], p: number[]): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += (p[i] - y[i]) ** 2;
  return s / y.length;
}

export interface CalibrationBin {
  bin: number;
  n: number;
  meanPredicted: number;
  observedRate: number;
  minPredicted: number;
  maxPredicted: number;
}

/** Equal-count bins over the sorted predictions (ties broken by index, so deterministic). */
export function calibrationTable(y: number[], p: number[], bins: number): CalibrationBin[] {
  const order = p.map((v, i) => i).sort((a, b) => p[a] - p[b] || a - b);
  const out: CalibrationBin[] = [];
  for (let b = 0; b < bins; b++) {
    const lo = Math.floor((b * order.length) / bins);
    const hi = Math.floor(((b + 1) * order.length) / bins);
    const idx = order.slice(lo, hi);
    const n = idx.length;
    out.push({
      bin: b + 1,
      n,
      meanPredicted: idx.reduce((s, i) => s + p[i], 0) / n,
      observedRate: idx.reduce((s, i) => s + y[i], 0) / n,
      minPredicted: p[idx[0]],
      maxPredicted: p[idx[n - 1]],
    });
  }
  return out;
}
