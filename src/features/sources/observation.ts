import type { Observation, ObservationComponent } from 'fhir/r4.js';
import fhirpath from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4';
import { z } from 'zod';
import { lookbackStart } from '../../core/time.js';
import type { ExclusionLog } from '../exclusions.js';
import { codeKey, hasCode } from '../exclusions.js';
import { coding, ucumUnit, type Coding, type Feature } from '../mapping/fields.js';
import { convertUnit, isConvertible } from '../ucum.js';
import { implausibleDetail, plausible, soleValueQuantity, type RawQuantity } from '../values.js';
import { beforeWindow, defineSource, type FeatureResult } from './plugin.js';

/**
 * `observation`: an Observation's Quantity (or coded value, for one-hot) by code, incl. components of
 * panels, converted to the feature's UCUM unit, within the lookback window, aggregated
 * (latest, mean, min, max, count, any).
 */

const UCUM = 'http://unitsofmeasure.org';

/**
 * An Observation code to match. `unit` optionally declares the unit results under this code come in
 * (e.g. 14647-2 in mmol/L); it is checked at load time to be convertible to the feature's unit
 * (with the code's or the feature's molarMass), so a missing molar mass is caught before any patient is mapped.
 */
const OBSERVATION_CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';

/**
 * The category results under a code are filed under (`laboratory`, `vital-signs`, ... of observation-category,
 * or a full coding). Optional; the per-patient pull searches Observations one category at a time with it,
 * for FHIR APIs that require `category=`; the other pulls do not use it.
 */
const observationCategory = z.union([
  z
    .string()
    .regex(/^[a-z][a-z-]*$/, 'must be an observation-category code such as laboratory or vital-signs, or a coding { system, code }')
    .transform((code) => ({ system: OBSERVATION_CATEGORY, code })),
  z.strictObject({ system: z.string().min(1), code: z.string().min(1) }),
]);

const observationCoding = coding.extend({
  unit: ucumUnit.optional(),
  /** g/mol for values under this code, overriding the feature's molarMass (BUN 28.0134 vs urea 60.06). */
  molarMass: z.number().positive().optional(),
  category: observationCategory.optional(),
});

/** Observation.status values accepted by default: final results only (see ../README.md). */
export const DEFAULT_OBSERVATION_STATUSES = ['final', 'amended', 'corrected'] as const;
const observationStatus = z.enum(['registered', 'preliminary', 'final', 'amended', 'corrected', 'cancelled', 'entered-in-error', 'unknown']);

const schema = z.strictObject({
  kind: z.literal('observation'),
  /** Codes of the Observation itself, or of a component inside a panel. */
  codes: z.array(observationCoding).min(1),
  /** Panel codes to search too; the value is then taken from the component matching `codes`. */
  panels: z.array(coding.extend({ category: observationCategory.optional() })).optional(),
  /** Observation statuses accepted (default final, amended, corrected); others are excluded as `status`. */
  statuses: z.array(observationStatus).min(1).optional(),
  /** Optional FHIRPath evaluated on the Observation (or component) to select the Quantity; default `value`. */
  valuePath: z.string().optional(),
  /** For coded values (one-hot): FHIRPath to the code, default `value.coding.code`. */
  codePath: z.string().optional(),
});
type ObservationSource = z.output<typeof schema>;

type Evaluator = (node: unknown) => unknown[];

function compileExpr(expr: string, base?: string, raw = false): Evaluator {
  const fn = fhirpath.compile(base ? { base, expression: expr } : expr, r4, raw ? { resolveInternalTypes: false } : {});
  return (node) => fn(node as object) as unknown[];
}

interface Compiled {
  codes: Set<string>;
  /** Per code key: the molar mass for values under it (code-level, else the feature's). */
  molarMass: Map<string, number | undefined>;
  panels: Set<string>;
  /** Codes and panel codes: what makes an Observation considered. */
  searched: Set<string>;
  statuses: Set<string>;
  value: { obs: Evaluator; component: Evaluator };
  code: { obs: Evaluator; component: Evaluator };
  /** The value path is FHIRPath `value` (the default): a sole valueQuantity is read without FHIRPath. */
  defaultValuePath: boolean;
}

