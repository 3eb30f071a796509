import type { Bundle, BundleEntry, Condition, FhirResource, Observation, Patient } from 'fhir/r4.js';
import type { DiabetesRow } from './diabetes-rows.js';

/**
 * Demo patients generated from the diabetes rows, shaped as real EHRs send them: a confirmed, active
 * type 2 diabetes Condition (every patient of the data set had diabetes: the model's intended use
 * requires it), LOINC-coded Observations with UCUM units and realistic dates, a share of labs in mmol/L instead of mg/dL,
 * blood pressure as a panel with systolic/diastolic components (or as two separate Observations),
 * and a few records of the kinds a sync must exclude (entered-in-error, comparator, dataAbsentReason,
 * implausible, older superseded values). The latest valid value of every feature is always exactly the
 * dataset's, so a test can compare each written probability with the model evaluated on the row.
 */

export const DEMO_AS_OF = new Date('2026-01-01T00:00:00.000Z');
export const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';

/** Molar masses (g/mol) used when a lab reports in mmol/L. */
export const MOLAR_MASS = { glucose: 180.156, cholesterol: 386.654 } as const;

export function demoPatientId(index: number): string {
  return `demo-${String(index + 1).padStart(4, '0')}`;
}

/** Which variants patient `index` gets; exported so tests can pick patients of each kind. */
export function demoVariant(index: number) {
  return {
    cholesterolInMmol: index % 4 === 1,
    glucoseInMmol: index % 5 === 2,
    bloodPressureAsPanel: index % 3 !== 0,
    withNoise: index % 7 === 3,
  };
}

export function daysBefore(asOf: Date, days: number, hour = 9): string {
  const d = new Date(asOf.getTime() - days * 86_400_000);
  d.setUTCHours(hour, 15, 0, 0);
  return d.toISOString();
}

export function quantity(value: number, unit: string) {
  return { value, unit, system: UCUM, code: unit };
}

export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export function obs(
  id: string,
  patientId: string,
  code: string,
  display: string,
  category: 'laboratory' | 'vital-signs',
  effective: string,
  extra: Partial<Observation>,
): Observation {
  return {
    resourceType: 'Observation',
    id,
    status: 'final',
    category: [
      {
        coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: category }],
      },
    ],
    code: { coding: [{ system: LOINC, code, display }], text: display },
    subject: { reference: `Patient/${patientId}` },
    effectiveDateTime: effective,
    issued: effective,
    ...extra,
  };
}

/** Systolic/diastolic whose mean arterial pressure (sys + 2*dia)/3 is exactly the row's average BP. */
export function bloodPressureFor(bp: number, index: number): { systolic: number; diastolic: number } {
  const pulsePressure = 30 + 3 * (index % 11); // 30..60 mmHg, a multiple of 3 keeps integer BPs integer
  return { systolic: round(bp + (2 * pulsePressure) / 3, 4), diastolic: round(bp - pulsePressure / 3, 4) };
}

export function buildDemoPatient(row: DiabetesRow, index: number, asOf: Date = DEMO_AS_OF): FhirResource[] {
  const id = demoPatientId(index);
  const v = demoVariant(index);
  // Born age years + 40..340 days before as-of: completed years at as-of equal the row's age.
  const birth = new Date(asOf.getTime() - (40 + (index * 37) % 300) * 86_400_000);
  birth.setUTCFullYear(birth.getUTCFullYear() - row.age);
  const patient: Patient = {
    resourceType: 'Patient',
    id,
    identifier: [{ system: 'https://fhir-ml-adapter.dev/demo/mrn', value: `MRN${100000 + index}` }],
    name: [{ family: `Demo${index + 1}`, given: ['Patient'] }],
    gender: row.sex === 2 ? 'male' : 'female',
    birthDate: birth.toISOString().slice(0, 10),
  };
  const out: FhirResource[] = [patient, diabetesCondition(id, index, asOf)];
  const vitalsAt = daysBefore(asOf, 10 + (index % 50));
  const labsAt = daysBefore(asOf, 20 + (index % 150), 7);

  out.push(obs(`${id}-bmi`, id, '39156-5', 'Body mass index (BMI) [Ratio]', 'vital-signs', vitalsAt, { valueQuantity: quantity(row.bmi, 'kg/m2') }));

  const bp = bloodPressureFor(row.bp, index);
  if (v.bloodPressureAsPanel) {
    out.push(
      obs(`${id}-bp`, id, '85354-9', 'Blood pressure panel with all children optional', 'vital-signs', vitalsAt, {
        component: [
          { code: { coding: [{ system: LOINC, code: '8480-6', display: 'Systolic blood pressure' }] }, valueQuantity: quantity(bp.systolic, 'mm[Hg]') },
          { code: { coding: [{ system: LOINC, code: '8462-4', display: 'Diastolic blood pressure' }] }, valueQuantity: quantity(bp.diastolic, 'mm[Hg]') },
        ],
      }),
    );
  } else {
    out.push(obs(`${id}-sbp`, id, '8480-6', 'Systolic blood pressure', 'vital-signs', vitalsAt, { valueQuantity: quantity(bp.systolic, 'mm[Hg]') }));
    out.push(obs(`${id}-dbp`, id, '8462-4', 'Diastolic blood pressure', 'vital-signs', vitalsAt, { valueQuantity: quantity(bp.diastolic, 'mm[Hg]') }));
  }

  if (v.cholesterolInMmol) {
    out.push(obs(`${id}-tc`, id, '14647-2', 'Cholesterol [Moles/volume] in Serum or Plasma', 'laboratory', labsAt, {
      valueQuantity: quantity(round(row.tc / (MOLAR_MASS.cholesterol / 10), 6), 'mmol/L'),
    }));
  } else {
    out.push(obs(`${id}-tc`, id, '2093-3', 'Cholesterol [Mass/volume] in Serum or Plasma', 'laboratory', labsAt, { valueQuantity: quantity(row.tc, 'mg/dL') }));
  }
  out.push(obs(`${id}-ldl`, id, '18262-6', 'Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay', 'laboratory', labsAt, { valueQuantity: quantity(row.ldl, 'mg/dL') }));
  out.push(obs(`${id}-hdl`, id, '2085-9', 'Cholesterol in HDL [Mass/volume] in Serum or Plasma', 'laboratory', labsAt, { valueQuantity: quantity(row.hdl, 'mg/dL') }));
  out.push(obs(`${id}-tg`, id, '2571-8', 'Triglyceride [Mass/volume] in Serum or Plasma', 'laboratory', labsAt, {
    valueQuantity: quantity(round(Math.exp(row.ltg), 6), 'mg/dL'),
  }));
  if (v.glucoseInMmol) {
    out.push(obs(`${id}-glu`, id, '15074-8', 'Glucose [Moles/volume] in Blood', 'laboratory', labsAt, {
      valueQuantity: quantity(round(row.glu / (MOLAR_MASS.glucose / 10), 6), 'mmol/L'),
    }));
  } else {
    out.push(obs(`${id}-glu`, id, '2339-0', 'Glucose [Mass/volume] in Blood', 'laboratory', labsAt, { valueQuantity: quantity(row.glu, 'mg/dL') }));
  }

  if (v.withNoise) out.push(...noiseFor(id, row, asOf));
  return out;
}

