import path from 'node:path';
import type { DiagnosticReport, ImagingStudy } from 'fhir/r4.js';
import { loadMapping, mapPatient, parseMapping, setReportAnalyzer } from './index.js';
import { DATASETS, bpPanel, col, expectReconciled, haveDataset, LOINC, obs, patient, readJson, reasonsOf, record, syntheaRecords, SYNTHEA } from './testing/helpers.js';

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

afterEach(() => setReportAnalyzer(undefined));

describe('CURB-65 (report-finding)', () => {
  test('full row: confusion from a note, pneumonia gate from a chest X-ray, BUN converted', () => {
    const rec = record(
      patient('p1', '1950-01-01'),
      [obs('bun', '3094-0', 28.0134, 'mg/dL', hoursBefore(6)), obs('rr', '9279-1', 32, '/min', hoursBefore(2)), bpPanel('bp', 85, 55, hoursBefore(2))],
      { diagnosticReports: [cxr('cxr', 'Right lower lobe consolidation consistent with pneumonia.'), note('note', 'Patient is confused overnight.')] },
    );
    const row = expectReconciled(mapPatient(curb, rec, AS_OF));
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
    const row = expectReconciled(mapPatient(curb, rec, AS_OF));
    expect(row.skipReason).toBe('no-pneumonia-on-chest-imaging');
    expect(row.raw.pneumonia_on_imaging).toBe(0);
    expect(reasonsOf(row, 'DiagnosticReport/cxr')).toEqual(['unmatched', 'unmatched']);
  });

  test('pneumonia outside chest imaging reports does not open the gate', () => {
    const rec = record(patient('p1', '1950-01-01'), [], { diagnosticReports: [note('note', 'Pneumonia.')] });
    const row = expectReconciled(mapPatient(curb, rec, AS_OF));
    expect(row.skipReason).toBe('no-pneumonia-on-chest-imaging');
  });

  test('missing values are normal (constant imputation scoring 0), too few observed features skip', () => {
    const rec = record(patient('p1', '1990-01-01'), [obs('rr', '9279-1', 18, '/min', hoursBefore(2))], { diagnosticReports: [cxr('cxr', 'Pneumonia.')] });
    const row = expectReconciled(mapPatient(curb, rec, AS_OF));
    expect(row.skipReason).toBeUndefined();
    expect(Array.from(row.values)).toEqual([0, 5, 18, 120, 80, 34]);
    expect(row.imputed).toEqual([false, true, false, true, true, false]);
    const bare = mapPatient(curb, record(patient('p1', '1990-01-01'), [], { diagnosticReports: [cxr('cxr', 'Pneumonia.')] }), AS_OF);
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
    const row = expectReconciled(mapPatient(curb, rec, AS_OF));
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
    setReportAnalyzer(() => {
      calls++;
      return { findings: [{ concept: { system: 'http://snomed.info/sct', code: '233604007' }, assertion: 'affirmed' }], exclusions: [] };
    });
    mapPatient(curb, record(patient('p1', '1950-01-01'), [], { diagnosticReports: [cxr('cxr', 'x')] }), AS_OF);
    expect(calls).toBe(1);
  });
});

const imaging = parseMapping(
  `id: img
version: 1.0.0
model: img
features:
  - id: chest_xr_count
    source: { kind: imaging, measure: count, modalities: [CR, DX], bodySites: [{ system: http://snomed.info/sct, code: '51185008' }] }
    lookback: P1Y
  - id: days_since_chest_xr
    source: { kind: imaging, measure: days-since-last, modalities: [CR, DX], bodySites: [{ system: http://snomed.info/sct, code: '51185008' }] }
    lookback: P5Y
    missing: { strategy: constant, value: 9999 }
  - id: ct_series
    source: { kind: imaging, measure: series, modalities: [CT] }
    lookback: P5Y
  - id: all_instances
    source: { kind: imaging, measure: instances }
    lookback: P5Y
`,
  'img.yaml',
);

