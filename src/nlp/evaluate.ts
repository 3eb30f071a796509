import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { AdapterError } from '../core/errors.js';
import { analyzeText, summaryAssertion, type Mention } from './analyze.js';
import { ASSERTIONS, DIMENSIONS, nlpRules, type CompiledRules, type Dimension } from './rules.js';

/**
 * Evaluation of the assertion rules on a labelled corpus of target mentions (JSON Lines), per split:
 * for each dimension (negation, temporality, experiencer) and for the derived summary assertion,
 * per class precision, recall, F1 and the confusion matrix (gold x predicted).
 *
 * A line: { id?, doc?, noteType?, split: "dev" | "heldout", text, target, start?, negation,
 * temporality, experiencer }. `start` is the character offset of the target in `text` (needed when
 * the target occurs more than once). A target the analyzer does not find at that place is predicted
 * `not-found`: it counts against recall, never for precision. Texts shared by several lines are
 * analysed once, with all their targets.
 */

export const SPLITS = ['dev', 'heldout'] as const;
export type Split = (typeof SPLITS)[number];
export const NOT_FOUND = 'not-found';

const lineSchema = z.object({
  id: z.union([z.string(), z.number()]).optional(),
  doc: z.union([z.string(), z.number()]).optional(),
  noteType: z.string().optional(),
  split: z.enum(SPLITS),
  text: z.string().min(1),
  target: z.string().min(1),
  start: z.number().int().min(0).optional(),
  negation: z.enum(DIMENSIONS.negation),
  temporality: z.enum(DIMENSIONS.temporality),
  experiencer: z.enum(DIMENSIONS.experiencer),
});
export type LabelledMention = z.infer<typeof lineSchema>;

/** Scored columns: the three dimensions and the derived summary assertion. */
export type Scored = Dimension | 'assertion';
export const SCORED: readonly Scored[] = ['negation', 'temporality', 'experiencer', 'assertion'];
const CLASSES: Record<Scored, readonly string[]> = { ...DIMENSIONS, assertion: ASSERTIONS };

export interface ClassScore {
  precision: number;
  recall: number;
  f1: number;
  /** Gold mentions of the class. */
  support: number;
  /** Mentions predicted as the class. */
  predicted: number;
  truePositives: number;
}

export interface ScoredDimension {
  classes: Record<string, ClassScore>;
  /** confusion[gold][predicted]; predicted may be `not-found`. */
  confusion: Record<string, Record<string, number>>;
  accuracy: number;
}

export interface SplitReport {
  mentions: number;
  notFound: number;
  dimensions: Record<Scored, ScoredDimension>;
  /**
   * Misclassified mentions, for tuning: only when asked (`errors: true`) and only ever for the
   * development split, so that held-out text is never shown while rules are being written.
   */
  errors?: { item: LabelledMention; predicted: Record<Scored, string>; cues?: Mention['cues'] }[];
}

export type EvaluationReport = Partial<Record<Split, SplitReport>>;

/** Reads a labelled file; every bad line is reported at once (`input-invalid`, naming file and lines). */
export function loadLabelledFile(file: string): LabelledMention[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new AdapterError(code === 'ENOENT' ? 'not-found' : 'input-invalid', `cannot read ${file}: ${code ?? 'error'}`, { cause: err });
  }
  return parseLabelled(text, file);
}

