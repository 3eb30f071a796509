import { readdirSync } from 'node:fs';
import path from 'node:path';
import type { Observation, Patient } from 'fhir/r4.js';
import type { FeatureRow } from '../core/types.js';
import { analyzeReport } from '../nlp/index.js';
import { createMapContext, loadMapping, mapPatient } from './index.js';
import { expectReconciled, haveDataset, HL7_OBSERVATIONS, readJson, reasonsOf, SYNTHEA, syntheaRecords } from './testing/helpers.js';

const diabetes = loadMapping('mappings/diabetes-progression.yaml');
const curb = loadMapping('mappings/curb65.yaml');

const nlp = createMapContext({ reportAnalyzer: analyzeReport });

const hl7 = haveDataset(HL7_OBSERVATIONS);
const synthea = haveDataset(SYNTHEA);

function subjectPatient(o: Observation): Patient {
  const id = /^Patient\/(.+)$/.exec(o.subject?.reference ?? '')?.[1] ?? 'example';
  return { resourceType: 'Patient', id, birthDate: '1960-01-01', gender: 'female' };
}

(hl7 ? describe : describe.skip)('HL7 FHIR R4 observation examples', () => {
  const files = hl7 ? readdirSync(HL7_OBSERVATIONS).filter((f) => f.endsWith('.json')).sort() : [];
  const load = (name: string) => readJson<Observation>(path.join(HL7_OBSERVATIONS, name));
  const one = (name: string, asOf: string, mapping = diabetes): FeatureRow => {
    const o = load(name);
    return expectReconciled(mapPatient(mapping, { patient: subjectPatient(o), observations: [o], diagnosticReports: [], imagingStudies: [], conditions: [] }, new Date(asOf)));
  };

  test('every example maps without throwing, alone and all together, and reconciles', () => {
    expect(files.length).toBeGreaterThan(50);
    const all = files.map(load);
    for (const mapping of [diabetes, curb]) {
      for (const o of all) {
        for (const asOf of ['2013-04-10T00:00:00Z', '2030-01-01T00:00:00Z']) {
          expectReconciled(mapPatient(mapping, { patient: subjectPatient(o), observations: [o], diagnosticReports: [], imagingStudies: [], conditions: [] }, new Date(asOf)));
        }
      }
      const row = expectReconciled(mapPatient(mapping, { patient: { resourceType: 'Patient', id: 'example' }, observations: all, diagnosticReports: [], imagingStudies: [], conditions: [] }, new Date('2030-01-01T00:00:00Z')));
      expect(row.values.length).toBe(row.columns.length);
    }
  });

  test('glucose in mmol/L (f001) converts to mg/dL', () => {
    const row = one('observation-example-f001-glucose.json', '2013-04-10T00:00:00Z');
    expect(row.raw.glucose).toBeCloseTo(6.3 * 18.0156, 3);
    expect(row.basis).toEqual(['Observation/f001']);
  });

  test('blood pressure panel, cancelled panel, dataAbsentReason component', () => {
    const ok = one('observation-example-bloodpressure.json', '2012-12-01T00:00:00Z');
    expect(ok.raw.map).toBeCloseTo((107 + 2 * 60) / 3, 6);
    expect(ok.counts).toEqual({ fetched: 1, used: 1, excluded: 0 });

    const cancelled = one('observation-example-bloodpressure-cancel.json', '2012-12-01T00:00:00Z');
    expect(new Set(reasonsOf(cancelled, 'Observation/blood-pressure-cancel'))).toEqual(new Set(['status']));

    const dar = one('observation-example-bloodpressure-dar.json', '2012-12-01T00:00:00Z');
    expect(dar.raw.sbp).toBe(107);
    expect(dar.raw.map).toBeNull();
    expect(reasonsOf(dar, 'Observation/blood-pressure-dar')).toContain('data-absent');
    expect(dar.counts).toEqual({ fetched: 1, used: 0, excluded: 1 });
  });

  test('cancelled glucose with dataAbsentReason (unsat) is excluded for its status', () => {
    const row = one('observation-example-unsat.json', '2013-04-10T00:00:00Z');
    expect(reasonsOf(row, 'Observation/unsat')).toEqual(['status']);
  });

  test('BMI and respiratory rate', () => {
    expect(one('observation-example-bmi.json', '2000-01-01T00:00:00Z').raw.bmi).toBe(16.2);
    expect(one('observation-example-respiratory-rate.json', '1999-07-03T00:00:00Z', curb).raw.resp_rate).toBe(26);
  });
});

(synthea ? describe : describe.skip)('Synthea patients', () => {
  const records = synthea ? syntheaRecords() : [];
  const asOfs = [new Date('2019-06-01T00:00:00Z'), new Date('2016-01-01T00:00:00Z')];

  test('counts reconcile for every patient, mapping and as-of; mapping is order-independent', () => {
    expect(records.length).toBeGreaterThan(50);
    const reasons = new Map<string, number>();
    let scored = 0;
    for (const { record } of records) {
      for (const mapping of [diabetes, curb]) {
        for (const asOf of asOfs) {
          const row = expectReconciled(mapPatient(mapping, record, asOf, nlp));
          for (const e of row.exclusions) reasons.set(e.reason, (reasons.get(e.reason) ?? 0) + 1);
          if (!row.skipReason) {
            if (mapping === diabetes) scored++;
            expect(Array.from(row.values).every(Number.isFinite)).toBe(true);
          }
          const reversed = mapPatient(mapping, { ...record, observations: [...record.observations].reverse(), diagnosticReports: [...record.diagnosticReports].reverse() }, asOf, nlp);
          expect(reversed).toEqual(row);
        }
      }
    }
    expect(scored).toBeGreaterThan(10);
    // Synthea data is clean, so the reasons seen are about time and choice
    for (const r of ['superseded', 'outside-window', 'after-as-of']) expect(reasons.get(r)).toBeGreaterThan(0);
  });

  test('diabetes columns come from Synthea lipid and BP panels', () => {
    const asOf = asOfs[0];
    const rows = records.map(({ record }) => mapPatient(diabetes, record, asOf));
    const withLipids = rows.filter((r) => r.raw.tc !== null && r.raw.hdl !== null);
    expect(withLipids.length).toBeGreaterThan(0);
    for (const r of withLipids) expect(r.raw.tc_hdl_ratio).toBeCloseTo(r.raw.tc! / r.raw.hdl!, 10);
    expect(rows.some((r) => r.raw.map !== null)).toBe(true);
    expect(rows.some((r) => r.raw.glucose !== null)).toBe(true);
  });

  test('CURB-65 skips Synthea patients without pneumonia on chest imaging', () => {
    for (const { record } of records) {
      const row = mapPatient(curb, record, asOfs[0], nlp);
      expect(row.skipReason).toBe('no-pneumonia-on-chest-imaging');
    }
  });
});
