import fhirpath from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4';
import { z } from 'zod';
import { defineSource } from './plugin.js';

/** `patient-sex`: Patient.gender, one-hot encoded over the feature's categories. */
export const patientSexSource = defineSource({
  kind: 'patient-sex',
  schema: z.strictObject({ kind: z.literal('patient-sex') }),
  reads: 'Patient',
  lookback: 'unused',
  aggregate: false,
  molarMass: false,
  oneHot: 'required',
  neverMissing: () => false,
  validate(f, scope) {
    if (!f.oneHot && f.unit !== undefined) scope.add(['unit'], 'coded (one-hot) features have no unit');
  },
  compile: () => {
    const fn = fhirpath.compile('gender', r4);
    return { gender: (node: unknown) => (fn(node as object) as unknown[])[0] };
  },
  value(_f, compiled, state) {
    const g = compiled.gender(state.record.patient);
    return typeof g === 'string' ? { value: 1, code: g, refs: new Set() } : { value: null, code: null, refs: new Set() };
  },
});