export function parseLabelled(text: string, name = 'input'): LabelledMention[] {
  const items: LabelledMention[] = [];
  const problems: string[] = [];
  text.split('\n').forEach((raw, i) => {
    if (!raw.trim()) return;
    let obj: unknown;
    try {
      obj = JSON.parse(raw);
    } catch {
      problems.push(`line ${i + 1}: not valid JSON`);
      return;
    }
    const r = lineSchema.safeParse(obj);
    if (!r.success) {
      const issue = r.error.issues[0];
      problems.push(`line ${i + 1}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
      return;
    }
    const m = r.data;
    if (m.start !== undefined && m.text.slice(m.start, m.start + m.target.length).toLowerCase() !== m.target.toLowerCase()) {
      problems.push(`line ${i + 1}: "target" is not at "start" in "text"`);
      return;
    }
    items.push(m);
  });
  if (problems.length) {
    const shown = problems.slice(0, 20).join('; ');
    throw new AdapterError('input-invalid', `${name}: ${problems.length} bad line(s): ${shown}${problems.length > 20 ? '; ...' : ''}`);
  }
  return items;
}

/** The analyzer's mention for each labelled item (undefined: not found), texts analysed once each. */
export function predict(items: LabelledMention[], rules: CompiledRules = nlpRules()): (Mention | undefined)[] {
  const byText = new Map<string, number[]>();
  items.forEach((it, i) => {
    const list = byText.get(it.text);
    if (list) list.push(i);
    else byText.set(it.text, [i]);
  });
  const out: (Mention | undefined)[] = new Array(items.length);
  for (const [text, idx] of byText) {
    const targets = [...new Set(idx.map((i) => items[i].target))];
    const { mentions } = analyzeText(text, { targets }, rules);
    for (const i of idx) {
      const it = items[i];
      // Targets that differ only in case are one phrase to the analyzer ("Fever", "fever").
      const same = mentions.filter((m) => m.target !== undefined && m.target.toLowerCase() === it.target.toLowerCase());
      out[i] =
        it.start === undefined
          ? same[0]
          : (same.find((m) => m.start === it.start) ?? same.find((m) => m.start <= it.start! && it.start! < m.end) ?? same.find((m) => Math.abs(m.start - it.start!) <= 2));
    }
  }
  return out;
}

export function evaluate(items: LabelledMention[], options: { rules?: CompiledRules; errors?: boolean; splits?: readonly Split[] } = {}): EvaluationReport {
  const rules = options.rules ?? nlpRules();
  const predicted = predict(items, rules);
  const report: EvaluationReport = {};
  for (const split of options.splits ?? SPLITS) {
    const idx = items.map((_, i) => i).filter((i) => items[i].split === split);
    if (idx.length === 0) continue;
    const confusion = Object.fromEntries(SCORED.map((s) => [s, {} as Record<string, Record<string, number>>])) as Record<Scored, Record<string, Record<string, number>>>;
    const errors: NonNullable<SplitReport['errors']> = [];
    let notFound = 0;
    for (const i of idx) {
      const it = items[i];
      const m = predicted[i];
      if (!m) notFound++;
      const gold: Record<Scored, string> = { negation: it.negation, temporality: it.temporality, experiencer: it.experiencer, assertion: summaryAssertion(it, rules.assertionOrder) };
      const pred: Record<Scored, string> = m
        ? { negation: m.negation, temporality: m.temporality, experiencer: m.experiencer, assertion: m.assertion }
        : { negation: NOT_FOUND, temporality: NOT_FOUND, experiencer: NOT_FOUND, assertion: NOT_FOUND };
      let wrong = false;
      for (const s of SCORED) {
        const row = (confusion[s][gold[s]] ??= {});
        row[pred[s]] = (row[pred[s]] ?? 0) + 1;
        if (s !== 'assertion' && gold[s] !== pred[s]) wrong = true;
      }
      if (options.errors && split === 'dev' && wrong) errors.push({ item: it, predicted: pred, cues: m?.cues });
    }
    const dimensions = Object.fromEntries(SCORED.map((s) => [s, score(confusion[s], CLASSES[s], idx.length)])) as Record<Scored, ScoredDimension>;
    report[split] = { mentions: idx.length, notFound, dimensions, ...(options.errors && split === 'dev' ? { errors } : {}) };
  }
  return report;
}

function score(confusion: Record<string, Record<string, number>>, classes: readonly string[], n: number): ScoredDimension {
  const out: Record<string, ClassScore> = {};
  let correct = 0;
  for (const c of classes) {
    const support = Object.values(confusion[c] ?? {}).reduce((a, b) => a + b, 0);
    const predicted = Object.values(confusion).reduce((a, row) => a + (row[c] ?? 0), 0);
    const tp = confusion[c]?.[c] ?? 0;
    correct += tp;
    const precision = predicted ? tp / predicted : 0;
    const recall = support ? tp / support : 0;
    out[c] = { precision, recall, f1: precision + recall ? (2 * precision * recall) / (precision + recall) : 0, support, predicted, truePositives: tp };
  }
  return { classes: out, confusion, accuracy: n ? correct / n : 0 };
}

/** Plain-text tables: per split and dimension, P/R/F1/support per class and the confusion matrix. */
export function formatEvaluation(report: EvaluationReport): string {
  const lines: string[] = [];
  const f = (x: number) => x.toFixed(3);
  for (const split of SPLITS) {
    const r = report[split];
    if (!r) continue;
    lines.push(`== ${split}: ${r.mentions} mentions (${r.notFound} target(s) not found) ==`);
    for (const s of SCORED) {
      const d = r.dimensions[s];
      const classes = Object.keys(d.classes);
      const w = Math.max(13, ...classes.map((c) => c.length + 1));
      lines.push(`${s} (accuracy ${f(d.accuracy)})`);
      lines.push(`  ${'class'.padEnd(w)} precision  recall      F1  support  predicted`);
      for (const c of classes) {
        const k = d.classes[c];
        if (!k.support && !k.predicted) continue;
        lines.push(`  ${c.padEnd(w)} ${f(k.precision).padStart(9)} ${f(k.recall).padStart(7)} ${f(k.f1).padStart(7)} ${String(k.support).padStart(8)} ${String(k.predicted).padStart(10)}`);
      }
      const cols = [...classes, NOT_FOUND].filter((c) => Object.values(d.confusion).some((row) => row[c]) || d.confusion[c]);
      lines.push(`  gold \\ predicted ${cols.map((c) => c.slice(0, 8).padStart(9)).join('')}`);
      for (const g of classes) {
        if (!d.confusion[g]) continue;
        lines.push(`  ${g.padEnd(16)} ${cols.map((c) => String(d.confusion[g][c] ?? 0).padStart(9)).join('')}`);
      }
    }
    lines.push('');
  }
  return lines.join('\n');
}
