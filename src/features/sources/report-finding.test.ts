import type { DiagnosticReport } from 'fhir/r4.js';
import { analyzeReport } from '../../nlp/index.js';
import { createMapContext } from '../context.js';
import { mapPatient } from '../engine.js';
import { loadMapping, parseMapping } from '../mapping/load.js';
import { bpPanel, expectReconciled, LOINC, obs, patient, reasonsOf, record } from '../testing/helpers.js';

/** The report-finding source through the bundled CURB-65 mapping, with src/nlp as the analyzer. */
const curb = loadMapping('mappings/curb65.yaml');
const AS_OF = new Date('2024-03-10T12:00:00Z');
const hoursBefore = (h: number) => new Date(AS_OF.getTime() - h * 3_600_000).toISOString();

function report(id: string, code: string, conclusion: string | undefined, hoursAgo: number, extra: Partial<DiagnosticReport> = {}): DiagnosticReport {
  return {
    resourceType: 'DiagnosticReport',
    id,
    status: 'final',
    code: { coding: [{ system: LOINC, code }] },
    subject: { reference: 'Patient/p1' },
    effectiveDateTime: hoursBefore(hoursAgo),
    issued: hoursBefore(hoursAgo - 1),
    ...(conclusion === undefined ? {} : { conclusion }),
    ...extra,
  };
}

const cxr = (id: string, text: string, hoursAgo = 24, extra: Partial<DiagnosticReport> = {}) => report(id, '36643-5', text, hoursAgo, extra);
const note = (id: string, text: string, hoursAgo = 10) => report(id, '11506-3', text, hoursAgo);

const nlp = createMapContext({ reportAnalyzer: analyzeReport });

describe('CURB-65 (report-finding)', () => {
  test('full row: confusion from a note, pneumonia gate from a chest X-ray, BUN converted', () => {
    const rec = record(
      patient('p1', '1950-01-01'),
      [obs('bun', '3094-0', 28.0134, 'mg/dL', hoursBefore(6)), obs('rr', '9279-1', 32, '/min', hoursBefore(2)), bpPanel('bp', 85, 55, hoursBefore(2))],
      { diagnosticReports: [cxr('cxr', 'Right lower lobe consolidation consistent with pneumonia.'), note('note', 'Patient is confused overnight.')] },
    );
    const row = expectReconciled(mapPatient(curb, rec, AS_OF, nlp));
    expect(row.skipReason).toBeUndefined();
    expect(Array.from(row.values)).toEqual([1, 10, 32, 85, 55, 74].map((v) => Math.fround(v)));
    expect(row.imputed).toEqual([false, false, false, false, false, false]);
    expect(row.raw.pneumonia_on_imaging).toBe(1);
    expect(row.basis).toEqual(['DiagnosticReport/cxr', 'DiagnosticReport/note', 'Observation/bp', 'Observation/bun', 'Observation/rr']);
    expect(row.counts).toEqual({ fetched: 5, used: 5, excluded: 0 });
  });

  test('negated pneumonia: not scored, the negating report is not basis', () => {
    const rec = record(patient('p1', '1950-01-01'), [obs('rr', '9279-1', 20, '/min', hoursBefore(2))], {
      diagnosticReports: [cxr('cxr', 'No evidence of pneumonia. Lungs are clear.')],
    });
    const row = expectReconciled(mapPatient(curb, rec, AS_OF, nlp));
    expect(row.skipReason).toBe('no-pneumonia-on-chest-imaging');
    expect(row.raw.pneumonia_on_imaging).toBe(0);
    expect(reasonsOf(row, 'DiagnosticReport/cxr')).toEqual(['unmatched', 'unmatched']);
  });

  test('pneumonia outside chest imaging reports does not open the gate', () => {
    const rec = record(patient('p1', '1950-01-01'), [], { diagnosticReports: [note('note', 'Pneumonia.')] });
    const row = expectReconciled(mapPatient(curb, rec, AS_OF, nlp));
    expect(row.skipReason).toBe('no-pneumonia-on-chest-imaging');
  });

  test('missing values are normal (constant imputation scoring 0), too few observed features skip', () => {
    const rec = record(patient('p1', '1990-01-01'), [obs('rr', '9279-1', 18, '/min', hoursBefore(2))], { diagnosticReports: [cxr('cxr', 'Pneumonia.')] });
    const row = expectReconciled(mapPatient(curb, rec, AS_OF, nlp));
    expect(row.skipReason).toBeUndefined();
    expect(Array.from(row.values)).toEqual([0, 5, 18, 120, 80, 34]);
    expect(row.imputed).toEqual([false, true, false, true, true, false]);
    const bare = mapPatient(curb, record(patient('p1', '1990-01-01'), [], { diagnosticReports: [cxr('cxr', 'Pneumonia.')] }), AS_OF, nlp);
    expect(bare.skipReason).toBe('too-few-observed-features');
  });

  test('report exclusions: status, window, after as-of, empty report, subject', () => {
    const rec = record(patient('p1', '1950-01-01'), [obs('rr', '9279-1', 20, '/min', hoursBefore(2))], {
      diagnosticReports: [
        cxr('prelim', 'Pneumonia.', 5, { status: 'preliminary' }),
        cxr('old', 'Pneumonia.', 80),
        cxr('late', 'Pneumonia.', -1),
        cxr('empty', '', 3, { conclusion: undefined }),
        cxr('other', 'Pneumonia.', 3, { subject: { reference: 'Patient/p2' } }),
        cxr('ok', 'Pneumonia.', 3),
      ],
    });
    const row = expectReconciled(mapPatient(curb, rec, AS_OF, nlp));
    expect(row.skipReason).toBeUndefined();
    expect(new Set(reasonsOf(row, 'DiagnosticReport/prelim'))).toEqual(new Set(['status']));
    expect(new Set(reasonsOf(row, 'DiagnosticReport/old'))).toEqual(new Set(['outside-window']));
    expect(reasonsOf(row, 'DiagnosticReport/late')).toEqual(['after-as-of']);
    expect(new Set(reasonsOf(row, 'DiagnosticReport/empty'))).toEqual(new Set(['empty-report']));
    expect(reasonsOf(row, 'DiagnosticReport/other')).toEqual(['no-subject']);
    expect(row.basis).toEqual(['DiagnosticReport/ok', 'Observation/rr']);
    expect(row.counts).toEqual({ fetched: 7, used: 2, excluded: 5 });
  });

  test('each report is analysed once even when two features read it', () => {
    let calls = 0;
    const counting = createMapContext({
      reportAnalyzer: () => {
        calls++;
        return { findings: [{ concept: { system: 'http://snomed.info/sct', code: '233604007' }, assertion: 'affirmed' }], exclusions: [] };
      },
    });
    const rec = record(patient('p1', '1950-01-01'), [], { diagnosticReports: [cxr('cxr', 'x')] });
    mapPatient(curb, rec, AS_OF, counting);
    expect(calls).toBe(1);
    // the analyzer is the caller's: without one, a mapping that reads report findings refuses to guess
    expect(() => mapPatient(curb, rec, AS_OF)).toThrow(/report analyzer/);
  });
});


