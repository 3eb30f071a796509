import type { Condition, FhirResource, Observation, Patient, ServiceRequest } from 'fhir/r4.js';
import { daysBefore, DEMO_AS_OF, demoPatientId, diabetesCondition, obs, quantity, SNOMED } from './seed.js';

/**
 * Demo patients that show what the adapter refuses, flags and leaves out, beside the data set's 442:
 * - the intended-use gate: a child with type 1 diabetes, a patient who died before as-of, a patient with
 *   prediabetes only (diabetes-progression was trained on people with diabetes, aged 19 to 79);
 * - the mapping: BMI derived from body weight and an older height when the EHR stored no BMI;
 * - the applicability policy: a patient with only a glucose besides the vitals (5 of 10 inputs imputed:
 *   written as preliminary) and a patient whose glucose in mmol/L arrived labelled mg/dL (flagged out of
 *   distribution: not written);
 * - behaviour-aware proposals: two of the data set's patients already have care the proposal would
 *   repeat (an HbA1c result 40 days ago, an active dietitian referral), so their plans leave it out.
 * None of this changes the score of a data-set patient.
 */

export interface ShowcasePatient {
  id: string;
  /** What the patient shows, for the demo's output. */
  story: string;
}

const CLINICAL = 'http://terminology.hl7.org/CodeSystem/condition-clinical';
const VERIFICATION = 'http://terminology.hl7.org/CodeSystem/condition-ver-status';

/** Patients of the data set that get existing care (index into the rows). */
export const RECENT_HBA1C_INDEX = 0;
export const ACTIVE_REFERRAL_INDEX = 2;

export const SHOWCASE: ShowcasePatient[] = [
  { id: demoPatientId(RECENT_HBA1C_INDEX), story: 'high risk; an HbA1c 40 days ago, so no new HbA1c is proposed' },
  { id: demoPatientId(ACTIVE_REFERRAL_INDEX), story: 'high risk; already referred to a dietitian, so no new referral is proposed' },
  { id: 'demo-no-bmi', story: 'no BMI recorded: derived from body weight and a height measured 14 months earlier' },
  { id: 'demo-few-labs', story: 'vitals and a glucose only: 5 of 10 inputs imputed, written as preliminary' },
  { id: 'demo-unit-error', story: 'glucose in mmol/L sent as mg/dL: flagged out of distribution, not written' },
  { id: 'demo-child', story: '12 years old with type 1 diabetes: outside the model\'s 19-79 years' },
  { id: 'demo-deceased', story: 'died 60 days before as-of: never scored' },
  { id: 'demo-prediabetes', story: 'prediabetes only: the model is for people with diabetes' },
];

function patient(id: string, ageYears: number, gender: Patient['gender'], asOf: Date, extra: Partial<Patient> = {}): Patient {
  const birth = new Date(asOf.getTime() - 100 * 86_400_000);
  birth.setUTCFullYear(birth.getUTCFullYear() - ageYears);
  return { resourceType: 'Patient', id, name: [{ family: id.replace(/^demo-/, 'Showcase-'), given: ['Patient'] }], gender, birthDate: birth.toISOString().slice(0, 10), ...extra };
}

/** Vitals and labs in the usual units (mg/dL); `glucose` may carry another unit. */
function measurements(
  id: string,
  asOf: Date,
  v: { bmi?: number; sbp: number; dbp: number; tc?: number; ldl?: number; hdl?: number; tg?: number; glucose: number; glucoseUnit?: string },
): Observation[] {
  const vitalsAt = daysBefore(asOf, 12);
  const labsAt = daysBefore(asOf, 30, 7);
  const out: Observation[] = [];
  if (v.bmi !== undefined) out.push(obs(`${id}-bmi`, id, '39156-5', 'Body mass index (BMI) [Ratio]', 'vital-signs', vitalsAt, { valueQuantity: quantity(v.bmi, 'kg/m2') }));
  out.push(obs(`${id}-sbp`, id, '8480-6', 'Systolic blood pressure', 'vital-signs', vitalsAt, { valueQuantity: quantity(v.sbp, 'mm[Hg]') }));
  out.push(obs(`${id}-dbp`, id, '8462-4', 'Diastolic blood pressure', 'vital-signs', vitalsAt, { valueQuantity: quantity(v.dbp, 'mm[Hg]') }));
  if (v.tc !== undefined) out.push(obs(`${id}-tc`, id, '2093-3', 'Cholesterol [Mass/volume] in Serum or Plasma', 'laboratory', labsAt, { valueQuantity: quantity(v.tc, 'mg/dL') }));
  if (v.ldl !== undefined) out.push(obs(`${id}-ldl`, id, '18262-6', 'Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay', 'laboratory', labsAt, { valueQuantity: quantity(v.ldl, 'mg/dL') }));
  if (v.hdl !== undefined) out.push(obs(`${id}-hdl`, id, '2085-9', 'Cholesterol in HDL [Mass/volume] in Serum or Plasma', 'laboratory', labsAt, { valueQuantity: quantity(v.hdl, 'mg/dL') }));
  if (v.tg !== undefined) out.push(obs(`${id}-tg`, id, '2571-8', 'Triglyceride [Mass/volume] in Serum or Plasma', 'laboratory', labsAt, { valueQuantity: quantity(v.tg, 'mg/dL') }));
  out.push(obs(`${id}-glu`, id, '2339-0', 'Glucose [Mass/volume] in Blood', 'laboratory', labsAt, { valueQuantity: quantity(v.glucose, v.glucoseUnit ?? 'mg/dL') }));
  return out;
}

