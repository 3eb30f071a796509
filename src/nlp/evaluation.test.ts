import { existsSync, readFileSync } from 'node:fs';
import { evaluate, formatEvaluation, loadLabelledFile, SPLITS } from './evaluate.js';
import { analyzeText, DIMENSIONS, reportLevelAssertion } from './index.js';

const ASSERTION_SET = 'fixtures/nlp/assertion-set.jsonl';
const CORPUS = 'fixtures/nlp/corpus/mentions.jsonl';

describe('labelled sets', () => {
  it('the independent corpus is complete: DONE marker, >= 1,500 mentions, every class in both splits, offsets exact', () => {
    expect(existsSync('fixtures/nlp/corpus/DONE')).toBe(true);
    const items = loadLabelledFile(CORPUS); // validates every line (labels, target at start)
    expect(items.length).toBeGreaterThanOrEqual(1500);
    for (const split of SPLITS) {
      const part = items.filter((i) => i.split === split);
      for (const [dimension, values] of Object.entries(DIMENSIONS)) {
        for (const v of values) expect([split, dimension, v, part.some((i) => i[dimension as keyof typeof DIMENSIONS] === v)]).toEqual([split, dimension, v, true]);
      }
    }
    // A document belongs to one split (its text is never in both).
    const splitsOf = new Map<string, Set<string>>();
    for (const i of items) splitsOf.set(i.text, (splitsOf.get(i.text) ?? new Set()).add(i.split));
    expect([...splitsOf.values()].filter((s) => s.size > 1)).toEqual([]);
  });

  it('the original assertion set is development data with valid labels', () => {
    const items = loadLabelledFile(ASSERTION_SET);
    expect(items.length).toBeGreaterThanOrEqual(350);
    expect(new Set(items.map((i) => i.split))).toEqual(new Set(['dev']));
  });
});

describe('evaluation (prints per split, dimension and class P/R/F1 and confusion matrices)', () => {
  const report = evaluate([...loadLabelledFile(ASSERTION_SET), ...loadLabelledFile(CORPUS)]);

  it('prints the tables', () => {
    console.log(formatEvaluation(report));
    expect(report.dev!.mentions).toBeGreaterThan(2000);
    expect(report.heldout!.mentions).toBeGreaterThan(900);
  });

  // Regression guards on the development split, where the rules are tuned (well below today's figures).
  it('development split: negation, historical and hypothetical precision and recall', () => {
    const d = report.dev!.dimensions;
    const got = {
      negated: d.negation.classes.negated,
      possible: d.negation.classes.possible,
      historical: d.temporality.classes.historical,
      hypothetical: d.temporality.classes.hypothetical,
      other: d.experiencer.classes.other,
    };
    for (const [name, c] of Object.entries(got)) {
      expect([name, c.precision >= 0.95, c.recall >= 0.95]).toEqual([name, true, true]);
    }
    expect(report.dev!.notFound).toBe(0);
  });
});

describe('held-out split (reported, never tuned on)', () => {
  // The acceptance figures of the NLP work: the rules were frozen before the held-out part was first
  // scored. A regression below them fails here.
  it('negation precision >= 0.95 and recall >= 0.96; historical and hypothetical precision >= 0.80 and recall >= 0.75', () => {
    const h = evaluate(loadLabelledFile(CORPUS), { splits: ['heldout'] }).heldout!.dimensions;
    const neg = h.negation.classes.negated;
    const hist = h.temporality.classes.historical;
    const hyp = h.temporality.classes.hypothetical;
    expect({ negatedP: neg.precision >= 0.95, negatedR: neg.recall >= 0.96 }).toEqual({ negatedP: true, negatedR: true });
    expect({ historicalP: hist.precision >= 0.8, historicalR: hist.recall >= 0.75 }).toEqual({ historicalP: true, historicalR: true });
    expect({ hypotheticalP: hyp.precision >= 0.8, hypotheticalR: hyp.recall >= 0.75 }).toEqual({ hypotheticalP: true, hypotheticalR: true });
  });
});

describe('demo chest reports (fixtures/demo/reports/chest-reports.json)', () => {
  const doc = JSON.parse(readFileSync('fixtures/demo/reports/chest-reports.json', 'utf8')) as {
    reports: { id: string; loinc: string; text: string; labels: Record<string, string> }[];
  };
  it('has ~24 chest X-ray / CT reports with labels', () => {
    expect(doc.reports.length).toBeGreaterThanOrEqual(20);
    for (const r of doc.reports) expect(['36643-5', '24627-2']).toContain(r.loinc);
  });
  it.each(doc.reports.map((r) => [r.id, r] as const))('%s matches its expected labels', (_id, r) => {
    const { mentions } = analyzeText(r.text);
    for (const [concept, expected] of Object.entries(r.labels)) expect([concept, reportLevelAssertion(mentions, concept)]).toEqual([concept, expected]);
  });
});
