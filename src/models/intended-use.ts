import type { Condition, Patient } from 'fhir/r4.js';
import { conditionState, type ConditionState } from '../clinical/condition-state.js';
import { AdapterError } from '../core/errors.js';
import type { Exclusion } from '../core/types.js';
import { completedYears, parseFhirDateTime } from '../core/time.js';
import type { ConditionCode, ConditionCriterion, IntendedPopulation, ModelCard } from './model-card.js';
import type { IntendedUseSkipReason } from './skip-reasons.js';
import { codeMatches, valueSetCodes, type ValueSetIndex } from './value-sets.js';

/**
 * The intended-use gate: may this model score this patient at as-of? Pure: the same card, patient,
 * Conditions and as-of always give the same answer. Checks, in this order (the first failing one is the
 * skip reason): the record is active (`Patient.active` is not false), the patient is alive at as-of, age
 * and sex are in the card's population, no excluding condition is active, every required condition is
 * active and confirmed. A card without `intendedPopulation` gets the first two checks only.
 *
 * Conditions follow src/clinical/condition-state.ts. A required condition must be confirmed (a
 * provisional or differential diagnosis does not admit a patient); an excluding condition refuses the
 * patient even when only suspected. Conditions of another subject are ignored and reported (`no-subject`).
 */

export interface IntendedUseInput {
  patient: Patient;
  /** The patient's Conditions as pulled (any status; this function decides which count). */
  conditions: Condition[];
  asOf: Date;
}

export interface CriterionEvidence {
  criterionId: string;
  /** `Condition/<id>` of the Conditions that meet the criterion. */
  references: string[];
}

interface Common {
  /** Completed years at as-of, when the birthDate allows. */
  ageYears?: number;
  /** Conditions not used at all (entered-in-error, refuted, recorded after as-of, another subject). */
  conditionExclusions: Exclusion[];
}

export type IntendedUseResult =
  | (Common & {
      eligible: true;
      /** Per required criterion, the Conditions that met it: the RiskAssessment basis and CarePlan.addresses. */
      evidence: CriterionEvidence[];
    })
  | (Common & { eligible: false; reason: IntendedUseSkipReason; detail: string });

interface CompiledCriterion {
  id: string;
  codes: ConditionCode[];
}
interface CompiledPopulation {
  population: IntendedPopulation;
  required: CompiledCriterion[];
  excluding: CompiledCriterion[];
}

const compiled = new WeakMap<object, { valueSets: ValueSetIndex | undefined; value: CompiledPopulation }>();

function compileCriterion(card: Pick<ModelCard, 'id'>, c: ConditionCriterion, valueSets: ValueSetIndex | undefined): CompiledCriterion {
  const codes = [...c.codes];
  if (c.valueSet) {
    const vs = valueSets?.get(c.valueSet);
    if (!vs)
      throw new AdapterError(
        'model-invalid',
        `model ${card.id}: intendedPopulation criterion ${c.id} names value set ${c.valueSet}, which is not in the loaded value sets (mappings/valuesets)`,
      );
    codes.push(...valueSetCodes(vs));
  }
  return { id: c.id, codes };
}

/**
 * Resolves the card's criteria (value sets included) once per card object; throws `model-invalid` naming
 * the criterion when a value set is missing. Call at model load to fail before any patient.
 */
export function compileIntendedUse(card: Pick<ModelCard, 'id' | 'intendedPopulation'>, valueSets?: ValueSetIndex): CompiledPopulation | undefined {
  const population = card.intendedPopulation;
  if (!population) return undefined;
  const hit = compiled.get(population);
  if (hit && hit.valueSets === valueSets) return hit.value;
  const value: CompiledPopulation = {
    population,
    required: population.requiredConditions.map((c) => compileCriterion(card, c, valueSets)),
    excluding: population.excludingConditions.map((c) => compileCriterion(card, c, valueSets)),
  };
  compiled.set(population, { valueSets, value });
  return value;
}

/** Whether a Condition's subject is this Patient (relative or absolute reference). */
function sameSubject(condition: Condition, patientId: string | undefined): boolean {
  const ref = condition.subject?.reference;
  if (!ref || !patientId) return false;
  return ref === `Patient/${patientId}` || ref.endsWith(`/Patient/${patientId}`);
}

function matches(condition: Condition, criterion: CompiledCriterion): boolean {
  const codings = condition.code?.coding ?? [];
  return codings.some((coding) => criterion.codes.some((code) => codeMatches(coding, code)));
}

/** Whether the patient is dead at as-of: deceasedBoolean true, or a deceasedDateTime at or before as-of. */
export function deceasedAt(patient: Patient, asOf: Date): { deceased: boolean; detail?: string } {
  if (patient.deceasedBoolean === true) return { deceased: true, detail: 'deceasedBoolean true' };
  if (patient.deceasedDateTime !== undefined) {
    const when = parseFhirDateTime(patient.deceasedDateTime);
    // An unreadable date of death still says the patient died: never score on a guess.
    if (!when) return { deceased: true, detail: 'deceasedDateTime present but not a valid dateTime' };
    // A partial date counts from its first instant: died "in 2016" may be before an as-of in 2016.
    if (when.start <= asOf.getTime()) return { deceased: true, detail: 'deceasedDateTime at or before as-of' };
  }
  return { deceased: false };
}

