import type { Binary, DiagnosticReport, ImagingStudy, ImagingStudySeries } from 'fhir/r4.js';
import type { ExclusionReason, PatientRecord } from '../core/types.js';
import { analyzeReport } from '../nlp/index.js';
import type { CompiledMapping, Eligible, ExclusionLog, FeatureResult } from './engine.js';
import type { FeatureSource, FeatureSpec } from './mapping-schema.js';
import { windowStart } from './time.js';

/**
 * Issue 3 sources: `report-finding` (findings asserted in DiagnosticReport text, via src/nlp) and
 * `imaging` (ImagingStudy counts). Both are never missing: no matching report/study gives 0.
 */

type ReportFindingSource = Extract<FeatureSource, { kind: 'report-finding' }>;
type ImagingSource = Extract<FeatureSource, { kind: 'imaging' }>;

/** DiagnosticReport statuses whose text is final enough to use. */
export const REPORT_STATUSES: ReadonlySet<string> = new Set(['final', 'amended', 'corrected', 'appended']);
/** ImagingStudy statuses counted. */
export const IMAGING_STATUSES: ReadonlySet<string> = new Set(['available']);

/** The part of src/nlp's `analyzeReport` result the engine reads. */
export interface ReportAnalysis {
  findings: { concept: { system: string; code: string }; assertion: string }[];
  exclusions: { reason: ExclusionReason; detail?: string }[];
  /** Parts of a report that were dropped while the rest was used (bad attachment, removed script ...). */
  warnings?: { reason: ExclusionReason; detail?: string }[];
}
export type ReportAnalyzer = (report: DiagnosticReport, binaries: Map<string, Binary>) => ReportAnalysis;

let analyzer: ReportAnalyzer = analyzeReport;
/** Replaces the report analyzer (tests, or another NLP backend); `undefined` restores src/nlp's. */
export function setReportAnalyzer(fn: ReportAnalyzer | undefined): void {
  analyzer = fn ?? analyzeReport;
  analysisCache = new WeakMap();
}

const key = (c: { system?: string; code?: string }) => `${c.system ?? ''}|${c.code ?? ''}`;
const codes = (list: { system: string; code: string }[] | undefined) => new Set((list ?? []).map(key));

function matchesReport(s: ReportFindingSource, r: DiagnosticReport): boolean {
  const byCode = codes(s.reportCodes);
  const byCategory = codes(s.reportCategories);
  if (!byCode.size && !byCategory.size) return true;
  const codeOk = !byCode.size || !!r.code?.coding?.some((c) => byCode.has(key(c)));
  const catOk = !byCategory.size || !!r.category?.some((cc) => cc.coding?.some((c) => byCategory.has(key(c))));
  return codeOk && catOk;
}

/** A report is considered (fetched) by a mapping when some report-finding feature's filters match it. */
export function considerReport(cm: CompiledMapping, r: DiagnosticReport): boolean {
  return cm.mapping.features.some((f) => f.source.kind === 'report-finding' && matchesReport(f.source, r));
}

/** One analysis per report object and analyzer (a report feeding two features is analysed once). */
let analysisCache = new WeakMap<DiagnosticReport, ReportAnalysis>();

function analyze(report: DiagnosticReport, record: PatientRecord): ReportAnalysis {
  let a = analysisCache.get(report);
  if (!a) {
    a = analyzer(report, record.binaries ?? new Map());
    analysisCache.set(report, a);
  }
  return a;
}

/**
 * Value 1 when some report in the window, matching the feature's report filters, has one of the
 * finding concepts with the wanted assertion; else 0. Basis: the reports that asserted it. Reports
 * that negate (or do not mention) the finding are not basis: the 0 does not depend on them.
 */
