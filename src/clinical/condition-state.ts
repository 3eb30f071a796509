import type { Age, Condition, Period, Range } from 'fhir/r4.js';
import type { ExclusionReason } from '../core/types.js';
import { addDuration, parseFhirDateTime } from '../core/time.js';

/**
 * What a Condition says about a patient at one as-of instant. One home for the semantics of
 * clinicalStatus, verificationStatus, onset[x], abatement[x] and recordedDate, shared by the intended-use
 * gate (src/models/intended-use.ts) and the `condition` mapping source (src/features/sources/condition.ts). Pure.
 *
 * Rules, in order:
 *  1. verificationStatus `entered-in-error` or `refuted`: the Condition is excluded (reason `status`): it
 *     asserts nothing about the patient.
 *  2. Recorded after as-of (recordedDate, else the earliest onset instant, is after as-of): excluded
 *     (`after-as-of`), like an Observation issued after as-of. A Condition with no date at all cannot be
 *     placed in time and is taken at its recorded status.
 *  3. Onset after as-of (recorded earlier, e.g. a planned date): not active (`onset-after-as-of`).
 *  4. Abatement that can be placed in time (dateTime, Period.end, Age or Range.high with a birthDate)
 *     decides over the current clinicalStatus, because clinicalStatus describes the present while as-of may
 *     lie in the past: abated at or before as-of -> not active (`abated`), unless clinicalStatus is
 *     recurrence or relapse (the condition came back); abated after as-of -> active at as-of.
 *  5. Otherwise clinicalStatus decides: active, recurrence, relapse -> active; inactive, remission,
 *     resolved -> not active. An abatement that cannot be placed (abatementString, an Age without
 *     birthDate, an unparseable date) with no clinicalStatus -> not active (`abated`). Neither clinicalStatus nor
 *     abatement (con-3 allows it only for entered-in-error, but servers send it) -> active.
 *
 * Partial dates resolve toward "active": an onset counts from its earliest instant, an abatement from
 * its latest (abatement `2012` ends the condition at the end of 2012).
 *
 * Verification: `confirmed` or absent is `confirmed`; `unconfirmed`, `provisional` and `differential`
 * are `suspected`. This module does not decide what a suspected diagnosis is good for: a gate that
 * ADMITS a patient (a required condition) should ask for a confirmed one, a gate that REFUSES a patient
 * (an excluding condition) should accept a suspected one too. The intended-use gate does exactly that.
 */

export const ACTIVE_CLINICAL_STATUSES = ['active', 'recurrence', 'relapse'] as const;
export const INACTIVE_CLINICAL_STATUSES = ['inactive', 'remission', 'resolved'] as const;
export const EXCLUDED_VERIFICATION_STATUSES = ['entered-in-error', 'refuted'] as const;
export const SUSPECTED_VERIFICATION_STATUSES = ['unconfirmed', 'provisional', 'differential'] as const;

const CLINICAL_SYSTEM = 'http://terminology.hl7.org/CodeSystem/condition-clinical';
const VERIFICATION_SYSTEM = 'http://terminology.hl7.org/CodeSystem/condition-ver-status';

export type InactiveBecause = 'inactive' | 'remission' | 'resolved' | 'abated' | 'onset-after-as-of';

export interface ConditionState {
  /** Clinically active at as-of. Always false when excluded. */
  active: boolean;
  /** `confirmed` (confirmed or no verificationStatus) or `suspected` (unconfirmed, provisional, differential). */
  verification: 'confirmed' | 'suspected';
  /** Set when the Condition must not be used at all; the reason comes from the one exclusion list. */
  excluded?: { reason: ExclusionReason; detail: string };
  /** Why a Condition that is not excluded is not active at as-of. */
  inactiveBecause?: InactiveBecause;
}

export interface ConditionStateOptions {
  /** The patient's birthDate, to place onsetAge / abatementAge in time. */
  birthDate?: string;
}

function statusCode(cc: Condition['clinicalStatus'], system: string): string | undefined {
  const codings = cc?.coding ?? [];
  return (codings.find((c) => c.system === system) ?? codings.find((c) => !c.system))?.code;
}