describe('report-finding on the ConText dimensions', () => {
  const AS = new Date('2024-03-10T12:00:00Z');
  const mapping = (criteria: string) =>
    parseMapping(
      `id: t
version: 1.0.0
model: t
features:
  - id: finding
    lookback: P30D
    source:
      kind: report-finding
      findings: [{ system: http://snomed.info/sct, code: '233604007' }]
${criteria
  .split('\n')
  .filter(Boolean)
  .map((l) => `      ${l}`)
  .join('\n')}
`,
      't.yaml',
    );
  const rec = (text: string) => record(patient('p1', '1950-01-01'), [], { diagnosticReports: [cxr('r', text)] });
  const value = (criteria: string, text: string) => expectReconciled(mapPatient(mapping(criteria), rec(text), AS, nlp));

  test('without criteria: the summary assertion affirmed, as before', () => {
    expect(value('', 'Right lower lobe pneumonia.').raw.finding).toBe(1);
    expect(value('', 'No pneumonia.').raw.finding).toBe(0);
    expect(value('', 'History of pneumonia in 2019.').raw.finding).toBe(0);
  });

  test('negation alone: historical mentions count when only negation is asked for', () => {
    expect(value('negation: [affirmed]', 'History of pneumonia in 2019.').raw.finding).toBe(1);
    expect(value('negation: [affirmed]', 'No pneumonia.').raw.finding).toBe(0);
    expect(value('negation: [negated]', 'No pneumonia.').raw.finding).toBe(1);
  });

  test('every criterion given must hold; the unmatched detail names what was wanted', () => {
    const row = value('negation: [affirmed]\ntemporality: [recent]', 'History of pneumonia in 2019.');
    expect(row.raw.finding).toBe(0);
    expect(row.exclusions.find((e) => e.reference === 'DiagnosticReport/r')?.detail).toBe('no finding with negation affirmed; temporality recent');
    expect(value('negation: [affirmed, possible]\ntemporality: [recent]', 'Findings may represent pneumonia.').raw.finding).toBe(1);
    expect(value('experiencer: [other]', 'Mother had pneumonia.').raw.finding).toBe(1);
    expect(value('experiencer: [other]\nassertion: affirmed', 'Mother had pneumonia.').raw.finding).toBe(0);
  });
});
