import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { analyzeText } from '../src/nlp/index.js';

/**
 * NLP benchmark: throughput on ~300-word chest reports (synthesized deterministically from the
 * fixtures: demo report headers + assertion-set sentences) on one core, and negation precision /
 * recall on fixtures/nlp/assertion-set.jsonl.
 *   node --import tsx bench/nlp.ts
 */
export interface NlpBenchResult {
  /** Best of `rounds` timed passes over the reports, one core. */
  reportsPerSecond: number;
  medianReportsPerSecond: number;
  wordsPerReport: number;
  reports: number;
  negationPrecision: number;
  negationRecall: number;
  accuracy: number;
  confusion: Record<string, Record<string, number>>;
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

export interface AssertionItem {
  text: string;
  target: string;
  assertion: string;
}

export function loadAssertionSet(): AssertionItem[] {
  return readFileSync(join(root, 'fixtures/nlp/assertion-set.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as AssertionItem);
}

/** Scores the assertion set; `predicted` is `not-found` when no mention matched the target. */
export function scoreAssertionSet(items: AssertionItem[] = loadAssertionSet()) {
  const confusion: Record<string, Record<string, number>> = {};
  let tp = 0;
  let fp = 0;
  let fn = 0;
  let correct = 0;
  const errors: { item: AssertionItem; predicted: string; trigger?: string }[] = [];
  for (const item of items) {
    const m = analyzeText(item.text, { targets: [item.target] }).mentions.find((x) => x.target === item.target);
    const predicted = m?.assertion ?? 'not-found';
    (confusion[item.assertion] ??= {})[predicted] = (confusion[item.assertion][predicted] ?? 0) + 1;
    if (predicted === item.assertion) correct++;
    else errors.push({ item, predicted, trigger: m?.trigger });
    if (predicted === 'negated' && item.assertion === 'negated') tp++;
    else if (predicted === 'negated') fp++;
    else if (item.assertion === 'negated') fn++;
  }
  return {
    negationPrecision: tp / Math.max(1, tp + fp),
    negationRecall: tp / Math.max(1, tp + fn),
    accuracy: correct / items.length,
    confusion,
    errors,
  };
}

/** Deterministic ~300-word reports built from fixture sentences. */
export function synthesizeReports(count: number, words = 300): string[] {
  const demo = JSON.parse(readFileSync(join(root, 'fixtures/demo/reports/chest-reports.json'), 'utf8')) as { reports: { text: string }[] };
  const sentences = loadAssertionSet().map((i) => i.text);
  let seed = 42;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const out: string[] = [];
  for (let r = 0; r < count; r++) {
    const base = demo.reports[r % demo.reports.length].text;
    const parts = [base.replace(/\nIMPRESSION:[\s\S]*$/, ''), ''];
    let n = base.split(/\s+/).length;
    const body: string[] = [];
    while (n < words - 5) {
      const s = sentences[Math.floor(rand() * sentences.length)];
      body.push(s);
      n += s.split(/\s+/).length;
    }
    parts[1] = body.join(' ');
    const impression = /\nIMPRESSION:[\s\S]*$/.exec(base)?.[0] ?? '';
    out.push(`${parts[0]}\nADDITIONAL FINDINGS: ${parts[1]}${impression}`);
  }
  return out;
}

export async function runNlpBench(options: { reports?: number; rounds?: number } = {}): Promise<NlpBenchResult> {
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
  const score = scoreAssertionSet();
  return {
    reportsPerSecond: Math.round(rates[rates.length - 1]),
    medianReportsPerSecond: Math.round(rates[Math.floor(rates.length / 2)]),
    wordsPerReport: Math.round(wordsPerReport),
    reports: done,
    negationPrecision: score.negationPrecision,
    negationRecall: score.negationRecall,
    accuracy: score.accuracy,
    confusion: score.confusion,
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = await runNlpBench();
  console.log(JSON.stringify(r, null, 2));
}