/** [earliest, latest] instant (ms) an onset/abatement element denotes, or undefined when it cannot be placed. */
function span(
  c: Condition,
  prefix: 'onset' | 'abatement',
  birthDate: string | undefined,
): { start: number; end: number } | undefined {
  const rec = c as unknown as Record<string, unknown>;
  const dt = rec[`${prefix}DateTime`] as string | undefined;
  if (dt !== undefined) return parseFhirDateTime(dt);
  const period = rec[`${prefix}Period`] as Period | undefined;
  if (period) {
    const s = parseFhirDateTime(period.start);
    const e = parseFhirDateTime(period.end);
    if (!s && !e) return undefined;
    // an onset Period starts at its start; an abatement Period ends at its end (open end: not yet abated)
    return { start: s?.start ?? e!.start, end: e?.end ?? Number.POSITIVE_INFINITY };
  }
  const age = rec[`${prefix}Age`] as Age | undefined;
  if (age) return ageSpan(age, age, birthDate);
  const range = rec[`${prefix}Range`] as Range | undefined;
  if (range) return ageSpan(range.low, range.high, birthDate);
  return undefined;
}

const AGE_UNITS: Record<string, 'years' | 'months' | 'weeks' | 'days'> = {
  a: 'years',
  mo: 'months',
  wk: 'weeks',
  d: 'days',
  year: 'years',
  years: 'years',
  month: 'months',
  months: 'months',
  week: 'weeks',
  weeks: 'weeks',
  day: 'days',
  days: 'days',
};

function ageSpan(low: Age | undefined, high: Age | undefined, birthDate: string | undefined): { start: number; end: number } | undefined {
  const birth = parseFhirDateTime(birthDate);
  if (!birth) return undefined;
  const at = (a: Age | undefined, edge: 'start' | 'end'): number | undefined => {
    if (!a || typeof a.value !== 'number') return undefined;
    const unit = AGE_UNITS[a.code ?? a.unit ?? ''];
    if (!unit) return undefined;
    return addCalendar(edge === 'start' ? birth.start : birth.end, a.value, unit);
  };
  const s = at(low, 'start');
  const e = at(high, 'end');
  if (s === undefined && e === undefined) return undefined;
  return { start: s ?? e!, end: e ?? Number.POSITIVE_INFINITY };
}

/**
 * An age step from a birth instant, with the one calendar rule of src/core/time.ts (29 Feb + 1 a = 28 Feb).
 * Years and months step in whole months (a fractional age is cut to whole months), weeks and days are
 * fixed lengths.
 */
function addCalendar(ms: number, value: number, unit: 'years' | 'months' | 'weeks' | 'days'): number {
  const step =
    unit === 'years' ? { months: Math.trunc(value * 12) } : unit === 'months' ? { months: Math.trunc(value) } : unit === 'weeks' ? { days: value * 7 } : { days: value };
  return addDuration(new Date(ms), step).getTime();
}

/** The state of one Condition at as-of (see the module comment for the rules). */
export function conditionState(condition: Condition, asOf: Date, options: ConditionStateOptions = {}): ConditionState {
  const t = asOf.getTime();
  const verificationCode = statusCode(condition.verificationStatus, VERIFICATION_SYSTEM);
  const verification = (SUSPECTED_VERIFICATION_STATUSES as readonly string[]).includes(verificationCode ?? '') ? 'suspected' : 'confirmed';
  if ((EXCLUDED_VERIFICATION_STATUSES as readonly string[]).includes(verificationCode ?? ''))
    return { active: false, verification, excluded: { reason: 'status', detail: `verificationStatus ${verificationCode}` } };

  const onset = span(condition, 'onset', options.birthDate);
  const recorded = parseFhirDateTime(condition.recordedDate);
  const knownFrom = recorded?.start ?? onset?.start;
  if (knownFrom !== undefined && knownFrom > t)
    return {
      active: false,
      verification,
      excluded: { reason: 'after-as-of', detail: recorded ? 'recordedDate after as-of' : 'onset after as-of' },
    };
  if (onset && onset.start > t) return { active: false, verification, inactiveBecause: 'onset-after-as-of' };

  const clinical = statusCode(condition.clinicalStatus, CLINICAL_SYSTEM);
  const recurred = clinical === 'recurrence' || clinical === 'relapse';
  const abatement = span(condition, 'abatement', options.birthDate);
  if (abatement) {
    if (abatement.end <= t && !recurred) return { active: false, verification, inactiveBecause: 'abated' };
    return { active: true, verification };
  }
  if (clinical && (ACTIVE_CLINICAL_STATUSES as readonly string[]).includes(clinical)) return { active: true, verification };
  if (clinical && (INACTIVE_CLINICAL_STATUSES as readonly string[]).includes(clinical))
    return { active: false, verification, inactiveBecause: clinical as InactiveBecause };
  const unplacedAbatement =
    condition.abatementString !== undefined ||
    condition.abatementAge !== undefined ||
    condition.abatementRange !== undefined ||
    condition.abatementPeriod !== undefined ||
    condition.abatementDateTime !== undefined;
  if (unplacedAbatement) return { active: false, verification, inactiveBecause: 'abated' };
  return { active: true, verification };
}
