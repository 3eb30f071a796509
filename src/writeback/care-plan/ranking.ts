import type { CarePlan, Extension } from 'fhir/r4.js';
import type { QualitativeRisk } from '../../core/types.js';
import { CAREPLAN_PROPOSAL_EXTENSION_URL, subExtension } from '../extensions.js';

/**
 * Ordering of proposed activities by what clinicians on the same server accepted before. Pure.
 *
 * Evidence: this adapter's earlier proposals (CarePlans with its identifier system and the
 * careplan-proposal extension) for SIMILAR patients: the same model (any version) and the same risk
 * band. A proposal is a clinician decision once it left `draft`, except when the adapter itself revoked
 * it for a newer proposal (supersededBy set): those, and drafts, are not evidence.
 *  - accepted: the plan became active or completed and the activity is still there and not cancelled,
 *    stopped or entered-in-error;
 *  - rejected: everything else that was decided (the activity removed or cancelled, the plan revoked or
 *    entered-in-error by a clinician).
 * Score per ActivityDefinition (url, any version): (accepted + 1) / (decided + 2), a Laplace-smoothed
 * acceptance rate (0.5 without evidence). Order: priority first (stat, asap, urgent, routine: safety
 * before preference), then score (higher first), then the PlanDefinition's order.
 */

export const PRIORITY_ORDER = ['stat', 'asap', 'urgent', 'routine'] as const;

export interface AcceptanceStats {
  accepted: number;
  decided: number;
  score: number;
}

const CANCELLED = ['cancelled', 'stopped', 'entered-in-error'];
const urlOf = (canonical: string) => canonical.split('|')[0];

export function proposalExtension(cp: CarePlan): Extension | undefined {
  return cp.extension?.find((e) => e.url === CAREPLAN_PROPOSAL_EXTENSION_URL);
}

/** Acceptance per ActivityDefinition url among earlier proposals of the same model and band. */
export function acceptanceByActivity(
  history: readonly CarePlan[],
  similar: { modelId: string; band: QualitativeRisk; identifierSystem: string },
): Map<string, AcceptanceStats> {
  const counts = new Map<string, { accepted: number; decided: number }>();
  const bump = (url: string, accepted: boolean) => {
    const c = counts.get(url) ?? { accepted: 0, decided: 0 };
    c.decided++;
    if (accepted) c.accepted++;
    counts.set(url, c);
  };
  for (const cp of history) {
    const ext = proposalExtension(cp);
    if (!ext || !cp.identifier?.some((i) => i.system === similar.identifierSystem)) continue;
    if (subExtension(ext, 'model')?.valueCoding?.code !== similar.modelId) continue;
    if (subExtension(ext, 'riskBand')?.valueCode !== similar.band) continue;
    if (cp.status === 'draft' || subExtension(ext, 'supersededBy')) continue;
    const accepted = cp.status === 'active' || cp.status === 'completed';
    // what the adapter proposed is listed in the extension (a clinician may remove activities: those
    // count as rejected when the plan was accepted)
    const proposed = new Set(
      (ext.extension ?? []).filter((e) => e.url === 'proposedActivity' && e.valueCanonical).map((e) => urlOf(e.valueCanonical!)),
    );
    const kept = new Set(
      (cp.activity ?? []).filter((a) => a.detail && !CANCELLED.includes(a.detail.status)).flatMap((a) => (a.detail!.instantiatesCanonical ?? []).map(urlOf)),
    );
    for (const url of proposed) bump(url, accepted && kept.has(url));
  }
  return new Map([...counts].map(([url, c]) => [url, { ...c, score: (c.accepted + 1) / (c.decided + 2) }]));
}

/** Sorts items by priority, then acceptance score, then their original order (stable). */
export function rankByAcceptance<T extends { activityUrl: string; priority?: string }>(
  items: readonly T[],
  stats: ReadonlyMap<string, AcceptanceStats>,
): { item: T; stats: AcceptanceStats }[] {
  const prio = (p?: string) => {
    const i = PRIORITY_ORDER.indexOf((p ?? 'routine') as (typeof PRIORITY_ORDER)[number]);
    return i < 0 ? PRIORITY_ORDER.length : i;
  };
  return items
    .map((item, index) => ({ item, index, stats: stats.get(item.activityUrl) ?? { accepted: 0, decided: 0, score: 0.5 } }))
    .sort((a, b) => prio(a.item.priority) - prio(b.item.priority) || b.stats.score - a.stats.score || a.index - b.index)
    .map(({ item, stats: s }) => ({ item, stats: s }));
}
