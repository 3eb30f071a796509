/**
 * The pinned feature rows of the shipped mappings on public data (../shared/datasets): every HL7 R4
 * Observation example alone and all together, every Synthea patient, at two as-ofs each; and, so that
 * every kind of Observation value goes through the value rules of a numeric feature, each example's
 * `value[x]` (Quantity, CodeableConcept, string, SampledData, Range, Ratio, Period, ...) carried by a
 * glucose Observation and by a blood pressure panel's systolic component. Rows are compared whole
 * (values, imputation, basis, exclusions with reasons and details, counts, raw values) as a sha256 per
 * dataset, kept in `fixtures/pins/feature-rows.json`.
 *
 * Regenerate when a change is meant to alter rows: node --import tsx test/pins/feature-rows.ts --write
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Observation, Patient } from 'fhir/r4.js';
import { packagePath } from '../../src/core/paths.js';
import type { PatientRecord } from '../../src/core/types.js';
import { createMapContext, loadMapping, mapPatient, type Mapping } from '../../src/features/index.js';
import { HL7_OBSERVATIONS, readJson, SYNTHEA, syntheaRecords } from '../../src/features/testing/helpers.js';
import { analyzeReport } from '../../src/nlp/index.js';

export const FEATURE_ROWS_PIN = packagePath('fixtures/pins/feature-rows.json');
export const PINNED_DATASETS = { hl7: HL7_OBSERVATIONS, synthea: SYNTHEA } as const;
export type PinnedDataset = keyof typeof PINNED_DATASETS;

const AS_OFS = { hl7: ['2013-04-10T00:00:00Z', '2030-01-01T00:00:00Z'], synthea: ['2019-06-01T00:00:00Z', '2016-01-01T00:00:00Z'] };

function mappings(): Mapping[] {
  return [loadMapping(packagePath('mappings/diabetes-progression.yaml')), loadMapping(packagePath('mappings/curb65.yaml'))];
}

function subjectPatient(o: Observation): Patient {
  const id = /^Patient\/(.+)$/.exec(o.subject?.reference ?? '')?.[1] ?? 'example';
  return { resourceType: 'Patient', id, birthDate: '1960-01-01', gender: 'female' };
}

const record = (patient: Patient, observations: Observation[]): PatientRecord => ({ patient, observations, diagnosticReports: [], imagingStudies: [], conditions: [] });

/** Each example's value[x] on a glucose Observation and on a BP panel's systolic component. */
function valueCarriers(o: Observation, patient: Patient): Observation[] {
  const value = Object.fromEntries(Object.entries(o).filter(([k]) => /^_?value([A-Z]|$)|^dataAbsentReason$/.test(k)));
  if (!Object.keys(value).length) return [];
  const common = { status: 'final' as const, subject: { reference: `Patient/${patient.id}` }, effectiveDateTime: '2012-12-01T10:00:00Z' };
  return [
    { resourceType: 'Observation', id: `${o.id}-glucose`, ...common, code: { coding: [{ system: 'http://loinc.org', code: '2345-7' }] }, ...value },
    {
      resourceType: 'Observation',
      id: `${o.id}-bp`,
      ...common,
      code: { coding: [{ system: 'http://loinc.org', code: '85354-9' }] },
      component: [
        { code: { coding: [{ system: 'http://loinc.org', code: '8480-6' }] }, ...value },
        { code: { coding: [{ system: 'http://loinc.org', code: '8462-4' }] }, valueQuantity: { value: 80, system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } },
      ],
    } as Observation,
  ];
}

