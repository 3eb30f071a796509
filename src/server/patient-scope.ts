import { splitSearchOnComma } from '@medplum/core';
import type { OperationOutcome } from '@medplum/fhirtypes';

/**
 * Search rules many EHR vendors' FHIR APIs enforce (Epic, Oracle Health and others): a search over
 * clinical data must name exactly one patient, and Observation searches often a category as well. A
 * client built for these servers issues one search per patient; the embedded server can be told to
 * behave the same way so that strategy is tested against a refusal, not a simulation of one.
 */
export interface PatientScopeRules {
  /** Refuse searches on PATIENT_SCOPED_TYPES without exactly one patient/subject value. */
  requireSinglePatient?: boolean;
  /** Refuse Observation searches without a `category`. */
  requireObservationCategory?: boolean;
}

/** Types whose searches the single-patient rule applies to. */
export const PATIENT_SCOPED_TYPES: ReadonlySet<string> = new Set([
  'Observation',
  'DiagnosticReport',
  'ImagingStudy',
  'Condition',
  'Procedure',
  'ServiceRequest',
  'CarePlan',
]);

/** Marks the refusal so a client can tell it from other 400s (OperationOutcome.issue.details.coding). */
export const SINGLE_PATIENT_REQUIRED = { system: 'https://fhir-ml-adapter.dev/fhir/embedded-server', code: 'single-patient-required' } as const;
export const CATEGORY_REQUIRED = { system: 'https://fhir-ml-adapter.dev/fhir/embedded-server', code: 'category-required' } as const;

/** The OperationOutcome refusing the search, or undefined when the rules allow it. */
export function patientScopeProblem(resourceType: string, params: URLSearchParams, rules: PatientScopeRules): OperationOutcome | undefined {
  if (rules.requireSinglePatient && PATIENT_SCOPED_TYPES.has(resourceType)) {
    const problem = singlePatientProblem(params);
    if (problem) return refusal(SINGLE_PATIENT_REQUIRED, `${resourceType} search requires a single patient: ${problem}`, ['patient']);
  }
  if (rules.requireObservationCategory && resourceType === 'Observation') {
    const hasCategory = [...params.keys()].some((k) => k === 'category' || k.startsWith('category:'));
    if (!hasCategory) return refusal(CATEGORY_REQUIRED, 'Observation search requires a category (e.g. category=laboratory)', ['category']);
  }
  return undefined;
}

function singlePatientProblem(params: URLSearchParams): string | undefined {
  const values: string[] = [];
  for (const [key, value] of params) {
    const [name, modifier] = key.split(':', 2);
    if (name !== 'patient' && name !== 'subject') continue;
    if (modifier !== undefined && modifier !== 'Patient') return `the :${modifier} modifier cannot name a patient`;
    values.push(...splitSearchOnComma(value).filter((v) => v !== ''));
  }
  if (values.length === 0) return 'give one patient= (or subject=Patient/...) value';
  if (values.length > 1) return `${values.length} patient values were given; search one patient per request`;
  const value = values[0];
  // A bare id, Patient/<id>, or an absolute URL ending in Patient/<id>; subject=Group/... is not a patient.
  if (value.includes('/') && !/(^|\/)Patient\/[^/]+$/.test(value)) return 'the subject must be a Patient';
  return undefined;
}

function refusal(coding: { system: string; code: string }, text: string, expression: string[]): OperationOutcome {
  return {
    resourceType: 'OperationOutcome',
    issue: [{ severity: 'error', code: 'processing', details: { coding: [{ ...coding }], text }, expression }],
  };
}
