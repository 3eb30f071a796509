import { z } from 'zod';
import type { ExclusionReason } from '../../core/types.js';
import type { Feature } from '../mapping/fields.js';
import { implausibleDetail, plausible } from '../values.js';
import { defineSource } from './plugin.js';

/**
 * `derived`: arithmetic over other features' observed (never imputed) values. Missing when any input
 * is missing; the inputs' resources are then excluded for this feature (`unmatched`, or `implausible`
 * when the result is undefined or outside the range).
 */

const OPS = ['ratio', 'mean-arterial-pressure', 'log', 'sum', 'difference', 'product'] as const;
type Op = (typeof OPS)[number];

const ARITY: Record<Op, [number, number]> = {
  ratio: [2, 2],
  'mean-arterial-pressure': [2, 2],
  log: [1, 1],
  difference: [2, 2],
  sum: [2, Infinity],
  product: [2, Infinity],
};

/** Ops whose inputs must share the feature's unit. */
const SAME_UNIT: ReadonlySet<Op> = new Set(['sum', 'difference', 'mean-arterial-pressure']);

const schema = z.strictObject({
  kind: z.literal('derived'),
  op: z.enum(OPS),
  /** Feature ids this one is computed from, in order (ratio: [numerator, denominator]; MAP: [systolic, diastolic]). */
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
    s.of.forEach((ref, k) => {
      scope.use(ref);
      const dep = scope.feature(ref);
      if (ref === f.id) scope.add(['source', 'of', k], `a feature cannot be derived from itself`);
      else if (dep === undefined) scope.add(['source', 'of', k], `unknown feature "${ref}"`);
      else if (dep) {
        if (dep.oneHot) scope.add(['source', 'of', k], `"${ref}" is one-hot and cannot be used in arithmetic`);
        if (SAME_UNIT.has(s.op) && f.unit && dep.unit && dep.unit !== f.unit)
          scope.add(['source', 'of', k], `"${ref}" is in "${dep.unit}" but ${s.op} of it is declared in "${f.unit}"`);
      }
    });
  },
  compile: () => undefined,
  value(f, _compiled, { results, log }) {
    const deps = f.source.of.map((id) => results.get(id)!);
    const d = derive(f, deps.map((x) => x.value));
    const refs = new Set<string>();
    deps.forEach((x) => x.refs.forEach((ref) => refs.add(ref)));
    if (d.value !== null) return { value: d.value, refs };
    for (const ref of refs) log.add(ref, d.reason, f.id, d.detail);
    return { value: null, refs: new Set() };
  },
});
