// Test fixtures for CarePlan proposals.
import type { CarePlan, Observation, Procedure, ServiceRequest } from 'fhir/r4.js';
import type { QualitativeRisk } from '../../../core/types.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../../identifiers.js';
import type { ApplyOptions } from '../apply.js';
import type { AssessmentContext } from '../context.js';

export const AS_OF = new Date('2025-06-30T00:00:00Z');
export const DEVICE = 'Device/dm-model';

export function diabetesContext(extra: Partial<AssessmentContext> = {}, features: AssessmentContext['features'] = {}): AssessmentContext {
  return {
    modelId: 'diabetes-progression',
    modelVersion: '1.0.0',
    asOf: AS_OF.toISOString(),
    band: 'high',
    probability: 0.74,
    outputs: {},
    features: {
      age: { value: 61, unit: 'a' },
      bmi: { value: 32.1, unit: 'kg/m2' },
      ldl: { value: 171, unit: 'mg/dL' },
      map: { value: 110, unit: 'mm[Hg]' },
      ...features,
    },
    imputed: [],
    findings: [],
    ...extra,
  };
}

export function curb65Context(score: number): AssessmentContext {
  const probability = [0.007, 0.032, 0.13, 0.17, 0.415, 0.57][score];
  const band: QualitativeRisk = score <= 1 ? 'low' : score === 2 ? 'moderate' : 'high';
  return { modelId: 'curb65', modelVersion: '1.0.0', asOf: AS_OF.toISOString(), band, probability, outputs: { score }, features: {}, imputed: [], findings: [] };
}

export function options(extra: Partial<ApplyOptions> = {}): ApplyOptions {
  return {
    patientId: 'p1',
    asOf: AS_OF,
    deviceReference: DEVICE,
    riskAssessmentReference: 'urn:uuid:0b6f7a52-1d2e-5a3b-8c4d-5e6f7a8b9c0d',
    identifierSystem: DEFAULT_IDENTIFIER_SYSTEM,
    addresses: ['Condition/dm'],
    ...extra,
  };
}

const SCT = 'http://snomed.info/sct';
export const hba1cResult = (id: string, effective: string, status: Observation['status'] = 'final'): Observation => ({
  resourceType: 'Observation',
  id,
  status,
  code: { coding: [{ system: 'http://loinc.org', code: '4548-4' }] },
  subject: { reference: 'Patient/p1' },
  effectiveDateTime: effective,
  valueQuantity: { value: 7.1, unit: '%', system: 'http://unitsofmeasure.org', code: '%' },
});
export const serviceRequest = (id: string, code: string, status: ServiceRequest['status'] = 'active'): ServiceRequest => ({
  resourceType: 'ServiceRequest',
  id,
  status,
  intent: 'order',
  code: { coding: [{ system: SCT, code }] },
  subject: { reference: 'Patient/p1' },
  authoredOn: '2025-05-01',
});
export const procedure = (id: string, code: string, performed: string, status: Procedure['status'] = 'completed'): Procedure => ({
  resourceType: 'Procedure',
  id,
  status,
  code: { coding: [{ system: SCT, code }] },
  subject: { reference: 'Patient/p1' },
  performedDateTime: performed,
});
export const activeCarePlan = (id: string, code: string, activityStatus = 'in-progress', status: CarePlan['status'] = 'active'): CarePlan => ({
  resourceType: 'CarePlan',
  id,
  status,
  intent: 'plan',
  subject: { reference: 'Patient/p1' },
  activity: [{ detail: { status: activityStatus as 'in-progress', code: { coding: [{ system: SCT, code }] } } }],
});