export const SNOMED = 'http://snomed.info/sct';
const ICD10CM = 'http://hl7.org/fhir/sid/icd-10-cm';

/** The patient's type 2 diabetes, diagnosed 2 to 12 years before as-of, coded in SNOMED CT and ICD-10-CM as problem lists are. */
export function diabetesCondition(patientId: string, index: number, asOf: Date = DEMO_AS_OF, extra: Partial<Condition> = {}): Condition {
  const onset = daysBefore(asOf, 730 + ((index * 131) % 3650), 10);
  return {
    resourceType: 'Condition',
    id: `${patientId}-dm`,
    clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] },
    verificationStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-ver-status', code: 'confirmed' }] },
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-category', code: 'problem-list-item' }] }],
    code: {
      coding: [
        { system: SNOMED, code: '44054006', display: 'Diabetes mellitus type 2' },
        { system: ICD10CM, code: 'E11.9', display: 'Type 2 diabetes mellitus without complications' },
      ],
      text: 'Type 2 diabetes mellitus',
    },
    subject: { reference: `Patient/${patientId}` },
    onsetDateTime: onset,
    recordedDate: onset,
    ...extra,
  };
}

/** Records a sync must exclude with a reason; none of them may change the score. */
function noiseFor(id: string, row: DiabetesRow, asOf: Date): Observation[] {
  const later = daysBefore(asOf, 2, 11);
  const older = daysBefore(asOf, 400, 8);
  return [
    // An older glucose that `latest` supersedes.
    obs(`${id}-glu-old`, id, '2339-0', 'Glucose [Mass/volume] in Blood', 'laboratory', older, { valueQuantity: quantity(row.glu + 12, 'mg/dL') }),
    // Entered in error after the real one.
    obs(`${id}-glu-err`, id, '2339-0', 'Glucose [Mass/volume] in Blood', 'laboratory', later, {
      status: 'entered-in-error',
      valueQuantity: quantity(row.glu * 3, 'mg/dL'),
    }),
    // A censored HDL: the true value is unknown.
    obs(`${id}-hdl-cmp`, id, '2085-9', 'Cholesterol in HDL [Mass/volume] in Serum or Plasma', 'laboratory', later, {
      valueQuantity: { ...quantity(20, 'mg/dL'), comparator: '<' },
    }),
    // No value: the specimen was hemolysed.
    obs(`${id}-ldl-absent`, id, '18262-6', 'Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay', 'laboratory', later, {
      dataAbsentReason: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/data-absent-reason', code: 'error' }], text: 'Specimen hemolysed' },
    }),
    // A transcription error (mg/dL value typed as kg/m2 BMI).
    obs(`${id}-bmi-bad`, id, '39156-5', 'Body mass index (BMI) [Ratio]', 'vital-signs', later, { valueQuantity: quantity(row.bmi * 10, 'kg/m2') }),
    // A glucose whose unit is a mass, not a concentration: no conversion to mg/dL exists.
    obs(`${id}-glu-unit`, id, '2339-0', 'Glucose [Mass/volume] in Blood', 'laboratory', later, { valueQuantity: quantity(row.glu, 'mg') }),
    // A narrative result where a number is needed.
    obs(`${id}-tg-text`, id, '2571-8', 'Triglyceride [Mass/volume] in Serum or Plasma', 'laboratory', later, { valueString: 'see comment' }),
  ];
}

/** A transaction Bundle that PUTs the given resources (client-assigned ids make seeding idempotent). */
export function putTransaction(resources: FhirResource[]): Bundle {
  const entry: BundleEntry[] = resources.map((resource) => ({
    fullUrl: `${resource.resourceType}/${resource.id}`,
    resource,
    request: { method: 'PUT', url: `${resource.resourceType}/${resource.id}` },
  }));
  return { resourceType: 'Bundle', type: 'transaction', entry };
}
