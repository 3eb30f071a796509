import type { z } from 'zod';
import { kindsUsing, sourcePlugin } from '../sources/index.js';
import type { ValidationScope } from '../sources/plugin.js';
import { featureColumns } from './queries.js';
import { featureSchema, mappingSchema, type FeatureSpec, type Mapping } from './schema.js';

/**
 * Validation of one mapping: the zod schema, then the checks a schema cannot express (shared rules
 * here, source-specific rules in each source plug-in's `validate`). Every problem at once, each as
 * `<path>: <message>` (e.g. `features[3].unit: "mg/dl/" is not a valid UCUM unit`).
 */

export function formatPath(p: readonly PropertyKey[]): string {
  let out = '';
  for (const k of p) {
    if (typeof k === 'number') out += `[${k}]`;
    else out += out ? `.${String(k)}` : String(k);
  }
  return out || '(root)';
}

function zodProblems(issues: readonly z.core.$ZodIssue[]): string[] {
  const out: string[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) out.push(`${formatPath([...issue.path, key])}: unknown key`);
    } else {
      out.push(`${formatPath(issue.path)}: ${issue.message}`);
    }
  }
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The mapping when valid, else every problem (paths relative to the mapping's root). */
export function validateMapping(raw: unknown): { mapping?: Mapping; problems: string[] } {
  if (!isRecord(raw)) return { problems: ['(root): must be a YAML mapping (object)'] };
  const res = mappingSchema.safeParse(raw);
  const problems = res.success ? [] : zodProblems(res.error.issues);
  const rawFeatures = Array.isArray(raw.features) ? raw.features : [];
  // Features that pass their own schema are checked further even when another part of the file fails.
  const parsed = res.success
    ? res.data.features
    : rawFeatures.map((rf) => {
        const r = featureSchema.safeParse(rf);
        return r.success ? r.data : undefined;
      });
  problems.push(...semanticProblems(raw, parsed));
  return problems.length ? { problems } : { mapping: res.data!, problems };
}

/**
 * Semantic checks on a mapping whose features may only partly validate: `parsed[i]` is the validated
 * feature i (undefined when it failed the schema), `raw` is the YAML object.
 */
function semanticProblems(raw: Record<string, unknown>, parsed: (FeatureSpec | undefined)[]): string[] {
  const problems: string[] = [];
  const add = (p: PropertyKey[], msg: string) => problems.push(`${formatPath(p)}: ${msg}`);
  const rawFeatures = Array.isArray(raw.features) ? raw.features : [];

  // ids (also of features that failed the schema, so references to them are not reported twice)
  const idIndex = new Map<string, number>();
  rawFeatures.forEach((rf, i) => {
    const id = isRecord(rf) ? rf.id : undefined;
    if (typeof id !== 'string') return;
    const prev = idIndex.get(id);
    if (prev !== undefined) add(['features', i, 'id'], `duplicate feature id "${id}" (also features[${prev}])`);
    else idIndex.set(id, i);
  });

  // expanded columns unique
  const colIndex = new Map<string, number>();
  parsed.forEach((f, i) => {
    if (!f) return;
    for (const c of featureColumns(f)) {
      const prev = colIndex.get(c);
      if (prev !== undefined && prev !== i) add(['features', i], `input column "${c}" is also produced by features[${prev}]`);
      else colIndex.set(c, i);
    }
  });

  const usedBy = new Set<string>();
  const requires = isRecord(raw.requires) ? raw.requires : undefined;
  if (requires && typeof requires.feature === 'string') {
    usedBy.add(requires.feature);
    if (!idIndex.has(requires.feature)) add(['requires', 'feature'], `unknown feature "${requires.feature}"`);
  }

  parsed.forEach((f, i) => {
    if (!f) return;
    const at = (...p: PropertyKey[]) => ['features', i, ...p];
    const rf = rawFeatures[i] as Record<string, unknown>;
    const kind = f.source.kind;
    const plugin = sourcePlugin(kind);

    // what the source kind uses
    if (plugin.lookback === 'required' && !f.lookback) add(at('lookback'), `is required for ${kind} sources`);
    if (plugin.lookback === 'unused' && f.lookback) add(at('lookback'), `is not used by ${kind} sources`);
    if ('aggregate' in rf && !plugin.aggregate) add(at('aggregate'), `is only used by ${kindsUsing('aggregate')} sources`);
    if (f.molarMass !== undefined && !f.unit) add(at('molarMass'), 'needs a unit');
    if (f.molarMass !== undefined && !plugin.molarMass) add(at('molarMass'), `is only used by ${kindsUsing('molarMass')} sources`);
    if (f.oneHot && f.unit !== undefined) add(at('unit'), 'coded (one-hot) features have no unit');

    // one-hot
    if (f.oneHot) {
      if (plugin.oneHot === 'unused') add(at('oneHot'), `is only supported for ${kindsUsing('oneHot')} sources`);
      if (new Set(f.oneHot).size !== f.oneHot.length) add(at('oneHot'), 'duplicate categories');
      if (f.transforms.length) add(at('transforms'), 'one-hot columns are not transformed');
      if (f.missing && f.missing.strategy !== 'required')
        add(at('missing', 'strategy'), 'one-hot features are all-zero when missing; only "required" is supported');
    } else if (plugin.oneHot === 'required') add(at('oneHot'), `is required for ${kind} (the categories to encode, e.g. [male])`);

    // plausible
    if (f.plausible?.min !== undefined && f.plausible.max !== undefined && f.plausible.min > f.plausible.max)
      add(at('plausible'), 'min is greater than max');

    // the source's own rules
    const scope: ValidationScope = {
      add: (p, msg) => add(at(...p), msg),
      feature: (id) => {
        const k = idIndex.get(id);
        return k === undefined ? undefined : (parsed[k] ?? null);
      },
      use: (id) => usedBy.add(id),
    };
    plugin.validate?.(f, scope);

    // input / missing / transforms
    if (!f.input) {
      if (f.missing) add(at('missing'), 'only applies to input features (derived features use observed inputs only)');
      if (f.transforms.length) add(at('transforms'), 'only apply to input features');
    } else if (!f.oneHot) {
      const m = f.missing;
      const hasStd = f.transforms.some((t) => typeof t === 'object' && 'standardize' in t);
      if (!m && !plugin.neverMissing(f)) add(at('missing'), 'is required for input features that can be missing (strategy mean, constant or required)');
      if (m?.strategy === 'mean' && !hasStd && m.value === undefined) add(at('missing', 'strategy'), 'mean needs a standardize transform (its mean) or a value');
      if (m?.strategy === 'constant' && m.value === undefined) add(at('missing', 'value'), 'is required with strategy constant');
      if (m?.strategy === 'required' && m.value !== undefined) add(at('missing', 'value'), 'is not used with strategy required');
      if (m?.strategy === 'required' && m.indicator) add(at('missing', 'indicator'), 'is always 0 with strategy required');
    }
    f.transforms.forEach((t, k) => {
      const offset = t === 'log' ? 0 : typeof t === 'object' && 'log' in t ? t.log.offset : undefined;
      if (offset === undefined) return;
      const min = f.plausible?.min;
      if (min === undefined || min + offset <= 0)
        add(at('transforms', k), `log needs plausible.min > ${-offset} so every value it gets is positive`);
      const v = f.missing?.value;
      if (v !== undefined && v + offset <= 0) add(at('missing', 'value'), `${v} cannot be log-transformed`);
    });
    if (typeof rf.transforms !== 'undefined' && f.transforms.some((t) => typeof t === 'object' && 'clip' in t && t.clip.min !== undefined && t.clip.max !== undefined && t.clip.min > t.clip.max))
      add(at('transforms'), 'clip min is greater than max');
  });

  // non-input features must feed something
  parsed.forEach((f, i) => {
    if (f && !f.input && !usedBy.has(f.id)) add(['features', i, 'input'], `feature "${f.id}" is not an input and no derived feature or requires uses it`);
  });

  // cycles among computed features
  const deps = new Map<string, string[]>();
  parsed.forEach((f) => {
    const on = f && sourcePlugin(f.source.kind).dependsOn?.(f.source);
    if (f && on) deps.set(f.id, on);
  });
  const state = new Map<string, 1 | 2>();
  const reported = new Set<string>();
  const visit = (id: string, stack: string[]) => {
    if (state.get(id) === 2) return;
    if (state.get(id) === 1) {
      const cycle = [...stack.slice(stack.indexOf(id)), id];
      const key = [...cycle].sort().join(',');
      if (!reported.has(key)) {
        reported.add(key);
        add(['features', idIndex.get(id)!, 'source', 'of'], `derived features form a cycle: ${cycle.join(' -> ')}`);
      }
      return;
    }
    state.set(id, 1);
    for (const d of deps.get(id) ?? []) if (deps.has(d)) visit(d, [...stack, id]);
    state.set(id, 2);
  };
  for (const id of deps.keys()) visit(id, []);

  // minObservedFeatures
  const nInputs = parsed.filter((f) => f?.input).length;
  if (typeof raw.minObservedFeatures === 'number' && parsed.every(Boolean) && raw.minObservedFeatures > nInputs)
    add(['minObservedFeatures'], `${raw.minObservedFeatures} is more than the ${nInputs} input features`);

  return problems;
}
