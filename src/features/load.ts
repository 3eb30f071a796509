import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import fhirpath from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { z } from 'zod';
import { AdapterError } from '../core/errors.js';
import { featureSchema, mappingSchema, type FeatureSpec, type Mapping } from './mapping-schema.js';
import { approxDurationMs, windowStart } from './time.js';
import { isConvertible } from './ucum.js';

/**
 * Loading and checking mapping files. `parseMapping` runs the zod schema and then the semantic
 * checks a schema cannot express, and reports every problem at once, each as
 * `<file>: <path>: <message>` (e.g. `mappings/x.yaml: features[3].unit: "mg/dl/" is not a valid UCUM unit`).
 */

const DERIVED_ARITY: Record<string, [number, number]> = {
  ratio: [2, 2],
  'mean-arterial-pressure': [2, 2],
  log: [1, 1],
  difference: [2, 2],
  sum: [2, Infinity],
  product: [2, Infinity],
};

/** Sources whose value is never missing (0 when nothing is found). */
export function neverMissing(f: FeatureSpec): boolean {
  const s = f.source;
  if (s.kind === 'report-finding') return true;
  if (s.kind === 'imaging') return s.measure !== 'days-since-last';
  if (s.kind === 'observation') return f.aggregate === 'count' || f.aggregate === 'any';
  return false;
}

export function formatPath(p: readonly PropertyKey[]): string {
  let out = '';
  for (const k of p) {
    if (typeof k === 'number') out += `[${k}]`;
    else out += out ? `.${String(k)}` : String(k);
  }
  return out || '(root)';
}

function zodProblems(issues: readonly z.core.$ZodIssue[], prefix: PropertyKey[] = []): string[] {
  const out: string[] = [];
  for (const issue of issues) {
    const p = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) out.push(`${formatPath([...p, key])}: unknown key`);
    } else {
      out.push(`${formatPath(p)}: ${issue.message}`);
    }
  }
  return out;
}

/** Expanded input column ids, in model order: one-hot `<id>=<category>`, indicator `<id>__missing` after its feature. */
export function inputColumns(mapping: Mapping): string[] {
  const cols: string[] = [];
  for (const f of mapping.features) {
    if (!f.input) continue;
    if (f.oneHot) for (const c of f.oneHot) cols.push(`${f.id}=${c}`);
    else cols.push(f.id);
    if (f.missing?.indicator) cols.push(`${f.id}__missing`);
  }
  return cols;
}

