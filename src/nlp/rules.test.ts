import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdapterError } from '../core/errors.js';
import { loadNlpRules, nlpRules } from './rules.js';
import { expandAlternatives } from './trie.js';

describe('NLP rule files', () => {
  it('load and validate (lazy singleton)', () => {
    const r = nlpRules();
    expect(r).toBe(nlpRules());
    expect(r.concepts.find((c) => c.id === 'pneumonia')).toEqual({ id: 'pneumonia', system: 'http://snomed.info/sct', code: '233604007', display: 'Pneumonia' });
  });

  it('expands {a|b} alternatives, including an empty one', () => {
    expect(expandAlternatives('{compared to|since} {the|} prior')).toEqual(['compared to the prior', 'compared to prior', 'since the prior', 'since prior']);
  });

  const broken = (file: string, edit: (s: string) => string) => {
    const dir = mkdtempSync(join(tmpdir(), 'nlp-rules-'));
    cpSync('mappings/nlp', dir, { recursive: true });
    writeFileSync(join(dir, file), edit(readFileSync(join(dir, file), 'utf8')));
    return dir;
  };

  it('an invalid file fails with mapping-invalid naming the file and path', () => {
    const dir = broken('findings.yaml', (s) => s.replace("code: '233604007'", "code: 'abc'"));
    expect(() => loadNlpRules(dir)).toThrow(AdapterError);
    expect(() => loadNlpRules(dir)).toThrow(/findings\.yaml: concepts\.0\.code: must be a SNOMED CT concept id/);
  });

  it('a phrase in two categories is an error naming both places', () => {
    const dir = broken('context-rules.yaml', (s) => s.replace("      - 'possibly'\n", "      - 'possibly'\n      - 'no'\n"));
    expect(() => loadNlpRules(dir)).toThrow(/context-rules\.yaml: triggers\.possible\.forward\.\d+: "no" conflicts with the same phrase at triggers\.negated\.forward\.0/);
  });

  it('unparseable YAML names the file', () => {
    const dir = broken('sections.yaml', () => 'sections: [');
    expect(() => loadNlpRules(dir)).toThrow(/sections\.yaml: cannot read or parse YAML/);
  });
});
