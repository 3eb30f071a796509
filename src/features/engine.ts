import type { DiagnosticReport, ImagingStudy, Observation, ObservationComponent } from 'fhir/r4.js';
import fhirpath from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4';
import type { Exclusion, ExclusionReason, FeatureRow, PatientRecord } from '../core/types.js';
import { inputColumns } from './load.js';
import { DEFAULT_OBSERVATION_STATUSES, type FeatureSpec, type Mapping } from './mapping-schema.js';
import { considerReport, imagingValues, reportFindingValues } from './sources-issue3.js';
import { parseFhirDateTime, windowStart } from './time.js';
import { convertUnit } from './ucum.js';

/**
 * The feature engine: `mapPatient(mapping, record, asOf)` turns one PatientRecord into the model's
 * FeatureRow. Pure and deterministic: the same mapping, record and as-of always give the same row,
 * whatever order the record lists its resources in. See README.md in this folder for the rules.
 */

const UCUM = 'http://unitsofmeasure.org';

type Evaluator = (node: unknown) => unknown[];

export interface CompiledFeature {
  spec: FeatureSpec;
  codes: Set<string>;
  /** Per code key: the molar mass for values under it (code-level, else the feature's). */
  molarMass: Map<string, number | undefined>;
  panels: Set<string>;
  statuses: Set<string>;
  value: { obs: Evaluator; component: Evaluator };
  code: { obs: Evaluator; component: Evaluator };
}

export interface CompiledMapping {
  mapping: Mapping;
  columns: string[];
  /** Features in evaluation order (dependencies of derived features first). */
  order: CompiledFeature[];
  byId: Map<string, CompiledFeature>;
  /** `system|code` of every Observation code or panel code the mapping fetches. */
  observationKeys: Set<string>;
  hasReports: boolean;
  hasImaging: boolean;
  gender: Evaluator;
  birthDate: Evaluator;
}

const compiledCache = new WeakMap<Mapping, CompiledMapping>();

function compileExpr(expr: string, base?: string, raw = false): Evaluator {
  const fn = fhirpath.compile(base ? { base, expression: expr } : expr, r4, raw ? { resolveInternalTypes: false } : {});
  return (node) => fn(node as object) as unknown[];
}

const key = (c: { system?: string; code?: string }) => `${c.system ?? ''}|${c.code ?? ''}`;

/** Compiles a mapping once (FHIRPath expressions, code sets, evaluation order); cached per mapping object. */
export function compileMapping(mapping: Mapping): CompiledMapping {
  const hit = compiledCache.get(mapping);
  if (hit) return hit;
  const byId = new Map<string, CompiledFeature>();
  const observationKeys = new Set<string>();
  for (const spec of mapping.features) {
    const s = spec.source;
    const codes = new Set<string>();
    const molarMass = new Map<string, number | undefined>();
    const panels = new Set<string>();
    let valuePath = 'value';
    let codePath = 'value.coding.code';
    let statuses: readonly string[] = DEFAULT_OBSERVATION_STATUSES;
    if (s.kind === 'observation') {
      s.codes.forEach((c) => {
        codes.add(key(c));
        if (!molarMass.has(key(c))) molarMass.set(key(c), c.molarMass ?? spec.molarMass);
      });
      (s.panels ?? []).forEach((c) => panels.add(key(c)));
      valuePath = s.valuePath ?? valuePath;
      codePath = s.codePath ?? codePath;
      statuses = s.statuses ?? statuses;
      for (const k of [...codes, ...panels]) observationKeys.add(k);
    }
    byId.set(spec.id, {
      spec,
      codes,
      molarMass,
      panels,
      statuses: new Set(statuses),
      value: { obs: compileExpr(valuePath, undefined, true), component: compileExpr(valuePath, 'Observation.component', true) },
      code: { obs: compileExpr(codePath), component: compileExpr(codePath, 'Observation.component') },
    });
  }
  // topological order: a derived feature after everything it is computed from (cycles rejected at load)
  const order: CompiledFeature[] = [];
  const done = new Set<string>();
  const visit = (id: string) => {
    if (done.has(id)) return;
    done.add(id);
    const f = byId.get(id)!;
    if (f.spec.source.kind === 'derived') f.spec.source.of.forEach(visit);
    order.push(f);
  };
  mapping.features.forEach((f) => visit(f.id));
  const compiled: CompiledMapping = {
    mapping,
    columns: inputColumns(mapping),
    order,
    byId,
    observationKeys,
    hasReports: mapping.features.some((f) => f.source.kind === 'report-finding'),
    hasImaging: mapping.features.some((f) => f.source.kind === 'imaging'),
    gender: compileExpr('gender'),
    birthDate: compileExpr('birthDate'),
  };
  compiledCache.set(mapping, compiled);
  return compiled;
}

