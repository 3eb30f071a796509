import { readFileSync } from 'node:fs';
import { scoreAssertionSet, loadAssertionSet } from '../../bench/nlp.js';
import { analyzeText, reportLevelAssertion, ASSERTIONS } from './index.js';

describe('labelled assertion set (fixtures/nlp/assertion-set.jsonl)', () => {
  it('has >= 300 labelled sentences with valid labels whose target occurs in the text', () => {
    const items = loadAssertionSet();
    expect(items.length).toBeGreaterThanOrEqual(300);
    for (const i of items) {
      expect(ASSERTIONS).toContain(i.assertion);
      expect(i.text.toLowerCase()).toContain(i.target.toLowerCase());
    }
  });

  it('negation precision and recall >= 0.90 (prints the per-class confusion matrix)', () => {
    const s = scoreAssertionSet();
    const classes = [...ASSERTIONS, 'not-found'];
    const rows = Object.keys(s.confusion).map((gold) => `${gold.padEnd(14)}${classes.map((p) => String(s.confusion[gold][p] ?? 0).padStart(6)).join('')}`);
    console.log(
      [`gold \\ predicted ${classes.map((c) => c.slice(0, 5).padStart(6)).join('')}`, ...rows,
        `negation P=${s.negationPrecision.toFixed(3)} R=${s.negationRecall.toFixed(3)} accuracy=${s.accuracy.toFixed(3)}`,
        ...s.errors.map((e) => `  ${e.item.assertion} -> ${e.predicted} [${e.trigger ?? ''}] ${e.item.text}`)].join('\n'),
    );
    expect(s.negationPrecision).toBeGreaterThanOrEqual(0.9);
    expect(s.negationRecall).toBeGreaterThanOrEqual(0.9);
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