const FULL_LABS = { sbp: 138, dbp: 84, tc: 196, ldl: 118, hdl: 46, tg: 160, glucose: 104 };

function condition(id: string, patientId: string, code: string, display: string, asOf: Date, onsetDaysBefore: number): Condition {
  const onset = daysBefore(asOf, onsetDaysBefore, 10);
  return {
    resourceType: 'Condition',
    id,
    clinicalStatus: { coding: [{ system: CLINICAL, code: 'active' }] },
    verificationStatus: { coding: [{ system: VERIFICATION, code: 'confirmed' }] },
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-category', code: 'problem-list-item' }] }],
    code: { coding: [{ system: SNOMED, code, display }], text: display },
    subject: { reference: `Patient/${patientId}` },
    onsetDateTime: onset,
    recordedDate: onset,
  };
}

/** The showcase patients' resources, one list per patient. */
export function buildShowcasePatients(asOf: Date = DEMO_AS_OF): FhirResource[][] {
  const child = 'demo-child';
  const deceased = 'demo-deceased';
  const prediabetes = 'demo-prediabetes';
  const noBmi = 'demo-no-bmi';
  const fewLabs = 'demo-few-labs';
  const unitError = 'demo-unit-error';
  return [
    [
      patient(child, 12, 'female', asOf),
      condition(`${child}-dm`, child, '46635009', 'Diabetes mellitus type 1', asOf, 900),
      ...measurements(child, asOf, { bmi: 19.5, sbp: 108, dbp: 66, glucose: 142 }),
    ],
    [
      patient(deceased, 71, 'male', asOf, { deceasedDateTime: daysBefore(asOf, 60, 3) }),
      diabetesCondition(deceased, 7, asOf),
      ...measurements(deceased, new Date(asOf.getTime() - 90 * 86_400_000), { bmi: 29.1, ...FULL_LABS }),
    ],
    [
      patient(prediabetes, 54, 'female', asOf),
      condition(`${prediabetes}-predm`, prediabetes, '15777000', 'Prediabetes', asOf, 500),
      ...measurements(prediabetes, asOf, { bmi: 31.2, ...FULL_LABS, glucose: 112 }),
    ],
    [
      patient(noBmi, 58, 'male', asOf),
      diabetesCondition(noBmi, 11, asOf),
      // Weight in pounds, height in centimetres 14 months earlier, no BMI: the mapping derives 32.8 kg/m2.
      obs(`${noBmi}-weight`, noBmi, '29463-7', 'Body weight', 'vital-signs', daysBefore(asOf, 12), { valueQuantity: quantity(229.28, '[lb_av]') }),
      obs(`${noBmi}-height`, noBmi, '8302-2', 'Body height', 'vital-signs', daysBefore(asOf, 425), { valueQuantity: quantity(178, 'cm') }),
      ...measurements(noBmi, asOf, { ...FULL_LABS, ldl: 124, glucose: 118 }),
    ],
    [patient(fewLabs, 63, 'female', asOf), diabetesCondition(fewLabs, 13, asOf), ...measurements(fewLabs, asOf, { bmi: 27.4, sbp: 132, dbp: 80, glucose: 121 })],
    [
      patient(unitError, 66, 'male', asOf),
      diabetesCondition(unitError, 17, asOf),
      // 11.4 mmol/L is 205 mg/dL; the interface sent the number with the unit mg/dL.
      ...measurements(unitError, asOf, { bmi: 28.3, ...FULL_LABS, glucose: 11.4 }),
    ],
  ];
}

/** Existing care of two data-set patients, by patient id: what their proposals leave out. */
export function buildShowcaseCare(asOf: Date = DEMO_AS_OF): Map<string, FhirResource[]> {
  const hba1cPatient = demoPatientId(RECENT_HBA1C_INDEX);
  const referralPatient = demoPatientId(ACTIVE_REFERRAL_INDEX);
  const hba1c = obs(`${hba1cPatient}-hba1c`, hba1cPatient, '4548-4', 'Hemoglobin A1c/Hemoglobin.total in Blood', 'laboratory', daysBefore(asOf, 40, 8), {
    valueQuantity: quantity(7.4, '%'),
  });
  const referral: ServiceRequest = {
    resourceType: 'ServiceRequest',
    id: `${referralPatient}-dietitian`,
    status: 'active',
    intent: 'order',
    code: { coding: [{ system: SNOMED, code: '103699006', display: 'Referral to dietitian' }], text: 'Dietitian referral' },
    subject: { reference: `Patient/${referralPatient}` },
    authoredOn: daysBefore(asOf, 21, 11),
  };
  return new Map<string, FhirResource[]>([
    [hba1cPatient, [hba1c]],
    [referralPatient, [referral]],
  ]);
}