/** A value considered for a feature. */
export interface Candidate {
  ref: string;
  /** Instant used for windows and `latest` (the latest instant a partial date may denote). */
  time: number;
  /** Component index, -1 for the resource itself; breaks ties within one resource. */
  part: number;
  value: number;
  code?: string;
}

export interface FeatureResult {
  /** Pre-transform value in the feature's unit, null when missing. For one-hot: 1 when a code was found. */
  value: number | null;
  /** One-hot: the chosen code. */
  code?: string | null;
  /** Resources whose values make up `value`. */
  refs: Set<string>;
}

/** Collects exclusions; one resource may have several (one per feature it was considered for). */
export class ExclusionLog {
  readonly items: Exclusion[] = [];
  /** Parts dropped from resources that were otherwise considered (e.g. one bad attachment of a report). */
  readonly partIssues = new Map<string, Exclusion>();
  partIssue(reference: string, reason: ExclusionReason, detail?: string): void {
    // One per resource, part problem and detail, however many features read the resource.
    const e: Exclusion = { reference, reason };
    if (detail !== undefined) e.detail = detail;
    this.partIssues.set(`${reference}\u0000${reason}\u0000${detail ?? ''}`, e);
  }
  add(reference: string, reason: ExclusionReason, featureId?: string, detail?: string): void {
    const e: Exclusion = { reference, reason };
    if (featureId !== undefined) e.featureId = featureId;
    if (detail !== undefined) e.detail = detail;
    this.items.push(e);
  }
}

/** Timed resource that passed the resource-level checks (subject, date, as-of). */
export interface Eligible<T> {
  resource: T;
  ref: string;
  time: number;
}

function subjectMatches(reference: string | undefined, patientId: string | undefined): boolean {
  if (!reference || !patientId) return false;
  const r = reference.replace(/\/_history\/[^/]+$/, '');
  return r === `Patient/${patientId}` || r === `urn:uuid:${patientId}` || r.endsWith(`/Patient/${patientId}`);
}

/**
 * The instant a resource's data belongs to: effectiveDateTime | effectivePeriod.end|start |
 * effectiveInstant | issued (ImagingStudy: started). A partial date counts as its last instant, so a
 * value dated "today" is never used before the day is over (nothing after as-of is ever used).
 */
function effectiveTime(r: {
  effectiveDateTime?: string;
  effectivePeriod?: { start?: string; end?: string };
  effectiveInstant?: string;
  issued?: string;
  started?: string;
}): number | undefined {
  const text =
    r.effectiveDateTime ?? r.effectivePeriod?.end ?? r.effectivePeriod?.start ?? r.effectiveInstant ?? r.started ?? r.issued;
  return parseFhirDateTime(text)?.end;
}

/**
 * Resource-level checks shared by every source: id, subject, a usable date, nothing after as-of
 * (effective or issued). Returns the eligible resources; everything else is logged once (no featureId).
 */
