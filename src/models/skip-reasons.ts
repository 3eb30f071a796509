/**
 * Why a patient is not scored by a model: one list for intended use and applicability, counted per
 * model like exclusions (summary, --json lines, `features`). The feature engine's own reasons
 * (`too-few-observed-features`, `missing-required-feature:<id>`, a mapping gate's reason) are counted
 * beside these.
 */
export const SKIP_REASONS = [
  // intended use (evaluateIntendedUse), in the order they are checked
  'inactive-record', // Patient.active is false (e.g. a merged or duplicate record)
  'deceased', // deceasedBoolean true, or deceasedDateTime at or before as-of
  'age-unknown', // the card restricts age and the Patient has no usable birthDate
  'age-out-of-range', // completed years at as-of outside intendedPopulation.ageYears
  'sex-not-intended', // administrative gender not in intendedPopulation.sex
  'excluding-condition', // an active Condition matches an excluding criterion
  'missing-required-condition', // no active, confirmed Condition for a required criterion
  // applicability (assessApplicability), when the card's policy says `skip`
  'too-many-imputed',
  'input-out-of-range',
  'out-of-distribution',
] as const;

export type SkipReason = (typeof SKIP_REASONS)[number];
export type IntendedUseSkipReason = Extract<
  SkipReason,
  'inactive-record' | 'deceased' | 'age-unknown' | 'age-out-of-range' | 'sex-not-intended' | 'excluding-condition' | 'missing-required-condition'
>;
export type ApplicabilitySkipReason = Extract<SkipReason, 'too-many-imputed' | 'input-out-of-range' | 'out-of-distribution'>;