/** Evaluates the card's intended use for one patient (see the module comment). */
export function evaluateIntendedUse(
  card: Pick<ModelCard, 'id' | 'intendedPopulation'>,
  input: IntendedUseInput,
  valueSets?: ValueSetIndex,
): IntendedUseResult {
  const { patient, asOf } = input;
  const compiledPopulation = compileIntendedUse(card, valueSets);
  const ageYears = completedYears(patient.birthDate, asOf) ?? undefined;
  const conditionExclusions: Exclusion[] = [];
  const skip = (reason: IntendedUseSkipReason, detail: string): IntendedUseResult => ({
    eligible: false,
    reason,
    detail,
    ageYears,
    conditionExclusions,
  });

  // Conditions first, so their exclusions are reported whatever the outcome.
  const states: { condition: Condition; reference: string; state: ConditionState }[] = [];
  for (const condition of input.conditions) {
    const reference = `Condition/${condition.id ?? '?'}`;
    if (!sameSubject(condition, patient.id)) {
      conditionExclusions.push({ reference, reason: 'no-subject', detail: 'subject is not this patient' });
      continue;
    }
    const state = conditionState(condition, asOf, { birthDate: patient.birthDate });
    if (state.excluded) conditionExclusions.push({ reference, reason: state.excluded.reason, detail: state.excluded.detail });
    else states.push({ condition, reference, state });
  }

  if (patient.active === false) return skip('inactive-record', 'Patient.active is false');
  const death = deceasedAt(patient, asOf);
  if (death.deceased) return skip('deceased', death.detail!);
  if (!compiledPopulation) return { eligible: true, ageYears, evidence: [], conditionExclusions };
  const { population } = compiledPopulation;

  if (population.ageYears) {
    const { min, max } = population.ageYears;
    if (ageYears === undefined) return skip('age-unknown', 'no usable birthDate (the card restricts age)');
    if ((min !== undefined && ageYears < min) || (max !== undefined && ageYears > max))
      return skip('age-out-of-range', `age ${ageYears} outside ${max === undefined ? `${min ?? 0} years or older` : `${min ?? 0}-${max} years`}`);
  }
  if (population.sex && !(population.sex as string[]).includes(patient.gender ?? ''))
    return skip('sex-not-intended', `gender ${patient.gender ?? 'absent'} not in ${population.sex.join(', ')}`);

  for (const criterion of compiledPopulation.excluding) {
    const hit = states.find((s) => s.state.active && matches(s.condition, criterion));
    if (hit) return skip('excluding-condition', `${criterion.id} (${hit.reference}${hit.state.verification === 'suspected' ? ', suspected' : ''})`);
  }
  const evidence: CriterionEvidence[] = [];
  for (const criterion of compiledPopulation.required) {
    const candidates = states.filter((s) => matches(s.condition, criterion));
    const met = candidates.filter((s) => s.state.active && s.state.verification === 'confirmed');
    if (met.length === 0) {
      const why = candidates.length
        ? `only ${[...new Set(candidates.map((s) => (s.state.active ? 'suspected' : (s.state.inactiveBecause ?? 'inactive'))))].join('/')} records`
        : 'no matching Condition';
      return skip('missing-required-condition', `${criterion.id}: ${why}`);
    }
    evidence.push({ criterionId: criterion.id, references: met.map((s) => s.reference) });
  }
  return { eligible: true, ageYears, evidence, conditionExclusions };
}

/** Every code the card's condition criteria name (value sets resolved): what the pull must fetch. */
export function intendedUseConditionCodes(card: Pick<ModelCard, 'id' | 'intendedPopulation'>, valueSets?: ValueSetIndex): ConditionCode[] {
  const compiledPopulation = compileIntendedUse(card, valueSets);
  if (!compiledPopulation) return [];
  return [...compiledPopulation.required, ...compiledPopulation.excluding].flatMap((c) => c.codes);
}

/**
 * The Conditions the gate reads, for the counts (fetched = used + excluded): every Condition matching a
 * criterion of the card is considered; it is `used` when it meets a criterion at as-of (an active,
 * confirmed Condition for a required criterion: the RiskAssessment's basis and the CarePlan's
 * `addresses`; an active one, even suspected, for an excluding criterion), else excluded with its
 * reason: `status` (refuted, entered-in-error; not active at as-of; only suspected where a confirmed one
 * is required), `after-as-of` (recorded, or onset, after as-of), `no-subject`. Independent of the gate's
 * decision, as a mapping row's counts are of its skip reason: a deceased patient's diabetes Condition
 * still counts as used by the gate's reading.
 */
export function intendedUseConditions(
  card: Pick<ModelCard, 'id' | 'intendedPopulation'>,
  input: IntendedUseInput,
  valueSets?: ValueSetIndex,
): { used: string[]; excluded: Exclusion[] } {
  const compiledPopulation = compileIntendedUse(card, valueSets);
  const used: string[] = [];
  const excluded: Exclusion[] = [];
  if (!compiledPopulation) return { used, excluded };
  for (const condition of input.conditions) {
    const required = compiledPopulation.required.some((c) => matches(condition, c));
    const excluding = compiledPopulation.excluding.some((c) => matches(condition, c));
    if (!required && !excluding) continue;
    const reference = `Condition/${condition.id ?? '?'}`;
    if (!sameSubject(condition, input.patient.id)) {
      excluded.push({ reference, reason: 'no-subject', detail: 'subject is not this patient' });
      continue;
    }
    const state = conditionState(condition, input.asOf, { birthDate: input.patient.birthDate });
    if (state.excluded) excluded.push({ reference, reason: state.excluded.reason, detail: state.excluded.detail });
    else if (!state.active) {
      const why = state.inactiveBecause ?? 'inactive';
      excluded.push(
        why === 'onset-after-as-of' ? { reference, reason: 'after-as-of', detail: 'onset after as-of' } : { reference, reason: 'status', detail: `not active at as-of (${why})` },
      );
    } else if (excluding || state.verification === 'confirmed') used.push(reference);
    else excluded.push({ reference, reason: 'status', detail: 'only suspected (unconfirmed, provisional or differential)' });
  }
  return { used, excluded };
}