export function eligible<T extends { id?: string; resourceType: string; subject?: { reference?: string }; issued?: string }>(
  resources: readonly T[],
  patientId: string | undefined,
  asOf: number,
  fetched: Set<string>,
  log: ExclusionLog,
): Eligible<T>[] {
  const out: Eligible<T>[] = [];
  const seen = new Set<string>();
  resources.forEach((r, i) => {
    const ref = r.id ? `${r.resourceType}/${r.id}` : `${r.resourceType}/#${i}`;
    if (seen.has(ref)) return; // the same resource listed twice counts once
    seen.add(ref);
    fetched.add(ref);
    if (!r.id) return log.add(ref, 'malformed', undefined, 'no id');
    if (!subjectMatches(r.subject?.reference, patientId)) return log.add(ref, 'no-subject');
    const time = effectiveTime(r as never);
    if (time === undefined) return log.add(ref, 'malformed', undefined, 'no usable effective date');
    const issued = r.issued === undefined ? undefined : parseFhirDateTime(r.issued);
    if (r.issued !== undefined && !issued) return log.add(ref, 'malformed', undefined, 'invalid issued');
    if (time > asOf || (issued && issued.end > asOf)) return log.add(ref, 'after-as-of');
    out.push({ resource: r, ref, time });
  });
  return out.sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
}

function hasCode(concept: { coding?: { system?: string; code?: string }[] } | undefined, keys: Set<string>): boolean {
  return !!concept?.coding?.some((c) => keys.has(key(c)));
}

/** The UCUM unit of a Quantity: `code` when the system is UCUM (or absent), else the human `unit`. */
function quantityUnit(q: { code?: string; system?: string; unit?: string }): string | undefined {
  if (q.code && (q.system === undefined || q.system === UCUM)) return q.code;
  return q.unit?.trim() || undefined;
}

/** Observation candidates for one feature: matching, status, window and value checks. */
function observationCandidates(f: CompiledFeature, obs: Eligible<Observation>[], asOf: Date, log: ExclusionLog): Candidate[] {
  const spec = f.spec;
  const start = windowStart(spec.lookback!, asOf).getTime();
  const out: Candidate[] = [];
  for (const { resource: o, ref, time } of obs) {
    const parts: { node: Observation | ObservationComponent; part: number }[] = [];
    if (hasCode(o.code, f.codes)) parts.push({ node: o, part: -1 });
    if (hasCode(o.code, f.panels))
      (o.component ?? []).forEach((c, k) => {
        if (hasCode(c.code, f.codes)) parts.push({ node: c, part: k });
      });
    if (!parts.length) continue;
    if (!f.statuses.has(o.status)) {
      log.add(ref, 'status', spec.id, `status ${o.status}`);
      continue;
    }
    if (time < start) {
      log.add(ref, 'outside-window', spec.id, `before the ${spec.lookback} lookback`);
      continue;
    }
    for (const { node, part } of parts) {
      const c = candidate(f, node, part === -1 ? f.value.obs : f.value.component, part === -1 ? f.code.obs : f.code.component, ref, log);
      if (c) out.push({ ref, time, part, ...c });
    }
  }
  return out;
}

function candidate(
  f: CompiledFeature,
  node: Observation | ObservationComponent,
  valueFn: Evaluator,
  codeFn: Evaluator,
  ref: string,
  log: ExclusionLog,
): { value: number; code?: string } | undefined {
  const spec = f.spec;
  if (node.dataAbsentReason) return void log.add(ref, 'data-absent', spec.id);
  if (spec.oneHot) {
    const codes = codeFn(node).filter((c): c is string => typeof c === 'string');
    if (!codes.length) return void log.add(ref, 'non-numeric', spec.id, 'no coded value');
    // the first code that is a category, else the first code (encoded as all zeros)
    return { value: 1, code: codes.find((c) => spec.oneHot!.includes(c)) ?? codes[0] };
  }
  const res = valueFn(node);
  if (!res.length) return void log.add(ref, 'malformed', spec.id, 'no value');
  const type = fhirpath.types(res)[0];
  if (type !== 'FHIR.Quantity' && type !== 'System.Quantity') return void log.add(ref, 'non-numeric', spec.id, `value is ${type?.replace(/^\w+\./, '')}`);
  const q = (res[0] as { data: { value?: unknown; comparator?: string; code?: string; system?: string; unit?: string } }).data;
  if (typeof q.value !== 'number' || !Number.isFinite(q.value)) return void log.add(ref, 'non-numeric', spec.id, 'quantity without a value');
  if (q.comparator) return void log.add(ref, 'comparator', spec.id, `comparator ${q.comparator}`);
  const unit = quantityUnit(q);
  if (!unit) return void log.add(ref, 'unit-unconvertible', spec.id, 'no unit');
  const matched = node.code.coding?.find((c) => f.codes.has(key(c)));
  const conv = convertUnit(q.value, unit, spec.unit!, matched ? f.molarMass.get(key(matched)) : spec.molarMass);
  if (!conv.ok) return void log.add(ref, 'unit-unconvertible', spec.id, `not convertible to ${spec.unit}`);
  if (!plausible(spec, conv.value)) return void log.add(ref, 'implausible', spec.id, implausibleDetail(spec));
  return { value: conv.value };
}

