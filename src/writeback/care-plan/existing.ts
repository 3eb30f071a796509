import type { ActivityDefinition, CarePlan, CodeableConcept, Observation, Procedure, Reference, ServiceRequest } from 'fhir/r4.js';
import { lookbackStart, parseFhirDateTime } from '../../core/time.js';
import { SATISFIED_WITHIN_EXTENSION_URL } from '../extensions.js';
import { canonicalOf } from './definitions.js';

/**
 * Behaviour-aware proposals: does the patient already have an activity? Pure, given the patient's
 * CarePlans, ServiceRequests, Procedures and Observations. In this order:
 *  - `already-planned`: an ACTIVE CarePlan has an activity with the same code (or instantiating the same
 *    ActivityDefinition) that is not-started, scheduled, in-progress or on-hold;
 *  - `already-requested`: an ACTIVE ServiceRequest with the same code, authored at or before as-of;
 *  - `in-progress`: an in-progress Procedure with the same code;
 *  - `recently-done`: a completed Procedure with the same code performed within the activity's window;
 *  - `recent-result`: a final (amended, corrected) Observation with the same code effective within the window.
 * The window ends at as-of; its length is the ActivityDefinition's activity-satisfied-within extension,
 * else its timing period (HbA1c every 3 months: an HbA1c within 3 months satisfies it). Without either,
 * completed Procedures and results never satisfy an activity (a one-off action such as an admission is
 * needed again even if it happened before). Anything dated after as-of is ignored.
 * "Same code": any coding (system and code) of the resource equals a coding of ActivityDefinition.code.
 */

export type OmissionReason = 'already-planned' | 'already-requested' | 'in-progress' | 'recently-done' | 'recent-result';

export interface ExistingCare {
  carePlans?: CarePlan[];
  serviceRequests?: ServiceRequest[];
  procedures?: Procedure[];
  observations?: Observation[];
}

export interface ExistingActivity {
  reason: OmissionReason;
  /** `Type/id` of the resource that shows it. */
  evidence: string;
}

const OPEN_ACTIVITY_STATUSES = ['not-started', 'scheduled', 'in-progress', 'on-hold'];
const RESULT_STATUSES = ['final', 'amended', 'corrected'];
const ISO_UNIT: Record<string, (n: number) => string> = {
  a: (n) => `P${n}Y`,
  mo: (n) => `P${n}M`,
  wk: (n) => `P${n}W`,
  d: (n) => `P${n}D`,
  h: (n) => `PT${n}H`,
  min: (n) => `PT${n}M`,
  s: (n) => `PT${n}S`,
};

/** ISO 8601 duration of the window in which a completed Procedure or a result satisfies the activity, if any. */
export function satisfiedWithin(ad: ActivityDefinition): string | undefined {
  const d = ad.extension?.find((e) => e.url === SATISFIED_WITHIN_EXTENSION_URL)?.valueDuration;
  if (d?.value !== undefined && d.code && ISO_UNIT[d.code]) return ISO_UNIT[d.code](d.value);
  const r = ad.timingTiming?.repeat;
  if (r?.period !== undefined && r.periodUnit && ISO_UNIT[r.periodUnit]) return ISO_UNIT[r.periodUnit](r.period);
  return undefined;
}

function sameCode(cc: CodeableConcept | undefined, ad: ActivityDefinition): boolean {
  const wanted = ad.code?.coding ?? [];
  return (cc?.coding ?? []).some((c) => wanted.some((w) => w.system === c.system && w.code === c.code && !!c.code));
}

function isSubject(ref: Reference | undefined, patientId: string): boolean {
  const r = ref?.reference;
  return !!r && (r === `Patient/${patientId}` || r.endsWith(`/Patient/${patientId}`));
}

const byId = <T extends { id?: string }>(items: T[] | undefined) => [...(items ?? [])].sort((a, b) => (a.id ?? '').localeCompare(b.id ?? ''));

/** The latest instant a resource's time element may denote (the end of a partial date or a Period). */
function latest(dateTime: string | undefined, period?: { start?: string; end?: string }): number | undefined {
  if (dateTime) return parseFhirDateTime(dateTime)?.end;
  if (period) return parseFhirDateTime(period.end ?? period.start)?.end;
  return undefined;
}

/** Whether the patient already has the activity at as-of, and what shows it (first match in the order above). */
export function findExistingActivity(ad: ActivityDefinition, existing: ExistingCare, patientId: string, asOf: Date): ExistingActivity | undefined {
  const t = asOf.getTime();
  const canonicals = [ad.url, ad.url && canonicalOf(ad)].filter(Boolean) as string[];
  for (const cp of byId(existing.carePlans)) {
    if (cp.status !== 'active' || !isSubject(cp.subject, patientId)) continue;
    const hit = (cp.activity ?? []).some(
      (a) =>
        a.detail &&
        OPEN_ACTIVITY_STATUSES.includes(a.detail.status) &&
        (sameCode(a.detail.code, ad) || (a.detail.instantiatesCanonical ?? []).some((c) => canonicals.includes(c))),
    );
    if (hit) return { reason: 'already-planned', evidence: `CarePlan/${cp.id}` };
  }
  for (const sr of byId(existing.serviceRequests)) {
    if (sr.status !== 'active' || !isSubject(sr.subject, patientId) || !sameCode(sr.code, ad)) continue;
    const authored = parseFhirDateTime(sr.authoredOn)?.start;
    if (authored !== undefined && authored > t) continue;
    return { reason: 'already-requested', evidence: `ServiceRequest/${sr.id}` };
  }
  const within = satisfiedWithin(ad);
  const from = within ? lookbackStart(within, asOf).getTime() : undefined;
  const inWindow = (when: number | undefined) => from !== undefined && when !== undefined && when >= from && when <= t;
  const procedures = byId(existing.procedures).filter((p) => isSubject(p.subject, patientId) && sameCode(p.code, ad));
  for (const p of procedures) if (p.status === 'in-progress') return { reason: 'in-progress', evidence: `Procedure/${p.id}` };
  for (const p of procedures)
    if (p.status === 'completed' && inWindow(latest(p.performedDateTime, p.performedPeriod))) return { reason: 'recently-done', evidence: `Procedure/${p.id}` };
  for (const o of byId(existing.observations)) {
    if (!RESULT_STATUSES.includes(o.status) || !isSubject(o.subject, patientId) || !sameCode(o.code, ad)) continue;
    if (inWindow(latest(o.effectiveDateTime ?? o.effectiveInstant, o.effectivePeriod) ?? latest(o.issued))) return { reason: 'recent-result', evidence: `Observation/${o.id}` };
  }
  return undefined;
}