/** A value considered for a feature. */
interface Candidate {
  ref: string;
  /** Instant used for windows and `latest` (the latest instant a partial date may denote). */
  time: number;
  /** Component index, -1 for the resource itself; breaks ties within one resource. */
  part: number;
  value: number;
  code?: string;
}

/** The UCUM unit of a Quantity: `code` when the system is UCUM (or absent), else the human `unit`. */
function quantityUnit(q: { code?: string; system?: string; unit?: string }): string | undefined {
  if (q.code && (q.system === undefined || q.system === UCUM)) return q.code;
  return q.unit?.trim() || undefined;
}

function candidate(
  f: Feature<ObservationSource>,
  c: Compiled,
  node: Observation | ObservationComponent,
  valueFn: Evaluator,
  codeFn: Evaluator,
  ref: string,
  log: ExclusionLog,
): { value: number; code?: string } | undefined {
  if (node.dataAbsentReason) return void log.add(ref, 'data-absent', f.id);
  if (f.oneHot) {
    const codes = codeFn(node).filter((x): x is string => typeof x === 'string');
    if (!codes.length) return void log.add(ref, 'non-numeric', f.id, 'no coded value');
    // the first code that is a category, else the first code (encoded as all zeros)
    return { value: 1, code: codes.find((x) => f.oneHot!.includes(x)) ?? codes[0] };
  }
  let q = c.defaultValuePath ? soleValueQuantity(node) : undefined;
  if (!q) {
    const res = valueFn(node);
    if (!res.length) return void log.add(ref, 'malformed', f.id, 'no value');
    const type = fhirpath.types(res)[0];
    if (type !== 'FHIR.Quantity' && type !== 'System.Quantity') return void log.add(ref, 'non-numeric', f.id, `value is ${type?.replace(/^\w+\./, '')}`);
    q = (res[0] as { data: RawQuantity }).data;
  }
  if (typeof q.value !== 'number' || !Number.isFinite(q.value)) return void log.add(ref, 'non-numeric', f.id, 'quantity without a value');
  if (q.comparator) return void log.add(ref, 'comparator', f.id, `comparator ${q.comparator}`);
  const unit = quantityUnit(q);
  if (!unit) return void log.add(ref, 'unit-unconvertible', f.id, 'no unit');
  const matched = node.code.coding?.find((x) => c.codes.has(codeKey(x)));
  const conv = convertUnit(q.value, unit, f.unit!, matched ? c.molarMass.get(codeKey(matched)) : f.molarMass);
  if (!conv.ok) return void log.add(ref, 'unit-unconvertible', f.id, `not convertible to ${f.unit}`);
  if (!plausible(f, conv.value)) return void log.add(ref, 'implausible', f.id, implausibleDetail(f));
  return { value: conv.value };
}

/** latest first; ties broken by reference, then component index (both descending), so the choice is stable. */
function newestFirst(a: Candidate, b: Candidate): number {
  return b.time - a.time || (a.ref < b.ref ? 1 : a.ref > b.ref ? -1 : 0) || b.part - a.part;
}

function aggregate(f: Feature<ObservationSource>, candidates: Candidate[], log: ExclusionLog): FeatureResult {
  const refs = new Set<string>();
  if (f.aggregate === 'count' || f.aggregate === 'any') {
    candidates.forEach((c) => refs.add(c.ref));
    return { value: f.aggregate === 'count' ? refs.size : refs.size > 0 ? 1 : 0, refs };
  }
  if (!candidates.length) return { value: null, code: f.oneHot ? null : undefined, refs };
  const sorted = [...candidates].sort(newestFirst);
  if (f.aggregate === 'mean') {
    sorted.forEach((c) => refs.add(c.ref));
    return { value: sorted.reduce((s, c) => s + c.value, 0) / sorted.length, refs };
  }
  let chosen = sorted[0];
  if (f.aggregate === 'min' || f.aggregate === 'max')
    for (const c of sorted) if (f.aggregate === 'min' ? c.value < chosen.value : c.value > chosen.value) chosen = c;
  refs.add(chosen.ref);
  for (const c of sorted) if (c.ref !== chosen.ref) log.add(c.ref, 'superseded', f.id, `${f.aggregate} chose another value`);
  return f.oneHot ? { value: 1, code: chosen.code ?? null, refs } : { value: chosen.value, refs };
}