function plausible(spec: FeatureSpec, v: number): boolean {
  const p = spec.plausible;
  return !p || ((p.min === undefined || v >= p.min) && (p.max === undefined || v <= p.max));
}

function implausibleDetail(spec: FeatureSpec): string {
  return `outside [${spec.plausible?.min ?? '-inf'}, ${spec.plausible?.max ?? 'inf'}]${spec.unit ? ` ${spec.unit}` : ''}`;
}

/** latest first; ties broken by reference, then component index (both descending), so the choice is stable. */
function newestFirst(a: Candidate, b: Candidate): number {
  return b.time - a.time || (a.ref < b.ref ? 1 : a.ref > b.ref ? -1 : 0) || b.part - a.part;
}

function aggregate(spec: FeatureSpec, candidates: Candidate[], log: ExclusionLog): FeatureResult {
  const refs = new Set<string>();
  if (spec.aggregate === 'count' || spec.aggregate === 'any') {
    candidates.forEach((c) => refs.add(c.ref));
    return { value: spec.aggregate === 'count' ? refs.size : refs.size > 0 ? 1 : 0, refs };
  }
  if (!candidates.length) return { value: null, code: spec.oneHot ? null : undefined, refs };
  const sorted = [...candidates].sort(newestFirst);
  if (spec.aggregate === 'mean') {
    sorted.forEach((c) => refs.add(c.ref));
    return { value: sorted.reduce((s, c) => s + c.value, 0) / sorted.length, refs };
  }
  let chosen = sorted[0];
  if (spec.aggregate === 'min' || spec.aggregate === 'max')
    for (const c of sorted) if (spec.aggregate === 'min' ? c.value < chosen.value : c.value > chosen.value) chosen = c;
  refs.add(chosen.ref);
  for (const c of sorted) if (c.ref !== chosen.ref) log.add(c.ref, 'superseded', spec.id, `${spec.aggregate} chose another value`);
  return spec.oneHot ? { value: 1, code: chosen.code ?? null, refs } : { value: chosen.value, refs };
}

/** Completed years at as-of (UTC calendar). A partial birthDate counts as its last day, so age is never overstated. */
export function completedYears(birthDate: string | undefined, asOf: Date): number | null {
  if (typeof birthDate !== 'string' || birthDate.includes('T')) return null; // FHIR date only
  const span = parseFhirDateTime(birthDate);
  if (!span) return null;
  const b = new Date(span.end);
  if (b.getTime() > asOf.getTime()) return null;
  let years = asOf.getUTCFullYear() - b.getUTCFullYear();
  const beforeBirthday =
    asOf.getUTCMonth() < b.getUTCMonth() || (asOf.getUTCMonth() === b.getUTCMonth() && asOf.getUTCDate() < b.getUTCDate());
  if (beforeBirthday) years--;
  return years;
}

type DerivedFailure = { reason: ExclusionReason; detail: string };

