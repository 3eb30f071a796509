import fhirpath from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4';
import { z } from 'zod';
import { completedYears } from '../../core/time.js';
import { plausible } from '../values.js';
import { defineSource } from './plugin.js';

/** `patient-age`: completed years at as-of, from Patient.birthDate. */

export const patientAgeSource = defineSource({
  kind: 'patient-age',
  schema: z.strictObject({ kind: z.literal('patient-age') }),
  reads: 'Patient',
  lookback: 'unused',
  aggregate: false,
  molarMass: false,
  oneHot: 'unused',
  neverMissing: () => false,
  validate(f, scope) {
    if (f.unit !== undefined && f.unit !== 'a') scope.add(['unit'], 'patient-age is in completed years: unit must be "a"');
  },
  compile: () => {
    const fn = fhirpath.compile('birthDate', r4);
    return { birthDate: (node: unknown) => (fn(node as object) as unknown[])[0] as string | undefined };
  },
  value(f, compiled, state) {
    const v = completedYears(compiled.birthDate(state.record.patient), state.asOf);
    return { value: v !== null && plausible(f, v) ? v : null, refs: new Set() };
  },
});