/** Every Observation code the mapping needs fetched (feature codes and panel codes), unique, in mapping order. */
export function observationCodes(mapping: Mapping): { system: string; code: string }[] {
  const seen = new Set<string>();
  const out: { system: string; code: string }[] = [];
  for (const f of mapping.features) {
    if (f.source.kind !== 'observation') continue;
    for (const c of [...f.source.codes, ...(f.source.panels ?? [])]) {
      const key = `${c.system}|${c.code}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({ system: c.system, code: c.code });
    }
  }
  return out;
}

/** The longest lookback of the mapping (ISO 8601 duration), or undefined when no feature has one. */
export function maxLookback(mapping: Mapping): string | undefined {
  let best: string | undefined;
  for (const f of mapping.features) {
    if (f.lookback && (best === undefined || approxDurationMs(f.lookback) > approxDurationMs(best))) best = f.lookback;
  }
  return best;
}

/** The earliest instant any feature of the mapping looks at for this as-of (the fetch lower bound). */
export function lookbackStart(mapping: Mapping, asOf: Date): Date | undefined {
  let best: Date | undefined;
  for (const f of mapping.features) {
    if (!f.lookback) continue;
    const s = windowStart(f.lookback, asOf);
    if (!best || s < best) best = s;
  }
  return best;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
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
    if (!f || !f.input) return;
    const cols = [...(f.oneHot ? f.oneHot.map((c) => `${f.id}=${c}`) : [f.id]), ...(f.missing?.indicator ? [`${f.id}__missing`] : [])];
    for (const c of cols) {
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
    const s = f.source;

    // lookback
    if (s.kind === 'observation' || s.kind === 'report-finding' || s.kind === 'imaging') {
      if (!f.lookback) add(at('lookback'), `is required for ${s.kind} sources`);
    } else if (f.lookback) add(at('lookback'), `is not used by ${s.kind} sources`);

    // aggregate only for observations (other sources define their own value)
    if ('aggregate' in rf && s.kind !== 'observation') add(at('aggregate'), `is only used by observation sources`);

    // units
    if (f.molarMass !== undefined && !f.unit) add(at('molarMass'), 'needs a unit');
    if (f.molarMass !== undefined && s.kind !== 'observation') add(at('molarMass'), 'is only used by observation sources');
    if (s.kind === 'patient-age' && f.unit !== undefined && f.unit !== 'a') add(at('unit'), 'patient-age is in completed years: unit must be "a"');
    if ((s.kind === 'patient-sex' || f.oneHot) && f.unit !== undefined) add(at('unit'), 'coded (one-hot) features have no unit');
    if (s.kind === 'observation' && !f.oneHot) {
      if (!f.unit) add(at('unit'), 'is required for numeric observation features (values are converted to it)');
      else
        s.codes.forEach((c, k) => {
          const mm = c.molarMass ?? f.molarMass;
          if (c.unit && !isConvertible(c.unit, f.unit!, mm))
            add(
              at('source', 'codes', k, 'unit'),
              `"${c.unit}" cannot be converted to the feature unit "${f.unit}"${mm ? ` (molarMass ${mm})` : ' (mass <-> substance needs molarMass)'}`,
            );
        });
      if (s.codePath) add(at('source', 'codePath'), 'is only used with oneHot');
    }
    if (s.kind === 'observation' && f.oneHot) {
      if (s.valuePath) add(at('source', 'valuePath'), 'is not used with oneHot (use codePath)');
      if (f.aggregate !== 'latest') add(at('aggregate'), 'coded (one-hot) observations only support latest');
    }
    if (s.kind === 'observation') {
      for (const [key, expr] of [
        ['valuePath', s.valuePath],
        ['codePath', s.codePath],
      ] as const) {
        if (expr === undefined) continue;
        try {
          fhirpath.compile(expr, r4);
        } catch (e) {
          add(at('source', key), `is not a valid FHIRPath expression (${(e as Error).message.split('\n')[0]})`);
        }
      }
    }

    // one-hot
    if (f.oneHot) {
      if (s.kind !== 'patient-sex' && s.kind !== 'observation') add(at('oneHot'), `is only supported for patient-sex and observation sources`);
      if (new Set(f.oneHot).size !== f.oneHot.length) add(at('oneHot'), 'duplicate categories');
      if (f.transforms.length) add(at('transforms'), 'one-hot columns are not transformed');
      if (f.missing && f.missing.strategy !== 'required')
        add(at('missing', 'strategy'), 'one-hot features are all-zero when missing; only "required" is supported');
    } else if (s.kind === 'patient-sex') add(at('oneHot'), 'is required for patient-sex (the categories to encode, e.g. [male])');

    // plausible
    if (f.plausible?.min !== undefined && f.plausible.max !== undefined && f.plausible.min > f.plausible.max)
      add(at('plausible'), 'min is greater than max');

    // derived
    if (s.kind === 'derived') {
      const [lo, hi] = DERIVED_ARITY[s.op];
      if (s.of.length < lo || s.of.length > hi)
        add(at('source', 'of'), `${s.op} takes ${lo === hi ? lo : `at least ${lo}`} feature${lo === 1 ? '' : 's'}, got ${s.of.length}`);
      s.of.forEach((ref, k) => {
        usedBy.add(ref);
        if (ref === f.id) add(at('source', 'of', k), `a feature cannot be derived from itself`);
        else if (!idIndex.has(ref)) add(at('source', 'of', k), `unknown feature "${ref}"`);
        else {
          const dep = parsed[idIndex.get(ref)!];
          if (dep?.oneHot) add(at('source', 'of', k), `"${ref}" is one-hot and cannot be used in arithmetic`);
          if (dep && ['sum', 'difference', 'mean-arterial-pressure'].includes(s.op) && f.unit && dep.unit && dep.unit !== f.unit)
            add(at('source', 'of', k), `"${ref}" is in "${dep.unit}" but ${s.op} of it is declared in "${f.unit}"`);
        }
      });
    }

    // input / missing / transforms
    if (!f.input) {
      if (f.missing) add(at('missing'), 'only applies to input features (derived features use observed inputs only)');
      if (f.transforms.length) add(at('transforms'), 'only apply to input features');
    } else if (!f.oneHot) {
      const m = f.missing;
      const hasStd = f.transforms.some((t) => typeof t === 'object' && 'standardize' in t);
      if (!m && !neverMissing(f)) add(at('missing'), 'is required for input features that can be missing (strategy mean, constant or required)');
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

  // cycles among derived features
  const deps = new Map<string, string[]>();
  parsed.forEach((f) => {
    if (f?.source.kind === 'derived') deps.set(f.id, f.source.of);
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

/** Problems of one mapping text (empty when valid), without the file prefix. */
function mappingProblems(text: string): { mapping?: Mapping; problems: string[] } {
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (e) {
    const msg = e instanceof YAMLParseError ? `YAML: ${e.message.split('\n')[0]}` : `YAML: ${(e as Error).message}`;
    return { problems: [`(root): ${msg}`] };
  }
  if (!isRecord(raw)) return { problems: ['(root): must be a YAML mapping (object)'] };
  const res = mappingSchema.safeParse(raw);
  const problems = res.success ? [] : zodProblems(res.error.issues);
  const rawFeatures = Array.isArray(raw.features) ? raw.features : [];
  const parsed = res.success
    ? res.data.features
    : rawFeatures.map((rf) => {
        const r = featureSchema.safeParse(rf);
        return r.success ? r.data : undefined;
      });
  problems.push(...semanticProblems(raw, parsed));
  return problems.length ? { problems } : { mapping: res.data!, problems };
}

/** Parses and checks one mapping; throws AdapterError('mapping-invalid') listing every problem. */
export function parseMapping(text: string, file: string): Mapping {
  const { mapping, problems } = mappingProblems(text);
  if (!mapping) throw invalid(problems.map((p) => `${file}: ${p}`));
  return mapping;
}

function invalid(lines: string[]): AdapterError {
  return new AdapterError('mapping-invalid', `invalid mapping:\n  ${lines.join('\n  ')}`, { details: { problems: lines } });
}

export function loadMapping(file: string): Mapping {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new AdapterError('mapping-invalid', `${file}: cannot read mapping (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { cause: e });
  }
  return parseMapping(text, file);
}

export interface MappingFileResult {
  file: string;
  ok: boolean;
  id?: string;
  version?: string;
  model?: string;
  columns?: string[];
  errors: string[];
}

export interface ValidateMappingsResult {
  ok: boolean;
  files: MappingFileResult[];
}

function mappingFiles(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new AdapterError(code === 'ENOENT' ? 'not-found' : 'mapping-invalid', `${dir}: cannot read mapping directory (${code ?? 'error'})`, { cause: e });
  }
  return names
    .filter((n) => /\.ya?ml$/.test(n))
    .map((n) => path.join(dir, n))
    .filter((p) => statSync(p).isFile())
    .sort();
}

