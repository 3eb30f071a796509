import { z } from 'zod';
import type { ExclusionReason } from '../../core/types.js';
import type { Feature } from '../mapping/fields.js';
import { implausibleDetail, plausible } from '../values.js';
import type { ExclusionLog } from '../exclusions.js';
import { defineSource, type FeatureResult } from './plugin.js';

/**
 * `derived`: arithmetic over other features' observed (never imputed) values. Missing when any input
 * is missing; the inputs' resources are then excluded for this feature (`unmatched`, or `implausible`
 * when the result is undefined or outside the range).
 *
 * - `bmi` of [weight, height]: weight / height^2, the inputs declared in kg and m (their observation
 *   sources convert whatever unit the EHR sent, e.g. [lb_av] or cm) and the result in kg/m2. Each input
 *   keeps its own lookback, so a height measured years before the weight is used (adult height is stable).
 * - `first-available` of [a, b, ...]: the value of the first input that is observed, in the order given
 *   (a recorded BMI, else one derived from weight and height). Missing only when every input is; the
 *   resources of the inputs not chosen are excluded for it as `superseded`. Inputs share its unit.
 */

const OPS = ['ratio', 'mean-arterial-pressure', 'log', 'sum', 'difference', 'product', 'bmi', 'first-available'] as const;
type Op = (typeof OPS)[number];

const ARITY: Record<Op, [number, number]> = {
  ratio: [2, 2],
  'mean-arterial-pressure': [2, 2],
  log: [1, 1],
  difference: [2, 2],
  sum: [2, Infinity],
  product: [2, Infinity],
  bmi: [2, 2],
  'first-available': [2, Infinity],
};

/** Ops whose inputs must share the feature's unit. */
const SAME_UNIT: ReadonlySet<Op> = new Set(['sum', 'difference', 'mean-arterial-pressure', 'first-available']);

/** Units the inputs and the result of an op must be declared in, when it fixes them. */
const FIXED_UNITS: Partial<Record<Op, { inputs: string[]; result: string }>> = { bmi: { inputs: ['kg', 'm'], result: 'kg/m2' } };

const schema = z.strictObject({
  kind: z.literal('derived'),
  op: z.enum(OPS),
  /** Feature ids this one is computed from, in order (ratio: [numerator, denominator]; MAP: [systolic, diastolic]; bmi: [weight, height]; first-available: by preference). */
  of: z.array(z.string()).min(1),
});
type DerivedSource = z.output<typeof schema>;

function compute(op: Op, x: number[]): number {
  switch (op) {
    case 'ratio':
      return x[0] / x[1];
    case 'mean-arterial-pressure':
      return (x[0] + 2 * x[1]) / 3;
    case 'log':
      return Math.log(x[0]);
    case 'sum':
      return x.reduce((a, b) => a + b, 0);
    case 'difference':
      return x[0] - x[1];
    case 'product':
      return x.reduce((a, b) => a * b, 1);
    case 'bmi':
      return x[0] / (x[1] * x[1]);
    case 'first-available':
      return x[0];
  }
}

function derive(f: Feature<DerivedSource>, inputs: (number | null)[]): { value: number } | { value: null; reason: ExclusionReason; detail: string } {
  if (inputs.some((v) => v === null)) return { value: null, reason: 'unmatched', detail: `${f.id}: another input is missing` };
  const v = compute(f.source.op, inputs as number[]);
  if (!Number.isFinite(v)) return { value: null, reason: 'implausible', detail: `${f.id}: ${f.source.op} is undefined for these inputs` };
  if (!plausible(f, v)) return { value: null, reason: 'implausible', detail: `${f.id} ${implausibleDetail(f)}` };
  return { value: v };
}

export const derivedSource = defineSource({
  kind: 'derived',
  schema,
  lookback: 'unused',
  aggregate: false,
  molarMass: false,
  oneHot: 'unused',
  dependsOn: (s) => s.of,
  neverMissing: () => false,
  validate(f, scope) {
    const s = f.source;
    const [lo, hi] = ARITY[s.op];
    if (s.of.length < lo || s.of.length > hi)
      scope.add(['source', 'of'], `${s.op} takes ${lo === hi ? lo : `at least ${lo}`} feature${lo === 1 ? '' : 's'}, got ${s.of.length}`);
    const fixed = FIXED_UNITS[s.op];
    if (fixed && f.unit !== fixed.result) scope.add(['unit'], `${s.op} gives ${fixed.result}: unit must be "${fixed.result}"`);
    s.of.forEach((ref, k) => {
      scope.use(ref);
      const dep = scope.feature(ref);
      if (ref === f.id) scope.add(['source', 'of', k], `a feature cannot be derived from itself`);
      else if (dep === undefined) scope.add(['source', 'of', k], `unknown feature "${ref}"`);
      else if (dep) {
        if (dep.oneHot) scope.add(['source', 'of', k], `"${ref}" is one-hot and cannot be used in arithmetic`);
        if (SAME_UNIT.has(s.op) && f.unit && dep.unit && dep.unit !== f.unit)
          scope.add(['source', 'of', k], `"${ref}" is in "${dep.unit}" but ${s.op} of it is declared in "${f.unit}"`);
        const want = fixed?.inputs[k];
        if (want !== undefined && dep.unit !== want)
          scope.add(['source', 'of', k], `${s.op} needs "${ref}" in "${want}" (its source converts the measured unit), not "${dep.unit ?? 'no unit'}"`);
      }
    });
  },
  compile: () => undefined,
  value(f, _compiled, { results, log }) {
    const deps = f.source.of.map((id) => results.get(id)!);
    if (f.source.op === 'first-available') return firstAvailable(f, deps, log);
    const d = derive(f, deps.map((x) => x.value));
    const refs = new Set<string>();
    deps.forEach((x) => x.refs.forEach((ref) => refs.add(ref)));
    if (d.value !== null) return { value: d.value, refs };
    for (const ref of refs) log.add(ref, d.reason, f.id, d.detail);
    return { value: null, refs: new Set() };
  },
});

/** `first-available`: the first observed input; the resources of the others are superseded by it. */
function firstAvailable(f: Feature<DerivedSource>, deps: { value: number | null; refs: Set<string> }[], log: ExclusionLog): FeatureResult {
  const k = deps.findIndex((d) => d.value !== null);
  if (k < 0) return { value: null, refs: new Set() };
  const chosen = deps[k];
  if (!plausible(f, chosen.value!)) {
    for (const d of deps) for (const ref of d.refs) log.add(ref, 'implausible', f.id, `${f.id} ${implausibleDetail(f)}`);
    return { value: null, refs: new Set() };
  }
  deps.forEach((d, j) => {
    if (j === k) return;
    for (const ref of d.refs) if (!chosen.refs.has(ref)) log.add(ref, 'superseded', f.id, `${f.id}: ${f.source.of[k]} preferred`);
  });
  return { value: chosen.value, refs: new Set(chosen.refs) };
}
