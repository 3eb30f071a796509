import type { Condition } from 'fhir/r4.js';
import { z } from 'zod';
import { conceptMatches, conditionCodeSchema, searchableCodes } from '../../clinical/codes.js';
import { conditionState } from '../../clinical/condition-state.js';
import { defineSource } from './plugin.js';

/**
 * `condition`: 1 when the patient has a Condition with one of the codes that is active at as-of (and
 * confirmed, unless `verification: any`), else 0; never missing. What "active at as-of" means is the one
 * rule of src/clinical/condition-state.ts (clinical and verification status, onset, abatement,
 * recordedDate), shared with the models' intended-use gate.
 *
 * Basis: the Conditions that make it 1. Every other Condition with one of the codes is excluded with its
 * reason: `status` (refuted or entered-in-error; inactive, resolved, in remission or abated at as-of;
 * only suspected when a confirmed one is asked for), `after-as-of` (recorded or with onset after as-of).
 * Codes may carry `descendants: true` for ICD-10 and ICD-10-CM (E11 matches E11.9); every Condition of
 * the patients is then fetched, as a token search cannot match by prefix.
 */

const schema = z.strictObject({
  kind: z.literal('condition'),
  codes: z.array(conditionCodeSchema).min(1),
  /** `confirmed` (default): unconfirmed, provisional and differential diagnoses do not count; `any`: they do. */
  verification: z.enum(['confirmed', 'any']).default('confirmed'),
});

export const conditionSource = defineSource<typeof schema, z.output<typeof schema>['codes'], Condition>({
  kind: 'condition',
  schema,
  reads: 'Condition',
  lookback: 'unused',
  aggregate: false,
  molarMass: false,
  oneHot: 'unused',
  searchCodes: (s) => searchableCodes(s.codes),
  neverMissing: () => true,
  validate(f, scope) {
    if (f.unit !== undefined && f.unit !== '1') scope.add(['unit'], 'a condition feature is 1 or 0: unit must be "1" or absent');
  },
  compile: (f) => f.source.codes,
  considers: (codes, c) => conceptMatches(c.code, codes),
  value(f, codes, { resources, record, asOf, log }) {
    const refs = new Set<string>();
    for (const { resource: c, ref } of resources) {
      if (!conceptMatches(c.code, codes)) continue;
      const state = conditionState(c, asOf, { birthDate: record.patient.birthDate });
      if (state.excluded) {
        log.add(ref, state.excluded.reason, f.id, state.excluded.detail);
        continue;
      }
      if (!state.active) {
        const why = state.inactiveBecause ?? 'inactive';
        log.add(ref, why === 'onset-after-as-of' ? 'after-as-of' : 'status', f.id, why === 'onset-after-as-of' ? 'onset after as-of' : `not active at as-of (${why})`);
        continue;
      }
      if (f.source.verification === 'confirmed' && state.verification !== 'confirmed') {
        log.add(ref, 'status', f.id, 'only suspected (unconfirmed, provisional or differential)');
        continue;
      }
      refs.add(ref);
    }
    return { value: refs.size ? 1 : 0, refs };
  },
});
