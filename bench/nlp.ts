import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { analyzeText } from '../src/nlp/index.js';
import { evaluate, formatEvaluation, loadLabelledFile, type EvaluationReport, type LabelledMention } from '../src/nlp/evaluate.js';

/**
 * NLP benchmark (`npm run bench -- nlp`, or `node --import tsx bench/nlp.ts`):
 *  1. throughput on ~300-word reports on one core: reports synthesized deterministically from the
 *     demo chest report headers and the development texts of the labelled sets;
 *  2. the evaluation that `fhir-ml nlp evaluate` prints, on the labelled sets
 *     (fixtures/nlp/assertion-set.jsonl, development only, and fixtures/nlp/corpus/mentions.jsonl,
 *     development and held-out): per split, dimension and class precision, recall, F1 and the
 *     confusion matrix.
 */
export interface NlpBenchResult {
  /** Best of `rounds` timed passes over the reports, one core. */
  reportsPerSecond: number;
  medianReportsPerSecond: number;
  wordsPerReport: number;
  reports: number;
  /** Held-out negation precision / recall (the acceptance figures), NaN without a held-out split. */
  negationPrecision: number;
  negationRecall: number;
  evaluation: EvaluationReport;
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The labelled files: the original assertion set (all development) and the independent corpus. */
export const LABELLED_FILES = ['fixtures/nlp/assertion-set.jsonl', 'fixtures/nlp/corpus/mentions.jsonl'].map((f) => join(root, f));

export function loadLabelledSets(): LabelledMention[] {
  return LABELLED_FILES.flatMap((f) => loadLabelledFile(f));
}

/** Deterministic ~300-word reports: a demo report's header, development texts, its impression. */
export function synthesizeReports(count: number, words = 300): string[] {
  const demo = JSON.parse(readFileSync(join(root, 'fixtures/demo/reports/chest-reports.json'), 'utf8')) as { reports: { text: string }[] };
  const texts = [...new Set(loadLabelledSets().filter((i) => i.split === 'dev').map((i) => i.text))];
  let seed = 42;
  const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const out: string[] = [];
  for (let r = 0; r < count; r++) {
    const base = demo.reports[r % demo.reports.length].text;
    const head = base.replace(/\nIMPRESSION:[\s\S]*$/, '');
    let n = base.split(/\s+/).length;
    const body: string[] = [];
    while (n < words - 5) {
      const s = texts[Math.floor(rand() * texts.length)];
      const w = s.split(/\s+/).length;
      if (n + w > words + 40) continue;
      body.push(s);
      n += w;
    }
    const impression = /\nIMPRESSION:[\s\S]*$/.exec(base)?.[0] ?? '';
    out.push(`${head}\n${body.join('\n')}${impression}`);
  }
  return out;
}

export async function runNlpBench(options: { reports?: number; rounds?: number; log?: (line: string) => void } = {}): Promise<NlpBenchResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const reports = synthesizeReports(options.reports ?? 500);
  const wordsPerReport = reports.reduce((s, r) => s + r.split(/\s+/).length, 0) / reports.length;
  for (let i = 0; i < 200; i++) analyzeText(reports[i % reports.length]); // warm-up (and rule loading)
  // Several timed rounds; the best round is reported (least disturbed by other processes on a
  // shared machine), the median alongside it.
  const rounds = options.rounds ?? 7;
  const rates: number[] = [];
  let done = 0;
  for (let k = 0; k < rounds; k++) {
    const t0 = performance.now();
    for (const r of reports) analyzeText(r);
    rates.push((reports.length / (performance.now() - t0)) * 1000);
    done += reports.length;
  }
  rates.sort((a, b) => a - b);
  const evaluation = evaluate(loadLabelledSets());
  log(formatEvaluation(evaluation));
  const neg = evaluation.heldout?.dimensions.negation.classes.negated;
  return {
    reportsPerSecond: Math.round(rates[rates.length - 1]),
    medianReportsPerSecond: Math.round(rates[Math.floor(rates.length / 2)]),
    wordsPerReport: Math.round(wordsPerReport),
    reports: done,
    negationPrecision: neg?.precision ?? NaN,
    negationRecall: neg?.recall ?? NaN,
    evaluation,
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = await runNlpBench();
  console.log(
    `nlp: ${r.reportsPerSecond} reports/s best, ${r.medianReportsPerSecond} median, on ~${r.wordsPerReport}-word reports (goal >= 1000, one core); ` +
      `held-out negation precision ${r.negationPrecision.toFixed(3)}, recall ${r.negationRecall.toFixed(3)}`,
  );
}
