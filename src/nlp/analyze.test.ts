import type { DiagnosticReport } from 'fhir/r4.js';
import { analyzeReport, analyzeText, reportLevelAssertion } from './index.js';

const assertionOf = (text: string, target: string) => {
  const m = analyzeText(text, { targets: [target] }).mentions.find((x) => x.target === target);
  if (!m) throw new Error(`"${target}" not found in "${text}"`);
  return m.assertion;
};

describe('ConText assertions', () => {
  it.each([
    ['Nodule is not seen.', 'nodule', 'negated'],
    ['Pneumonia is absent.', 'pneumonia', 'negated'],
    ['Negative for pneumonia.', 'pneumonia', 'negated'],
    ['No evidence of pneumonia.', 'pneumonia', 'negated'],
    ['The lungs are clear without consolidation.', 'consolidation', 'negated'],
    ['Pneumonia has been ruled out.', 'pneumonia', 'negated'],
    ['No pleural effusion or pneumothorax.', 'pneumothorax', 'negated'],
    ['No change in the nodule.', 'nodule', 'affirmed'],
    ['There is no interval change in the right lower lobe nodule.', 'nodule', 'affirmed'],
    ['Gram negative pneumonia.', 'pneumonia', 'affirmed'],
    ['Right lower lobe pneumonia.', 'pneumonia', 'affirmed'],
    ['No effusion, but there is a right lower lobe consolidation.', 'consolidation', 'affirmed'],
    ['Cannot exclude pneumonia.', 'pneumonia', 'possible'],
    ['Pneumonia is not ruled out.', 'pneumonia', 'possible'],
    ['Possible pneumonia.', 'pneumonia', 'possible'],
    ['Probable left lower lobe pneumonia.', 'pneumonia', 'possible'],
    ['Findings are suspicious for pneumonia.', 'pneumonia', 'possible'],
    ['The opacity may represent pneumonia.', 'pneumonia', 'possible'],
    ['History of pneumonia.', 'pneumonia', 'historical'],
    ['No history of pneumonia.', 'pneumonia', 'negated'],
    ['If fever develops, evaluate for pneumonia.', 'pneumonia', 'hypothetical'],
    ['Rule out pneumonia.', 'pneumonia', 'hypothetical'],
    ['R/O pneumonia.', 'pneumonia', 'hypothetical'],
    ['Mother had pneumonia.', 'pneumonia', 'other-subject'],
    ['Family history of pulmonary embolism.', 'pulmonary embolism', 'other-subject'],
    ['Mother recently treated for pneumonia.', 'pneumonia', 'other-subject'],
    ['Per his wife, he has been confused.', 'confused', 'affirmed'],
  ])('%s -> %s is %s', (text, target, expected) => {
    expect(assertionOf(text, target)).toBe(expected);
  });

  it('reports lexicon concepts with SNOMED codes, exact spans and the deciding trigger', () => {
    const text = 'Small right PLEURAL EFFUSIONS.  No pneumothorax.';
    const { mentions } = analyzeText(text);
    expect(mentions.map((m) => [m.text, m.concept?.code, m.assertion, m.trigger])).toEqual([
      ['PLEURAL EFFUSIONS', '60046008', 'affirmed', undefined],
      ['pneumothorax', '36118008', 'negated', 'No'],
    ]);
    for (const m of mentions) expect(text.slice(m.start, m.end)).toBe(m.text);
  });

  it('respects lexicon exclusions and longest match', () => {
    const ids = analyzeText('Mass effect on the trachea. Aspiration pneumonia. Soft tissue edema.').mentions.map((m) => m.concept?.id);
    expect(ids).toEqual(['pneumonia']);
  });
});

describe('sections and sentences', () => {
  it('detects headings at line start, including bare headings and list items', () => {
    const text = 'INDICATION: new confusion, fever.\nFINDINGS:\nNo pneumothorax. Small effusion\nImpression\n1. Right lower lobe pneumonia.\n2. No effusion.';
    const r = analyzeText(text);
    expect(r.sentences.map((s) => [s.section, s.text])).toEqual([
      ['INDICATION', 'new confusion, fever.'],
      ['FINDINGS', 'No pneumothorax.'],
      ['FINDINGS', 'Small effusion'],
      ['IMPRESSION', 'Right lower lobe pneumonia.'],
      ['IMPRESSION', 'No effusion.'],
    ]);
    expect(r.mentions.map((m) => `${m.section}:${m.concept?.id}:${m.assertion}`)).toEqual([
      'INDICATION:confusion:affirmed',
      'INDICATION:fever:affirmed',
      'FINDINGS:pneumothorax:negated',
      'FINDINGS:effusion:affirmed',
      'IMPRESSION:pneumonia:affirmed',
      'IMPRESSION:effusion:negated',
    ]);
    expect(r.summary[0]).toBe('Right lower lobe pneumonia.');
  });

  it('applies section defaults (family history, past medical history)', () => {
    const r = analyzeText('FAMILY HISTORY: emphysema.\nPAST MEDICAL HISTORY: pneumonia.\nFINDINGS: Mild emphysema.');
    expect(r.mentions.map((m) => m.assertion)).toEqual(['other-subject', 'historical', 'affirmed']);
  });

  it('summary puts IMPRESSION first, then affirmed findings, capped', () => {
    const r = analyzeText('FINDINGS: Mild cardiomegaly. No effusion. Left basilar atelectasis.\nIMPRESSION: No acute process.', { summarySentences: 2 });
    expect(r.summary).toEqual(['No acute process.', 'Mild cardiomegaly.']);
  });
});

describe('analyzeReport', () => {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  it('returns findings per concept, assertion and section from HTML with headings', () => {
    const report: DiagnosticReport = {
      resourceType: 'DiagnosticReport',
      id: 'dr1',
      status: 'final',
      code: { text: 'XR chest' },
      presentedForm: [
        { contentType: 'text/html', data: b64('<h3>Indication</h3><p>Fever, r/o pneumonia</p><h3>Impression</h3><p>Right lower lobe consolidation.</p>') },
      ],
    };
    const r = analyzeReport(report);
    expect(r.exclusions).toEqual([]);
    expect(r.findings.map((f) => [f.concept.id, f.assertion, f.section])).toEqual([
      ['fever', 'affirmed', 'INDICATION'],
      ['pneumonia', 'hypothetical', 'INDICATION'],
      ['consolidation', 'affirmed', 'IMPRESSION'],
    ]);
    expect(reportLevelAssertion(r.mentions, 'pneumonia')).toBe('hypothetical');
    expect(reportLevelAssertion(r.mentions, 'pneumothorax')).toBe('not-mentioned');
  });

  it('turns an unusable report into one exclusion with a reference', () => {
    const r = analyzeReport({ resourceType: 'DiagnosticReport', id: 'x', status: 'final', code: {}, presentedForm: [{ contentType: 'application/pdf', data: 'AAAA' }] });
    expect(r.exclusions).toEqual([{ reference: 'DiagnosticReport/x', reason: 'unsupported-content-type', detail: 'presentedForm[0]: content type application/pdf' }]);
    expect(r.findings).toEqual([]);
  });
});

describe('summary fallback', () => {
  it('extracts the opening sentences of a text with no impression and no affirmed finding', () => {
    const r = analyzeText('No acute cardiopulmonary process. Lungs are clear. Heart size normal.');
    expect(r.summary).toEqual(['No acute cardiopulmonary process.', 'Lungs are clear.']);
  });
});
