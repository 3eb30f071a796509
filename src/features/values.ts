import type { FeatureFields } from './mapping/fields.js';

/** Value rules every source shares: plausibility ranges, transforms and imputation. Pure. */

/** A Quantity as found in a resource (any field may be missing or of the wrong type). */
export interface RawQuantity {
  value?: unknown;
  comparator?: string;
  code?: string;
  system?: string;
  unit?: string;
}

/**
 * The Quantity that FHIRPath `value` gives for an Observation or component whose only `value[x]` is
 * `valueQuantity` (an object): the object itself. Undefined when anything else could make FHIRPath
 * answer differently (another `value…` or `_value…` element, an array, a primitive); the caller then
 * evaluates FHIRPath. Same answer, without building FHIRPath nodes for every value of a run.
 */
export function soleValueQuantity(node: object): RawQuantity | undefined {
  const q = (node as { valueQuantity?: unknown }).valueQuantity;
  if (typeof q !== 'object' || q === null || Array.isArray(q)) return undefined;
  for (const key in node) if (key !== 'valueQuantity' && (key.startsWith('value') || key.startsWith('_value'))) return undefined;
  return q as RawQuantity;
}

export function plausible(f: Pick<FeatureFields, 'plausible'>, v: number): boolean {
  const p = f.plausible;
  return !p || ((p.min === undefined || v >= p.min) && (p.max === undefined || v <= p.max));
}

export function implausibleDetail(f: Pick<FeatureFields, 'plausible' | 'unit'>): string {
  return `outside [${f.plausible?.min ?? '-inf'}, ${f.plausible?.max ?? 'inf'}]${f.unit ? ` ${f.unit}` : ''}`;
}

/** The feature's transforms (log, standardize, clip), in order, from transform `from` on. */
export function applyTransforms(f: Pick<FeatureFields, 'transforms'>, x: number, from = 0): number {
  for (const t of f.transforms.slice(from)) {
    if (t === 'log') x = Math.log(x);
    else if ('log' in t) x = Math.log(x + t.log.offset);
    else if ('standardize' in t) x = (x - t.standardize.mean) / t.standardize.std;
    else {
      if (t.clip.min !== undefined) x = Math.max(t.clip.min, x);
      if (t.clip.max !== undefined) x = Math.min(t.clip.max, x);
    }
  }
  return x;
}

/** The imputed column value for a missing feature (strategy mean or constant), or undefined when required. */
export function imputedValue(f: Pick<FeatureFields, 'transforms' | 'missing'>): number | undefined {
  const m = f.missing;
  if (!m || m.strategy === 'required') return undefined;
  if (m.value !== undefined) return applyTransforms(f, m.value);
  // mean without a value: the standardize mean, then what follows it (standardize gives 0, clip after it)
  const i = f.transforms.findIndex((t) => typeof t === 'object' && 'standardize' in t);
  const t = f.transforms[i] as { standardize: { mean: number } };
  return applyTransforms(f, t.standardize.mean, i);
}

/** A short human description of a feature's transforms, e.g. `log, standardize(4.648, 0.5297)`. */
export function describeTransforms(f: Pick<FeatureFields, 'transforms'>): string {
  return f.transforms
    .map((t) => {
      if (t === 'log') return 'log';
      if ('log' in t) return `log(x + ${t.log.offset})`;
      if ('standardize' in t) return `standardize(mean ${t.standardize.mean}, std ${t.standardize.std})`;
      return `clip(${t.clip.min ?? '-inf'}, ${t.clip.max ?? 'inf'})`;
    })
    .join(', ');
}