/** Checks every `*.yaml` in `dir` (not sub-folders) and reports per file; the result of `fhir-ml mappings validate`. */
export function validateMappingsCommand(dir: string): ValidateMappingsResult {
  const files: MappingFileResult[] = [];
  const byId = new Map<string, string>();
  for (const file of mappingFiles(dir)) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      files.push({ file, ok: false, errors: [`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? 'error'})`] });
      continue;
    }
    const { mapping, problems } = mappingProblems(text);
    const errors = problems.map((p) => `${file}: ${p}`);
    if (mapping) {
      const other = byId.get(mapping.id);
      if (other) errors.push(`${file}: id: mapping id "${mapping.id}" is also used by ${other}`);
      else byId.set(mapping.id, file);
    }
    files.push({
      file,
      ok: errors.length === 0,
      ...(mapping ? { id: mapping.id, version: mapping.version, model: mapping.model, columns: inputColumns(mapping) } : {}),
      errors,
    });
  }
  return { ok: files.every((f) => f.ok), files };
}

/** Loads every mapping in `dir`; throws one AdapterError listing the problems of all files. */
export function loadMappings(dir: string): Mapping[] {
  const result = validateMappingsCommand(dir);
  const errors = result.files.flatMap((f) => f.errors);
  if (errors.length) throw invalid(errors);
  return result.files.map((f) => parseMapping(readFileSync(f.file, 'utf8'), f.file));
}
