import type { Condition, DiagnosticReport, ImagingStudy, Observation } from 'fhir/r4.js';
import type { FeatureRow, PatientRecord } from '../core/types.js';
import { eligible, ExclusionLog, type Eligible } from './exclusions.js';
import { inputColumns, readTypes, valueColumns, type ClinicalType } from './mapping/queries.js';
import type { FeatureSpec, Mapping } from './mapping/schema.js';
import { sourcePlugin, type AnySourcePlugin, type FeatureResult, type MapContext } from './sources/index.js';
import { applyTransforms, imputedValue } from './values.js';

/**
 * The feature engine: `mapPatient(mapping, record, asOf, context)` turns one PatientRecord into the
 * model's FeatureRow. Pure and deterministic: the same mapping, record and as-of always give the same
 * row, whatever order the record lists its resources in. Each feature's value comes from its source
 * plug-in (`sources/<kind>.ts`); the services a source needs (the report analyzer) come in `context`.
 * See README.md in this folder for the rules.
 */

interface CompiledFeature {
  spec: FeatureSpec;
  plugin: AnySourcePlugin;
  compiled: unknown;
}

interface CompiledMapping {
  columns: string[];
  /** Features in file order (the order of the input columns). */
  features: CompiledFeature[];
  /** Features in evaluation order (what a feature depends on first; cycles are rejected at load). */
  order: CompiledFeature[];
  /** Clinical resource types the mapping reads, with the features reading each. */
  reads: Map<ClinicalType, CompiledFeature[]>;
}

const compiledCache = new WeakMap<Mapping, CompiledMapping>();

/** Compiles a mapping once (source preparations, evaluation order); cached per mapping object. */
function compileMapping(mapping: Mapping): CompiledMapping {
  const hit = compiledCache.get(mapping);
  if (hit) return hit;
  const byId = new Map<string, CompiledFeature>();
  for (const spec of mapping.features) {
    const plugin = sourcePlugin(spec.source.kind);
    byId.set(spec.id, { spec, plugin, compiled: plugin.compile(spec) });
  }
  const order: CompiledFeature[] = [];
  const done = new Set<string>();
  const visit = (id: string) => {
    if (done.has(id)) return;
    done.add(id);
    const f = byId.get(id)!;
    f.plugin.dependsOn?.(f.spec.source).forEach(visit);
    order.push(f);
  };
  mapping.features.forEach((f) => visit(f.id));
  const reads = new Map<ClinicalType, CompiledFeature[]>();
  for (const type of readTypes(mapping)) reads.set(type, order.filter((f) => f.plugin.reads === type));
  const compiled: CompiledMapping = { columns: inputColumns(mapping), features: mapping.features.map((f) => byId.get(f.id)!), order, reads };
  compiledCache.set(mapping, compiled);
  return compiled;
}

/** A record's resources of one clinical type. */
function resourcesOf(record: PatientRecord, type: ClinicalType): readonly (Observation | DiagnosticReport | ImagingStudy | Condition)[] {
  switch (type) {
    case 'Observation':
      return record.observations;
    case 'DiagnosticReport':
      return record.diagnosticReports;
    case 'ImagingStudy':
      return record.imagingStudies;
    case 'Condition':
      return record.conditions ?? [];
  }
}

/**
 * Maps one patient's record into the mapping's FeatureRow at `asOf`.
 *
 * Counts: `fetched` = unique resources of the record this mapping considers (per resource type its
 * sources read, the resources some feature's source considers: Observations with one of the codes it
 * searches, DiagnosticReports matching a report-finding feature's filters, every ImagingStudy when the
 * mapping has an imaging feature). `used` = unique resources in `basis`. `excluded` = unique resources
 * with at least one exclusion; an exclusion is never listed for a resource in `basis` (a BP panel used
 * for systolic but excluded for something else counts once, as used), and every considered resource not
 * in `basis` has at least one exclusion, so fetched = used + excluded always holds.
 */
export function mapPatient(mapping: Mapping, record: PatientRecord, asOf: Date, context: MapContext = {}): FeatureRow {
  const cm = compileMapping(mapping);
  const asOfMs = asOf.getTime();
  const patientId = record.patient.id;
  const log = new ExclusionLog();
  const fetched = new Set<string>();

  const eligibleByType = new Map<ClinicalType, Eligible<unknown>[]>();
  for (const [type, readers] of cm.reads) {
    const considered = resourcesOf(record, type).filter((r) => readers.some((f) => !f.plugin.considers || f.plugin.considers(f.compiled, r)));
    // Conditions are not dated by an effective time: their source reads onset, abatement and status at as-of.
    eligibleByType.set(type, eligible(considered, patientId, asOfMs, fetched, log, type !== 'Condition'));
  }

  const results = new Map<string, FeatureResult>();
  for (const f of cm.order) {
    const type = f.plugin.reads;
    const resources = type && type !== 'Patient' ? eligibleByType.get(type)! : [];
    results.set(f.spec.id, f.plugin.value(f.spec, f.compiled, { record, asOf, log, resources, results, context }));
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

  const values = new Float32Array(cm.columns.length);
  const imputed: boolean[] = [];
  const raw: Record<string, number | null> = {};
  let observed = 0;
  let usesPatient = false;
  let col = 0;
  for (const { spec, plugin } of cm.features) {
    const r = results.get(spec.id)!;
    const keys = valueColumns(spec);
    if (spec.oneHot) for (let k = 0; k < keys.length; k++) raw[keys[k]] = r.value === null ? null : r.code === spec.oneHot[k] ? 1 : 0;
    else raw[spec.id] = r.value;
    if (!spec.input) continue;
    let isImputed = false;
    if (r.value !== null) {
      observed++;
      r.refs.forEach((ref) => basis.add(ref));
      if (plugin.reads === 'Patient') usesPatient = true;
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
    columns: [...cm.columns],
    values,
    imputed,
    basis: [...basis].sort(),
    usesPatient,
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