/** Value shapes the examples lack or carry only on codes no mapping reads (edge cases of Quantity included). */
const EXTRA_VALUES: Record<string, unknown>[] = [
  { valueInteger: 120 },
  { valueTime: '10:00:00' },
  { valueRange: { low: { value: 100, system: 'http://unitsofmeasure.org', code: 'mg/dL' } } },
  { valueRatio: { numerator: { value: 1 }, denominator: { value: 2 } } },
  { valuePeriod: { start: '2012-01-01' } },
  { valueSampledData: { origin: { value: 0 }, period: 10, dimensions: 1, data: '1 2 3' } },
  { valueQuantity: { value: 5.5, system: 'http://unitsofmeasure.org', code: 'mmol/L', unit: 'mmol/l' } },
  { valueQuantity: { value: 99, unit: 'mg/dL' } },
  { valueQuantity: { value: 99, system: 'http://example.org/units', code: 'MGDL', unit: 'mg/dL' } },
  { valueQuantity: { value: 99, system: 'http://example.org/units', code: 'MGDL' } },
  { valueQuantity: { value: 99 } },
  { valueQuantity: { system: 'http://unitsofmeasure.org', code: 'mg/dL' } },
  { valueQuantity: { value: 99, comparator: '<', system: 'http://unitsofmeasure.org', code: 'mg/dL' } },
  { valueQuantity: { value: '99', system: 'http://unitsofmeasure.org', code: 'mg/dL' } },
  { valueQuantity: { value: 99, system: 'http://unitsofmeasure.org', code: ' mg/dL ' } },
  { valueQuantity: { value: 99, system: 'http://unitsofmeasure.org', code: 'kg' } },
  { valueQuantity: [{ value: 99, system: 'http://unitsofmeasure.org', code: 'mg/dL' }] },
  { valueQuantity: { value: 99, system: 'http://unitsofmeasure.org', code: 'mg/dL' }, valueString: 'both' },
  { valueQuantity: null },
  { valueQuantity: 'x' },
  { _valueString: { extension: [{ url: 'http://example.org/x', valueString: 'y' }] } },
  { valueString: '99 mg/dL', _valueString: { id: 'v' } },
  { value: 99 },
  { dataAbsentReason: { text: 'x' }, valueQuantity: { value: 99, system: 'http://unitsofmeasure.org', code: 'mg/dL' } },
];

/** The rows of one dataset, one JSON line per (record, mapping, as-of). */
export function featureRowLines(dataset: PinnedDataset): string[] {
  const context = createMapContext({ reportAnalyzer: analyzeReport });
  const records: { name: string; record: PatientRecord }[] = [];
  if (dataset === 'hl7') {
    const files = readdirSync(HL7_OBSERVATIONS).filter((f) => f.endsWith('.json')).sort();
    const all = files.map((f) => readJson<Observation>(path.join(HL7_OBSERVATIONS, f)));
    all.forEach((o, i) => {
      const patient = subjectPatient(o);
      records.push({ name: files[i], record: record(patient, [o]) });
      records.push({ name: `${files[i]} value[x]`, record: record(patient, valueCarriers(o, patient)) });
    });
    records.push({ name: 'all', record: record({ resourceType: 'Patient', id: 'example' }, all) });
    EXTRA_VALUES.forEach((value, i) => {
      const patient: Patient = { resourceType: 'Patient', id: `extra-${i}`, birthDate: '1960-01-01', gender: 'male' };
      const carrier = { resourceType: 'Observation', id: `extra-${i}`, ...value } as unknown as Observation;
      records.push({ name: `extra value ${i}`, record: record(patient, valueCarriers(carrier, patient)) });
    });
  } else {
    for (const { file, record: r } of syntheaRecords()) records.push({ name: file, record: r });
  }
  const lines: string[] = [];
  for (const { name, record: r } of records) {
    for (const mapping of mappings()) {
      for (const asOf of AS_OFS[dataset]) {
        const row = mapPatient(mapping, r, new Date(asOf), context);
        lines.push(JSON.stringify({ name, mapping: mapping.id, asOf, row }, (_k, v: unknown) => (v instanceof Float32Array ? Array.from(v) : v)));
      }
    }
  }
  return lines;
}

export function rowsDigest(dataset: PinnedDataset): { rows: number; sha256: string } {
  const lines = featureRowLines(dataset);
  return { rows: lines.length, sha256: createHash('sha256').update(lines.join('\n')).digest('hex') };
}

export function readRowsPin(): Record<PinnedDataset, { rows: number; sha256: string }> {
  return JSON.parse(readFileSync(FEATURE_ROWS_PIN, 'utf8')) as Record<PinnedDataset, { rows: number; sha256: string }>;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (!process.argv.includes('--write')) {
    console.error('usage: node --import tsx test/pins/feature-rows.ts --write');
    process.exit(64);
  }
  const missing = Object.values(PINNED_DATASETS).filter((dir) => !existsSync(dir));
  if (missing.length) {
    console.error(`cannot pin without the shared datasets: ${missing.join(', ')} not found`);
    process.exit(66);
  }
  const pin = { hl7: rowsDigest('hl7'), synthea: rowsDigest('synthea') };
  writeFileSync(FEATURE_ROWS_PIN, JSON.stringify(pin, null, 2) + '\n');
  console.log(`wrote ${FEATURE_ROWS_PIN}: ${JSON.stringify(pin)}`);
}
