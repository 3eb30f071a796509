import type { DiagnosticReport } from 'fhir/r4.js';
import { z } from 'zod';
import { AdapterError } from '../../core/errors.js';
import { lookbackStart } from '../../core/time.js';
import { codeKey } from '../exclusions.js';
import { coding } from '../mapping/fields.js';
import { beforeWindow, defineSource } from './plugin.js';

/**
 * `report-finding`: 1 when a DiagnosticReport in the window, matching the feature's report filters,
 * has one of the finding concepts with the wanted assertion (through the clinical NLP the caller
 * passes in `MapContext.reportAnalyzer`), else 0; never missing. Basis: the reports that asserted it.
 * Reports that negate (or do not mention) the finding are not basis: the 0 does not depend on them.
 */

/** DiagnosticReport statuses whose text is final enough to use. */
export const REPORT_STATUSES: ReadonlySet<string> = new Set(['final', 'amended', 'corrected', 'appended']);

const schema = z.strictObject({
  kind: z.literal('report-finding'),
  /** Finding concept codes from the NLP lexicon (SNOMED CT). */
  findings: z.array(coding).min(1),
  assertion: z.enum(['affirmed', 'negated', 'possible', 'historical', 'hypothetical', 'other-subject']).default('affirmed'),
  /** Restrict to reports with one of these codes or categories (e.g. LOINC chest imaging report codes). */
  reportCodes: z.array(coding).optional(),
  reportCategories: z.array(coding).optional(),
});

interface Compiled {
  byCode: Set<string>;
  byCategory: Set<string>;
  wanted: Set<string>;
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
  compile: (f) => ({
    byCode: new Set((f.source.reportCodes ?? []).map(codeKey)),
    byCategory: new Set((f.source.reportCategories ?? []).map(codeKey)),
    wanted: new Set(f.source.findings.map(codeKey)),
  }),
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
      const hit = a.findings.some((x) => c.wanted.has(codeKey(x.concept)) && x.assertion === f.source.assertion);
      if (hit) refs.add(ref);
      else log.add(ref, 'unmatched', f.id, `no ${f.source.assertion} finding`);
    }
    return { value: refs.size ? 1 : 0, refs };
  },
});
