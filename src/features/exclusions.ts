import type { Exclusion, ExclusionReason } from '../core/types.js';
import { parseFhirDateTime } from '../core/time.js';

/** Collects exclusions; one resource may have several (one per feature it was considered for). */
export class ExclusionLog {
  readonly items: Exclusion[] = [];
  /** Parts dropped from resources that were otherwise considered (e.g. one bad attachment of a report). */
  readonly partIssues = new Map<string, Exclusion>();
  partIssue(reference: string, reason: ExclusionReason, detail?: string): void {
    // One per resource, part problem and detail, however many features read the resource.
    const e: Exclusion = { reference, reason };
    if (detail !== undefined) e.detail = detail;
    this.partIssues.set(`${reference}\u0000${reason}\u0000${detail ?? ''}`, e);
  }
  add(reference: string, reason: ExclusionReason, featureId?: string, detail?: string): void {
    const e: Exclusion = { reference, reason };
    if (featureId !== undefined) e.featureId = featureId;
    if (detail !== undefined) e.detail = detail;
    this.items.push(e);
  }
}

/** Timed resource that passed the resource-level checks (subject, date, as-of). */
export interface Eligible<T> {
  resource: T;
  ref: string;
  time: number;
}

function subjectMatches(reference: string | undefined, patientId: string | undefined): boolean {
  if (!reference || !patientId) return false;
  const r = reference.replace(/\/_history\/[^/]+$/, '');
  return r === `Patient/${patientId}` || r === `urn:uuid:${patientId}` || r.endsWith(`/Patient/${patientId}`);
}

/**
 * The instant a resource's data belongs to: effectiveDateTime | effectivePeriod.end|start |
 * effectiveInstant | issued (ImagingStudy: started). A partial date counts as its last instant, so a
 * value dated "today" is never used before the day is over (nothing after as-of is ever used).
 */
function effectiveTime(r: {
  effectiveDateTime?: string;
  effectivePeriod?: { start?: string; end?: string };
  effectiveInstant?: string;
  issued?: string;
  started?: string;
}): number | undefined {
  const text =
    r.effectiveDateTime ?? r.effectivePeriod?.end ?? r.effectivePeriod?.start ?? r.effectiveInstant ?? r.started ?? r.issued;
  return parseFhirDateTime(text)?.end;
}

/**
 * Resource-level checks shared by every source: id, subject, a usable date, nothing after as-of
 * (effective or issued). Returns the eligible resources sorted by reference; everything else is logged
 * once (no featureId). Every resource passed in counts as fetched. Undated resources (`dated: false`,
 * Conditions) get the id and subject checks only: when they hold at as-of is their source's rule
 * (src/clinical/condition-state.ts), and their `time` is NaN.
 */
export function eligible<T extends { id?: string; resourceType: string; subject?: { reference?: string }; issued?: string }>(
  resources: readonly T[],
  patientId: string | undefined,
  asOf: number,
  fetched: Set<string>,
  log: ExclusionLog,
  dated = true,
): Eligible<T>[] {
  const out: Eligible<T>[] = [];
  const seen = new Set<string>();
  resources.forEach((r, i) => {
    const ref = r.id ? `${r.resourceType}/${r.id}` : `${r.resourceType}/#${i}`;
    if (seen.has(ref)) return; // the same resource listed twice counts once
    seen.add(ref);
    fetched.add(ref);
    if (!r.id) return log.add(ref, 'malformed', undefined, 'no id');
    if (!subjectMatches(r.subject?.reference, patientId)) return log.add(ref, 'no-subject');
    if (!dated) return void out.push({ resource: r, ref, time: Number.NaN });
    const time = effectiveTime(r as never);
    if (time === undefined) return log.add(ref, 'malformed', undefined, 'no usable effective date');
    const issued = r.issued === undefined ? undefined : parseFhirDateTime(r.issued);
    if (r.issued !== undefined && !issued) return log.add(ref, 'malformed', undefined, 'invalid issued');
    if (time > asOf || (issued && issued.end > asOf)) return log.add(ref, 'after-as-of');
    out.push({ resource: r, ref, time });
  });
  return out.sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
}

/** `system|code`, the key codings are matched by. */
export const codeKey = (c: { system?: string; code?: string }) => `${c.system ?? ''}|${c.code ?? ''}`;

export function hasCode(concept: { coding?: { system?: string; code?: string }[] } | undefined, keys: ReadonlySet<string>): boolean {
  return !!concept?.coding?.some((c) => keys.has(codeKey(c)));
}