export function reportFindingValues(
  spec: FeatureSpec,
  s: ReportFindingSource,
  reports: Eligible<DiagnosticReport>[],
  record: PatientRecord,
  asOf: Date,
  log: ExclusionLog,
): FeatureResult {
  const start = windowStart(spec.lookback!, asOf).getTime();
  const wanted = codes(s.findings);
  const refs = new Set<string>();
  for (const { resource: r, ref, time } of reports) {
    if (!matchesReport(s, r)) continue;
    if (!REPORT_STATUSES.has(r.status)) {
      log.add(ref, 'status', spec.id, `status ${r.status}`);
      continue;
    }
    if (time < start) {
      log.add(ref, 'outside-window', spec.id, `before the ${spec.lookback} lookback`);
      continue;
    }
    const a = analyze(r, record);
    for (const e of a.exclusions) log.add(ref, e.reason, spec.id, e.detail);
    for (const w of a.warnings ?? []) log.partIssue(ref, w.reason, w.detail);
    if (a.exclusions.length) continue;
    const hit = a.findings.some((f) => wanted.has(key(f.concept)) && f.assertion === s.assertion);
    if (hit) refs.add(ref);
    else log.add(ref, 'unmatched', spec.id, `no ${s.assertion} finding`);
  }
  return { value: refs.size ? 1 : 0, refs };
}

function seriesMatches(s: ImagingSource, series: ImagingStudySeries): boolean {
  const modOk = !s.modalities?.length || s.modalities.includes(series.modality?.code ?? '');
  const siteOk = !s.bodySites?.length || s.bodySites.some((b) => key(b) === key(series.bodySite ?? {}));
  return modOk && siteOk;
}

/** Matching series count and instance count of a study, or undefined when the study does not match. */
function studyMatch(s: ImagingSource, st: ImagingStudy): { series: number; instances: number } | undefined {
  const series = st.series ?? [];
  if (series.length) {
    const m = series.filter((x) => seriesMatches(s, x));
    if (!m.length) return undefined;
    return { series: m.length, instances: m.reduce((n, x) => n + (x.numberOfInstances ?? x.instance?.length ?? 0), 0) };
  }
  // no series detail: study-level modality only; a body-site filter cannot be checked
  if (s.bodySites?.length) return undefined;
  if (s.modalities?.length && !st.modality?.some((m) => s.modalities!.includes(m.code ?? ''))) return undefined;
  return { series: st.numberOfSeries ?? 0, instances: st.numberOfInstances ?? 0 };
}

/**
 * ImagingStudy measures over matching studies (modality on series or study, body site on series) in
 * the window: count, days since the last one (missing when none), total matching series, total
 * instances. Basis: every matching study, except days-since-last (the latest only; others superseded).
 */
export function imagingValues(
  spec: FeatureSpec,
  s: ImagingSource,
  studies: Eligible<ImagingStudy>[],
  asOf: Date,
  log: ExclusionLog,
): FeatureResult {
  const start = windowStart(spec.lookback!, asOf).getTime();
  const matched: { ref: string; time: number; series: number; instances: number }[] = [];
  for (const { resource: st, ref, time } of studies) {
    const m = studyMatch(s, st);
    if (!m) continue;
    if (!IMAGING_STATUSES.has(st.status)) {
      log.add(ref, 'status', spec.id, `status ${st.status}`);
      continue;
    }
    if (time < start) {
      log.add(ref, 'outside-window', spec.id, `before the ${spec.lookback} lookback`);
      continue;
    }
    matched.push({ ref, time, ...m });
  }
  const refs = new Set(matched.map((m) => m.ref));
  switch (s.measure) {
    case 'count':
      return { value: matched.length, refs };
    case 'series':
      return { value: matched.reduce((n, m) => n + m.series, 0), refs };
    case 'instances':
      return { value: matched.reduce((n, m) => n + m.instances, 0), refs };
    case 'days-since-last': {
      if (!matched.length) return { value: null, refs: new Set() };
      matched.sort((a, b) => b.time - a.time || (a.ref < b.ref ? 1 : -1));
      for (const m of matched.slice(1)) log.add(m.ref, 'superseded', spec.id, 'not the latest study');
      return { value: Math.floor((asOf.getTime() - matched[0].time) / 86_400_000), refs: new Set([matched[0].ref]) };
    }
  }
}
