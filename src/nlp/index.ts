import type { Binary, DiagnosticReport } from 'fhir/r4.js';
import type { Exclusion } from '../core/types.js';
import { analyzeText, type AnalyzeOptions, type Mention, type Sentence, type TextAnalysis } from './analyze.js';
import { isExcluded, reportText, type PartIssue, type ReportTextOptions, type TextSource } from './report-text.js';
import { nlpRules, type Assertion, type CompiledRules, type Concept, type Experiencer, type Negation, type Temporality } from './rules.js';

export { analyzeText, summaryAssertion } from './analyze.js';
export type { AnalyzeOptions, Cue, Mention, Sentence, TextAnalysis } from './analyze.js';
export { reportText, isExcluded, isBase64 } from './report-text.js';
export type { ReportText, ReportTextOk, ReportTextExcluded, ReportTextOptions, PartIssue, TextSource } from './report-text.js';
export { decodeReportBytes, decodeCharacters, textOfCharacters, isDecodeProblem, parseContentType, checkContentType, sniffBom, SUPPORTED_CONTENT_TYPES } from './text-decode.js';
export type { DecodedText, DecodeProblem } from './text-decode.js';
export { htmlToText } from './html.js';
export { nlpRules, loadNlpRules, defaultRulesDir, ASSERTIONS, DIMENSIONS, DIMENSION_NAMES } from './rules.js';
export type { Assertion, Concept, CompiledRules, Dimension, Negation, Temporality, Experiencer } from './rules.js';

/** The three ConText dimensions of a mention or a finding. */
export interface Dimensions {
  negation: Negation;
  temporality: Temporality;
  experiencer: Experiencer;
}

/**
 * One distinct (concept, dimensions, section) found in a report: what the feature engine consumes.
 * `assertion` is the summary of the three dimensions (see `Mention.assertion`).
 */
export interface ReportFinding extends Dimensions {
  concept: Concept;
  assertion: Assertion;
  section: string | null;
  /** How many mentions support it. */
  count: number;
}

/**
 * The report's reading of one concept, as a reader would summarise it (see `reportLevelFinding`):
 * the dimensions and summary assertion of the deciding mention, and how many mentions there were.
 */
export interface ConceptFinding extends Dimensions {
  concept: Concept;
  assertion: Assertion;
  section: string | null;
  mentions: number;
}

export interface ReportAnalysis {
  /** `DiagnosticReport/<id>` (or `DiagnosticReport/?` without an id). */
  reference: string;
  findings: ReportFinding[];
  /** One entry per lexicon concept mentioned, in order of first mention. */
  concepts: ConceptFinding[];
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
  rules: CompiledRules = nlpRules(),
): ReportAnalysis {
  const reference = `DiagnosticReport/${report.id ?? '?'}`;
  const rt = reportText(report, binaries, options);
  if (isExcluded(rt)) {
    return {
      reference,
      findings: [],
      concepts: [],
      mentions: [],
      sentences: [],
      summary: [],
      sources: [],
      exclusions: [{ reference, reason: rt.excluded, detail: rt.detail }],
      warnings: rt.issues,
    };
  }
  const analysis: TextAnalysis = analyzeText(rt.text, options, rules);
  const byKey = new Map<string, ReportFinding>();
  const conceptIds: string[] = [];
  for (const m of analysis.mentions) {
    if (!m.concept) continue;
    const key = `${m.concept.id}\u0000${m.negation}\u0000${m.temporality}\u0000${m.experiencer}\u0000${m.section ?? ''}`;
    const f = byKey.get(key);
    if (f) f.count++;
    else {
      if (!conceptIds.includes(m.concept.id)) conceptIds.push(m.concept.id);
      byKey.set(key, {
        concept: m.concept,
        assertion: m.assertion,
        negation: m.negation,
        temporality: m.temporality,
        experiencer: m.experiencer,
        section: m.section,
        count: 1,
      });
    }
  }
  return {
    reference,
    findings: [...byKey.values()],
    concepts: conceptIds.map((id) => reportLevelFinding(analysis.mentions, id)!),
    mentions: analysis.mentions,
    sentences: analysis.sentences,
    summary: analysis.summary,
    sources: rt.sources,
    exclusions: [],
    warnings: rt.issues,
  };
}

/** An analyzer bound to one set of rules (e.g. a hospital's own `mappings/nlp` directory). */
export interface NlpAnalyzer {
  rules: CompiledRules;
  analyzeText(text: string, options?: AnalyzeOptions): TextAnalysis;
  analyzeReport(report: DiagnosticReport, binaries?: Map<string, Binary>, options?: AnalyzeOptions & ReportTextOptions): ReportAnalysis;
}

export function createNlpAnalyzer(rules: CompiledRules = nlpRules()): NlpAnalyzer {
  return {
    rules,
    analyzeText: (text, options) => analyzeText(text, options, rules),
    analyzeReport: (report, binaries, options) => analyzeReport(report, binaries, options, rules),
  };
}

const SECTION_TIER: Record<string, number> = { IMPRESSION: 0, CONCLUSION: 0, DIAGNOSES: 0, INDICATION: 2, HISTORY: 2, 'CHIEF COMPLAINT': 2 };
const REPORT_ORDER: Assertion[] = ['affirmed', 'possible', 'negated', 'historical', 'hypothetical', 'other-subject'];

/**
 * One reading per concept for a whole report, as a reader would summarise it: mentions in
 * IMPRESSION/CONCLUSION/DIAGNOSES decide if there are any, else FINDINGS and other body sections,
 * else INDICATION/HISTORY. Within that tier the mention whose summary assertion comes first in
 * affirmed > possible > negated > historical > hypothetical > other-subject decides, and its three
 * dimensions are the report's. Undefined when the concept does not occur.
 */
export function reportLevelFinding(mentions: Mention[], conceptId: string): ConceptFinding | undefined {
  let bestTier = Infinity;
  let best: Mention | undefined;
  let count = 0;
  for (const m of mentions) {
    if (m.concept?.id !== conceptId) continue;
    count++;
    const tier = m.section ? (SECTION_TIER[m.section] ?? 1) : 1;
    if (tier < bestTier || (tier === bestTier && REPORT_ORDER.indexOf(m.assertion) < REPORT_ORDER.indexOf(best!.assertion))) {
      bestTier = tier;
      best = m;
    }
  }
  if (!best) return undefined;
  return {
    concept: best.concept!,
    assertion: best.assertion,
    negation: best.negation,
    temporality: best.temporality,
    experiencer: best.experiencer,
    section: best.section,
    mentions: count,
  };
}

/** The summary assertion of `reportLevelFinding`, or `not-mentioned`. */
export function reportLevelAssertion(mentions: Mention[], conceptId: string): Assertion | 'not-mentioned' {
  return reportLevelFinding(mentions, conceptId)?.assertion ?? 'not-mentioned';
}