function derive(spec: FeatureSpec, inputs: (number | null)[]): { value: number | null; failure?: DerivedFailure } {
  const s = spec.source;
  if (s.kind !== 'derived') throw new Error('not derived');
  if (inputs.some((v) => v === null)) return { value: null, failure: { reason: 'unmatched', detail: `${spec.id}: another input is missing` } };
  const x = inputs as number[];
  let v: number;
  switch (s.op) {
    case 'ratio':
      v = x[0] / x[1];
      break;
    case 'mean-arterial-pressure':
      v = (x[0] + 2 * x[1]) / 3;
      break;
    case 'log':
      v = Math.log(x[0]);
      break;
    case 'sum':
      v = x.reduce((a, b) => a + b, 0);
      break;
    case 'difference':
      v = x[0] - x[1];
      break;
    case 'product':
      v = x.reduce((a, b) => a * b, 1);
      break;
  }
  if (!Number.isFinite(v)) return { value: null, failure: { reason: 'implausible', detail: `${spec.id}: ${s.op} is undefined for these inputs` } };
  if (!plausible(spec, v)) return { value: null, failure: { reason: 'implausible', detail: `${spec.id} ${implausibleDetail(spec)}` } };
  return { value: v };
}

function applyTransforms(spec: FeatureSpec, x: number, from = 0): number {
  for (const t of spec.transforms.slice(from)) {
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
function imputedValue(spec: FeatureSpec): number | undefined {
  const m = spec.missing;
  if (!m || m.strategy === 'required') return undefined;
  if (m.value !== undefined) return applyTransforms(spec, m.value);
  // mean without a value: the standardize mean, then what follows it (standardize gives 0, clip after it)
  const i = spec.transforms.findIndex((t) => typeof t === 'object' && 'standardize' in t);
  const t = spec.transforms[i] as { standardize: { mean: number } };
  return applyTransforms(spec, t.standardize.mean, i);
}

/**
 * Maps one patient's record into the mapping's FeatureRow at `asOf`.
 *
 * Counts: `fetched` = unique resources of the record this mapping considers (Observations whose code
 * is one of `observationCodes(mapping)`; DiagnosticReports matching a report-finding feature's
 * report filters; all ImagingStudies when the mapping has an imaging feature). `used` = unique
 * resources in `basis`. `excluded` = unique resources with at least one exclusion; an exclusion is
 * never listed for a resource in `basis` (a BP panel used for systolic but excluded for something else
 * counts once, as used), and every considered resource not in `basis` has at least one exclusion, so
 * fetched = used + excluded always holds.
 */
export function mapPatient(mapping: Mapping, record: PatientRecord, asOf: Date): FeatureRow {
  const cm = compileMapping(mapping);
  const asOfMs = asOf.getTime();
  const patientId = record.patient.id;
  const log = new ExclusionLog();
  const fetched = new Set<string>();

  const considered = record.observations.filter((o) => hasCode(o.code, cm.observationKeys));
  const observations = eligible(considered, patientId, asOfMs, fetched, log);
  const reports: Eligible<DiagnosticReport>[] = cm.hasReports
    ? eligible(
        record.diagnosticReports.filter((r) => considerReport(cm, r)),
        patientId,
        asOfMs,
        fetched,
        log,
      )
    : [];
  const studies: Eligible<ImagingStudy>[] = cm.hasImaging ? eligible(record.imagingStudies, patientId, asOfMs, fetched, log) : [];

  const results = new Map<string, FeatureResult>();
  for (const f of cm.order) {
    const spec = f.spec;
    const s = spec.source;
    let r: FeatureResult;
    switch (s.kind) {
      case 'patient-age': {
        const v = completedYears(cm.birthDate(record.patient)[0] as string | undefined, asOf);
        r = { value: v !== null && plausible(spec, v) ? v : null, refs: new Set() };
        break;
      }
      case 'patient-sex': {
        const g = cm.gender(record.patient)[0];
        r = typeof g === 'string' ? { value: 1, code: g, refs: new Set() } : { value: null, code: null, refs: new Set() };
        break;
      }
      case 'observation':
        r = aggregate(spec, observationCandidates(f, observations, asOf, log), log);
        break;
      case 'derived': {
        const deps = s.of.map((id) => results.get(id)!);
        const d = derive(spec, deps.map((x) => x.value));
        const refs = new Set<string>();
        deps.forEach((x) => x.refs.forEach((ref) => refs.add(ref)));
        r = { value: d.value, refs: d.value === null ? new Set() : refs };
        if (d.value === null) for (const ref of refs) log.add(ref, d.failure!.reason, spec.id, d.failure!.detail);
        break;
      }
      case 'report-finding':
        r = reportFindingValues(spec, s, reports, record, asOf, log);
        break;
      case 'imaging':
        r = imagingValues(spec, s, studies, asOf, log);
        break;
    }
    results.set(spec.id, r);
  }

  // skip reasons and basis
  const basis = new Set<string>();
  let skipReason: string | undefined;
  const req = mapping.requires;
  if (req) {
    const g = results.get(req.feature)!;
    if (g.value !== null && g.value > 0) g.refs.forEach((ref) => basis.add(ref));
    else skipReason = req.reason;
  }

  const columns = cm.columns;
  const values = new Float32Array(columns.length);
  const imputed: boolean[] = [];
  const raw: Record<string, number | null> = {};
  let observed = 0;
  let col = 0;
  for (const spec of mapping.features) {
    const r = results.get(spec.id)!;
    if (spec.oneHot) {
      for (const c of spec.oneHot) raw[`${spec.id}=${c}`] = r.value === null ? null : r.code === c ? 1 : 0;
    } else raw[spec.id] = r.value;
    if (!spec.input) continue;
    let isImputed = false;
    if (r.value !== null) {
      observed++;
      r.refs.forEach((ref) => basis.add(ref));
    }
    if (spec.oneHot) {
      isImputed = r.value === null;
      for (const c of spec.oneHot) {
        values[col] = !isImputed && r.code === c ? 1 : 0;
        imputed[col++] = isImputed;
      }
    } else {
      let x = r.value === null ? NaN : applyTransforms(spec, r.value);
      if (!Number.isFinite(x)) {
        isImputed = true;
        x = imputedValue(spec) ?? NaN;
      }
      values[col] = x;
      imputed[col++] = isImputed;
    }
    if (isImputed && spec.missing?.strategy === 'required') skipReason ??= `missing-required-feature:${spec.id}`;
    if (spec.missing?.indicator) {
      values[col] = isImputed ? 1 : 0;
      imputed[col++] = false;
    }
  }
  if (!skipReason && observed < mapping.minObservedFeatures) skipReason = 'too-few-observed-features';

  // exclusions: never for a used resource; every considered resource not used has one
  const exclusions = log.items.filter((e) => !basis.has(e.reference));
  const excludedRefs = new Set(exclusions.map((e) => e.reference));
  for (const ref of fetched) {
    if (!basis.has(ref) && !excludedRefs.has(ref)) {
      exclusions.push({ reference: ref, reason: 'unmatched' });
      excludedRefs.add(ref);
    }
  }
  exclusions.sort(
    (a, b) =>
      cmp(a.reference, b.reference) || cmp(a.featureId ?? '', b.featureId ?? '') || cmp(a.reason, b.reason) || cmp(a.detail ?? '', b.detail ?? ''),
  );
  const dedup = exclusions.filter(
    (e, i) =>
      i === 0 ||
      !(e.reference === exclusions[i - 1].reference && e.featureId === exclusions[i - 1].featureId && e.reason === exclusions[i - 1].reason && e.detail === exclusions[i - 1].detail),
  );

  const row: FeatureRow = {
    patientId: patientId ?? '',
    mappingId: mapping.id,
    mappingVersion: mapping.version,
    columns: [...columns],
    values,
    imputed,
    basis: [...basis].sort(),
    exclusions: dedup,
    partIssues: [...log.partIssues.values()].sort((a, b) => cmp(a.reference, b.reference) || cmp(a.reason, b.reason)),
    counts: { fetched: fetched.size, used: basis.size, excluded: excludedRefs.size },
    raw,
  };
  if (skipReason) row.skipReason = skipReason;
  return row;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