export const observationSource = defineSource<typeof schema, Compiled, Observation>({
  kind: 'observation',
  schema,
  reads: 'Observation',
  lookback: 'required',
  aggregate: true,
  molarMass: true,
  oneHot: 'allowed',
  searchCodes: (s) => [...s.codes, ...(s.panels ?? [])].map((c): Coding => ({ system: c.system, code: c.code, ...(c.category ? { category: c.category } : {}) })),
  neverMissing: (f) => f.aggregate === 'count' || f.aggregate === 'any',
  validate(f, scope) {
    const s = f.source;
    if (!f.oneHot) {
      if (!f.unit) scope.add(['unit'], 'is required for numeric observation features (values are converted to it)');
      else
        s.codes.forEach((c, k) => {
          const mm = c.molarMass ?? f.molarMass;
          if (c.unit && !isConvertible(c.unit, f.unit!, mm))
            scope.add(
              ['source', 'codes', k, 'unit'],
              `"${c.unit}" cannot be converted to the feature unit "${f.unit}"${mm ? ` (molarMass ${mm})` : ' (mass <-> substance needs molarMass)'}`,
            );
        });
      if (s.codePath) scope.add(['source', 'codePath'], 'is only used with oneHot');
    } else {
      if (s.valuePath) scope.add(['source', 'valuePath'], 'is not used with oneHot (use codePath)');
      if (f.aggregate !== 'latest') scope.add(['aggregate'], 'coded (one-hot) observations only support latest');
    }
    for (const [key, expr] of [
      ['valuePath', s.valuePath],
      ['codePath', s.codePath],
    ] as const) {
      if (expr === undefined) continue;
      try {
        fhirpath.compile(expr, r4);
      } catch (e) {
        scope.add(['source', key], `is not a valid FHIRPath expression (${(e as Error).message.split('\n')[0]})`);
      }
    }
  },
  compile(f) {
    const s = f.source;
    const codes = new Set<string>();
    const molarMass = new Map<string, number | undefined>();
    for (const c of s.codes) {
      codes.add(codeKey(c));
      if (!molarMass.has(codeKey(c))) molarMass.set(codeKey(c), c.molarMass ?? f.molarMass);
    }
    const panels = new Set((s.panels ?? []).map(codeKey));
    const valuePath = s.valuePath ?? 'value';
    const codePath = s.codePath ?? 'value.coding.code';
    return {
      codes,
      molarMass,
      panels,
      searched: new Set([...codes, ...panels]),
      statuses: new Set<string>(s.statuses ?? DEFAULT_OBSERVATION_STATUSES),
      value: { obs: compileExpr(valuePath, undefined, true), component: compileExpr(valuePath, 'Observation.component', true) },
      code: { obs: compileExpr(codePath), component: compileExpr(codePath, 'Observation.component') },
      defaultValuePath: valuePath === 'value',
    };
  },
  considers: (c, o) => hasCode(o.code, c.searched),
  value(f, c, { resources, asOf, log }) {
    const start = lookbackStart(f.lookback!, asOf).getTime();
    const out: Candidate[] = [];
    for (const { resource: o, ref, time } of resources) {
      const own = hasCode(o.code, c.codes);
      const panel = hasCode(o.code, c.panels);
      if (!own && !panel) continue; // another feature's resource: nothing to allocate
      const parts: { node: Observation | ObservationComponent; part: number }[] = [];
      if (own) parts.push({ node: o, part: -1 });
      if (panel)
        (o.component ?? []).forEach((comp, k) => {
          if (hasCode(comp.code, c.codes)) parts.push({ node: comp, part: k });
        });
      if (!parts.length) continue;
      if (!c.statuses.has(o.status)) {
        log.add(ref, 'status', f.id, `status ${o.status}`);
        continue;
      }
      if (beforeWindow(f.id, f.lookback!, ref, time, start, log)) continue;
      for (const { node, part } of parts) {
        const own = part === -1;
        const v = candidate(f, c, node, own ? c.value.obs : c.value.component, own ? c.code.obs : c.code.component, ref, log);
        if (v) out.push({ ref, time, part, ...v });
      }
    }
    return aggregate(f, out, log);
  },
});
