import type { Binary, DiagnosticReport } from 'fhir/r4.js';
import type { Exclusion } from '../core/types.js';
import { analyzeText, type AnalyzeOptions, type Mention, type Sentence, type TextAnalysis } from './analyze.js';
import { isExcluded, reportText, type PartIssue, type ReportTextOptions, type TextSource } from './report-text.js';
import type { Assertion, Concept } from './rules.js';

export { analyzeText, findHeadings } from './analyze.js';
export type { AnalyzeOptions, Mention, Sentence, TextAnalysis } from './analyze.js';
export { reportText, isExcluded, parseContentType, isBase64 } from './report-text.js';
export type { ReportText, ReportTextOk, ReportTextExcluded, ReportTextOptions, PartIssue, TextSource } from './report-text.js';
export { htmlToText } from './html.js';
export { nlpRules, loadNlpRules, ASSERTIONS } from './rules.js';
export type { Assertion, Concept, CompiledRules } from './rules.js';

/** One distinct (concept, assertion, section) found in a report: what the feature engine consumes. */
export interface ReportFinding {
  concept: Concept;
  assertion: Assertion;
  section: string | null;
  /** How many mentions support it. */
  count: number;
}

export interface ReportAnalysis {
  /** `DiagnosticReport/<id>` (or `DiagnosticReport/?` without an id). */
  reference: string;
  findings: ReportFinding[];
  mentions: Mention[];
  sentences: Sentence[];
  summary: string[];
  /** Where the text came from (character spans in the analysed text). */
  sources: TextSource[];
  /**
   * Report-level exclusion (0 or 1 entries): the report had no usable text. Counts reconcile with
   * the feature engine's fetched = used + excluded.
   */
  exclusions: Exclusion[];
  /**
   * Part-level problems in a report that WAS used (an unsupported second attachment, removed
   * `<script>` -> `unsafe-content`). Count them separately; they are not exclusions of the report.
   */
  warnings: PartIssue[];
}

/**
 * Text of the report (conclusion, conclusionCode, presentedForm; see `reportText`), then `analyzeText`.
 * Report status and dates are the caller's business (the feature engine filters those first).
 */
export function analyzeReport(
  report: DiagnosticReport,
  binaries?: Map<string, Binary>,
  options: AnalyzeOptions & ReportTextOptions = {},
): ReportAnalysis {
  const reference = `DiagnosticReport/${report.id ?? '?'}`;
  const rt = reportText(report, binaries, options);
  if (isExcluded(rt)) {
    return {
      reference,
      findings: [],
      mentions: [],
      sentences: [],
      summary: [],
      sources: [],
      exclusions: [{ reference, reason: rt.excluded, detail: rt.detail }],
      warnings: rt.issues,
    };
  }
  const analysis: TextAnalysis = analyzeText(rt.text, options);
  const byKey = new Map<string, ReportFinding>();
  for (const m of analysis.mentions) {
    if (!m.concept) continue;
    const key = `${m.concept.id}\u0000${m.assertion}\u0000${m.section ?? ''}`;
    const f = byKey.get(key);
    if (f) f.count++;
    else byKey.set(key, { concept: m.concept, assertion: m.assertion, section: m.section, count: 1 });
  }
  return {
    reference,
    findings: [...byKey.values()],
    mentions: analysis.mentions,
    sentences: analysis.sentences,
    summary: analysis.summary,
    sources: rt.sources,
    exclusions: [],
    warnings: rt.issues,
  };
}

const SECTION_TIER: Record<string, number> = { IMPRESSION: 0, CONCLUSION: 0, DIAGNOSES: 0, INDICATION: 2, HISTORY: 2, 'CHIEF COMPLAINT': 2 };
const REPORT_ORDER: Assertion[] = ['affirmed', 'possible', 'negated', 'historical', 'hypothetical', 'other-subject'];

/**
 * One assertion per concept for a whole report, as a reader would summarise it: mentions in
 * IMPRESSION/CONCLUSION decide if there are any, else FINDINGS and other body sections, else
 * INDICATION/HISTORY. Within that tier: affirmed > possible > negated > historical > hypothetical >
 * other-subject. `not-mentioned` when the concept does not occur.
 */
export function reportLevelAssertion(mentions: Mention[], conceptId: string): Assertion | 'not-mentioned' {
  let bestTier = Infinity;
  let best: Assertion | undefined;
  for (const m of mentions) {
    if (m.concept?.id !== conceptId) continue;
    const tier = m.section ? (SECTION_TIER[m.section] ?? 1) : 1;
    if (tier < bestTier || (tier === bestTier && REPORT_ORDER.indexOf(m.assertion) < REPORT_ORDER.indexOf(best!))) {
      bestTier = tier;
      best = m.assertion;
    }
  }
  return best ?? 'not-mentioned';
}