function study(id: string, started: string | undefined, series: { modality: string; site?: string; n: number }[], extra: Partial<ImagingStudy> = {}): ImagingStudy {
  return {
    resourceType: 'ImagingStudy',
    id,
    status: 'available',
    subject: { reference: 'Patient/p1' },
    ...(started ? { started } : {}),
    series: series.map((s, i) => ({
      uid: `1.2.${i}`,
      modality: { system: 'http://dicom.nema.org/resources/ontology/DCM', code: s.modality },
      ...(s.site ? { bodySite: { system: 'http://snomed.info/sct', code: s.site } } : {}),
      numberOfInstances: s.n,
    })),
    ...extra,
  };
}

describe('imaging', () => {
  test('count, days since last, series and instances by modality and body site', () => {
    const rec = record(patient(), [], {
      imagingStudies: [
        study('xr1', '2024-03-01T12:00:00Z', [{ modality: 'DX', site: '51185008', n: 2 }]),
        study('xr2', '2023-12-01T12:00:00Z', [{ modality: 'CR', site: '51185008', n: 1 }]),
        study('xr-old', '2022-01-01T12:00:00Z', [{ modality: 'CR', site: '51185008', n: 1 }]),
        study('ct', '2023-06-01T12:00:00Z', [{ modality: 'CT', n: 100 }, { modality: 'CT', n: 50 }, { modality: 'SR', n: 1 }]),
        study('cancelled', '2024-01-01T12:00:00Z', [{ modality: 'DX', site: '51185008', n: 1 }], { status: 'cancelled' }),
        study('nodate', undefined, [{ modality: 'DX', site: '51185008', n: 1 }]),
        study('future', '2024-03-11T00:00:00Z', [{ modality: 'DX', site: '51185008', n: 1 }]),
      ],
    });
    const row = expectReconciled(mapPatient(imaging, rec, AS_OF));
    expect(row.raw).toEqual({ chest_xr_count: 2, days_since_chest_xr: 9, ct_series: 2, all_instances: 155 });
    expect(reasonsOf(row, 'ImagingStudy/cancelled')).toContain('status');
    expect(reasonsOf(row, 'ImagingStudy/nodate')).toEqual(['malformed']);
    expect(reasonsOf(row, 'ImagingStudy/future')).toEqual(['after-as-of']);
    expect(row.basis).toEqual(['ImagingStudy/ct', 'ImagingStudy/xr-old', 'ImagingStudy/xr1', 'ImagingStudy/xr2']);
    const none = mapPatient(imaging, record(patient()), AS_OF);
    expect(Array.from(none.values)).toEqual([0, 9999, 0, 0]);
    expect(none.imputed).toEqual([false, true, false, false]);
  });

  const examples = path.join(DATASETS, 'fhir-r4-examples/imagingstudy-examples');
  (haveDataset(examples) ? test : test.skip)('HL7 ImagingStudy examples (study-level and series-level modality)', () => {
    const studies = ['imagingstudy-example.json', 'imagingstudy-example-xr.json'].map((f) => readJson<ImagingStudy>(path.join(examples, f)));
    const row = expectReconciled(mapPatient(imaging, record(patient('dicom'), [], { imagingStudies: studies }), new Date('2018-01-01T00:00:00Z')));
    expect(row.raw.ct_series).toBe(0); // the CT is from 2011, outside P5Y
    expect(row.raw.all_instances).toBe(2);
    expect(col(row, 'chest_xr_count')).toBe(0);
  });

  (haveDataset(SYNTHEA) ? test : test.skip)('Synthea chest radiographs reconcile', () => {
    let seen = 0;
    for (const { record: rec } of syntheaRecords()) {
      const row = expectReconciled(mapPatient(imaging, rec, new Date('2019-06-01T00:00:00Z')));
      seen += row.raw.chest_xr_count ?? 0;
      expect(row.counts.fetched).toBe(rec.imagingStudies.length);
    }
    expect(seen).toBeGreaterThan(0);
  });
});
