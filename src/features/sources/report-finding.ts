import type { DiagnosticReport } from 'fhir/r4.js';
import { z } from 'zod';
import { AdapterError } from '../../core/errors.js';
import { lookbackStart } from '../../core/time.js';
import { codeKey } from '../exclusions.js';
import { coding } from '../mapping/fields.js';
import { beforeWindow, defineSource } from './plugin.js';

/**
 * `report-finding`: 1 when a DiagnosticReport in the window, matching the feature's report filters,
 * has one of the finding concepts as wanted (through the clinical NLP the caller passes in
 * `MapContext.reportAnalyzer`), else 0; never missing. Basis: the reports that asserted it. Reports
 * that negate (or do not mention) the finding are not basis: the 0 does not depend on them.
 *
 * "As wanted": on the ConText dimensions, each a list of allowed values (`negation`: affirmed, negated,
 * possible; `temporality`: recent, historical, hypothetical; `experiencer`: patient, other), and/or on the
 * summary `assertion`. Every criterion given must hold. Without any of the four, `assertion: affirmed`
 * (the summary: affirmed, about the patient, recent), so existing mappings keep their meaning.
 */

/** DiagnosticReport statuses whose text is final enough to use. */
export const REPORT_STATUSES: ReadonlySet<string> = new Set(['final', 'amended', 'corrected', 'appended']);

const schema = z.strictObject({
  kind: z.literal('report-finding'),
  /** Finding concept codes from the NLP lexicon (SNOMED CT). */
  findings: z.array(coding).min(1),
  /** The summary assertion (default `affirmed` when no dimension is given either). */
  assertion: z.enum(['affirmed', 'negated', 'possible', 'historical', 'hypothetical', 'other-subject']).optional(),
  /** Allowed values of each ConText dimension (any, when absent). */
  negation: z.array(z.enum(['affirmed', 'negated', 'possible'])).min(1).optional(),
  temporality: z.array(z.enum(['recent', 'historical', 'hypothetical'])).min(1).optional(),
  experiencer: z.array(z.enum(['patient', 'other'])).min(1).optional(),
  /** Restrict to reports with one of these codes or categories (e.g. LOINC chest imaging report codes). */
  reportCodes: z.array(coding).optional(),
  reportCategories: z.array(coding).optional(),
});

interface Compiled {
  byCode: Set<string>;
  byCategory: Set<string>;
  wanted: Set<string>;
  /** The summary assertion asked for, if any. */
  assertion?: string;
  dimensions: { name: 'negation' | 'temporality' | 'experiencer'; allowed: Set<string> }[];
  /** What is wanted, for the `unmatched` detail (e.g. "negation affirmed; experiencer patient"). */
  wantedText: string;
}

const DIMENSIONS = ['negation', 'temporality', 'experiencer'] as const;

type Finding = { concept: { system: string; code: string }; assertion: string; negation?: string; temporality?: string; experiencer?: string };

/** Whether one analysed finding is what the feature asks for (concept and every criterion given). */
function wantedFinding(c: Compiled, x: Finding): boolean {
  if (!c.wanted.has(codeKey(x.concept))) return false;
  if (c.assertion !== undefined && x.assertion !== c.assertion) return false;
  return c.dimensions.every((d) => x[d.name] !== undefined && d.allowed.has(x[d.name]!));
}

function matches(c: Compiled, r: DiagnosticReport): boolean {
  if (!c.byCode.size && !c.byCategory.size) return true;
  const codeOk = !c.byCode.size || !!r.code?.coding?.some((x) => c.byCode.has(codeKey(x)));
  const catOk = !c.byCategory.size || !!r.category?.some((cc) => cc.coding?.some((x) => c.byCategory.has(codeKey(x))));
  return codeOk && catOk;
}

export const reportFindingSource = defineSource<typeof schema, Compiled, DiagnosticReport>({
  kind: 'report-finding',
  schema,
  reads: 'DiagnosticReport',
  lookback: 'required',
  aggregate: false,
  molarMass: false,
  oneHot: 'unused',
  neverMissing: () => true,
  compile: (f) => {
    const s = f.source;
    const dimensions = DIMENSIONS.filter((name) => s[name]).map((name) => ({ name, allowed: new Set<string>(s[name]) }));
    const assertion = s.assertion ?? (dimensions.length === 0 ? 'affirmed' : undefined);
    const wantedText = [...(assertion ? [`assertion ${assertion}`] : []), ...dimensions.map((d) => `${d.name} ${[...d.allowed].join('/')}`)].join('; ');
    return {
      byCode: new Set((s.reportCodes ?? []).map(codeKey)),
      byCategory: new Set((s.reportCategories ?? []).map(codeKey)),
      wanted: new Set(s.findings.map(codeKey)),
      ...(assertion ? { assertion } : {}),
      dimensions,
      wantedText,
    };
  },
  considers: matches,
  value(f, c, { resources, record, asOf, log, context }) {
    const start = lookbackStart(f.lookback!, asOf).getTime();
    const refs = new Set<string>();
    for (const { resource: r, ref, time } of resources) {
      if (!matches(c, r)) continue;
      if (!REPORT_STATUSES.has(r.status)) {
        log.add(ref, 'status', f.id, `status ${r.status}`);
        continue;
      }
      if (beforeWindow(f.id, f.lookback!, ref, time, start, log)) continue;
      const analyze = context.reportAnalyzer;
      if (!analyze) throw new AdapterError('internal', `feature ${f.id} reads report findings: the mapper needs a report analyzer (MapContext.reportAnalyzer)`);
      const a = analyze(r, record.binaries ?? new Map());
      for (const e of a.exclusions) log.add(ref, e.reason, f.id, e.detail);
      for (const w of a.warnings ?? []) log.partIssue(ref, w.reason, w.detail);
      if (a.exclusions.length) continue;
      const hit = a.findings.some((x) => wantedFinding(c, x));
      if (hit) refs.add(ref);
      else log.add(ref, 'unmatched', f.id, `no finding with ${c.wantedText}`);
    }
    return { value: refs.size ? 1 : 0, refs };
  },
});
