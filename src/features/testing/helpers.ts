import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Bundle, Condition, DiagnosticReport, FhirResource, ImagingStudy, Observation, Patient } from 'fhir/r4.js';
import { sharedDatasetsPath } from '../../config/index.js';
import type { FeatureRow, PatientRecord } from '../../core/types.js';

/** Test helpers for src/features (excluded from the build). */

/** The shared public datasets (FHIR_ML_SHARED_DATASETS, else ../shared/datasets beside the repository). */
export const DATASETS = sharedDatasetsPath();
export const HL7_OBSERVATIONS = path.join(DATASETS, 'fhir-r4-examples/observation-examples');
export const SYNTHEA = path.join(DATASETS, 'synthea-r4');

/** Whether a shared dataset folder exists; logs why tests are skipped when it does not. */
export function haveDataset(dir: string): boolean {
  if (existsSync(dir)) return true;
  // Straight to stderr: jest hides console output of a suite whose tests are all skipped.
  process.stderr.write(`skipping: shared dataset ${dir} not found (tests using ../shared/datasets run in CI)\n`);
  return false;
}

export const LOINC = 'http://loinc.org';
export const UCUM = 'http://unitsofmeasure.org';

export function patient(id = 'p1', birthDate = '1970-06-15', gender: Patient['gender'] = 'male'): Patient {
  return { resourceType: 'Patient', id, birthDate, gender };
}

export function record(p: Patient, observations: Observation[] = [], extra: Partial<PatientRecord> = {}): PatientRecord {
  return { patient: p, observations, diagnosticReports: [], imagingStudies: [], conditions: [], ...extra };
}

/** A numeric Observation with a UCUM quantity (pass `unit: undefined` for none). */
export function obs(
  id: string,
  code: string,
  value: number,
  unit: string | undefined,
  effective: string,
  extra: Partial<Observation> = {},
  subject = 'Patient/p1',
): Observation {
  return {
    resourceType: 'Observation',
    id,
    status: 'final',
    code: { coding: [{ system: LOINC, code }] },
    subject: { reference: subject },
    effectiveDateTime: effective,
    valueQuantity: unit === undefined ? { value } : { value, system: UCUM, code: unit, unit },
    ...extra,
  };
}

/** A blood pressure panel with systolic and diastolic components (either may be null: left out). */
export function bpPanel(id: string, sys: number | null, dia: number | null, effective: string, panelCode = '85354-9', extra: Partial<Observation> = {}): Observation {
  const comp = (code: string, v: number) => ({
    code: { coding: [{ system: LOINC, code }] },
    valueQuantity: { value: v, system: UCUM, code: 'mm[Hg]', unit: 'mmHg' },
  });
  return {
    resourceType: 'Observation',
    id,
    status: 'final',
    code: { coding: [{ system: LOINC, code: panelCode }] },
    subject: { reference: 'Patient/p1' },
    effectiveDateTime: effective,
    component: [...(sys === null ? [] : [comp('8480-6', sys)]), ...(dia === null ? [] : [comp('8462-4', dia)])],
    ...extra,
  };
}

export function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

/** One PatientRecord per Synthea bundle (subjects are `urn:uuid:<patient id>`). */
export function syntheaRecords(): { file: string; record: PatientRecord }[] {
  return readdirSync(SYNTHEA)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .flatMap((f) => {
      const b = readJson<Bundle>(path.join(SYNTHEA, f));
      const res = (b.entry ?? []).map((e) => e.resource).filter((r): r is FhirResource => !!r);
      const p = res.find((r): r is Patient => r.resourceType === 'Patient');
      if (!p) return [];
      return [
        {
          file: f,
          record: {
            patient: p,
            observations: res.filter((r): r is Observation => r.resourceType === 'Observation'),
            diagnosticReports: res.filter((r): r is DiagnosticReport => r.resourceType === 'DiagnosticReport'),
            imagingStudies: res.filter((r): r is ImagingStudy => r.resourceType === 'ImagingStudy'),
            conditions: res.filter((r): r is Condition => r.resourceType === 'Condition'),
          },
        },
      ];
    });
}

/** Asserts the count identity and its definition; returns the row for chaining. */
export function expectReconciled(row: FeatureRow): FeatureRow {
  const excludedRefs = new Set(row.exclusions.map((e) => e.reference));
  const basis = new Set(row.basis);
  expect(basis.size).toBe(row.basis.length);
  expect(row.counts.used).toBe(basis.size);
  expect(row.counts.excluded).toBe(excludedRefs.size);
  expect(row.counts.fetched).toBe(row.counts.used + row.counts.excluded);
  for (const r of excludedRefs) expect(basis.has(r)).toBe(false);
  return row;
}

/** Column value by id. */
export function col(row: FeatureRow, id: string): number {
  const i = row.columns.indexOf(id);
  if (i < 0) throw new Error(`no column ${id}`);
  return row.values[i];
}

export function reasonsOf(row: FeatureRow, ref: string): string[] {
  return row.exclusions.filter((e) => e.reference === ref).map((e) => e.reason);
}
