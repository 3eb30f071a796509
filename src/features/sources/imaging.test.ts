import path from 'node:path';
import type { ImagingStudy } from 'fhir/r4.js';
import { mapPatient } from '../engine.js';
import { parseMapping } from '../mapping/load.js';
import { col, DATASETS, expectReconciled, haveDataset, patient, readJson, reasonsOf, record, syntheaRecords, SYNTHEA } from '../testing/helpers.js';

const AS_OF = new Date('2024-03-10T12:00:00Z');

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
