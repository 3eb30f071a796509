import { createHash } from 'node:crypto';
import type { BundleEntry, CarePlan, Extension, Provenance } from 'fhir/r4.js';
import { CAREPLAN_PROPOSAL_EXTENSION_URL, subExtension } from '../extensions.js';
import { stableUuid } from '../identifiers.js';
import { AIAST_LABEL } from '../resources.js';
import { carePlanNarrative } from '../narrative.js';
import { carePlanContentHash, carePlanFullUrl, carePlanProvenanceId, type CarePlanProposal } from './apply.js';
import { proposalExtension } from './ranking.js';

/**
 * Write planning for CarePlan proposals (pure): the transaction entries for a new proposal and for
 * revoking this adapter's older draft proposal of the same PlanDefinition for the same patient.
 *
 * - New proposal: conditional create on its identifier (re-running the same as-of writes nothing) and
 *   its Provenance PUT under a deterministic id, as for RiskAssessments.
 * - Older proposals of this adapter (its identifier system and the careplan-proposal extension, same
 *   PlanDefinition url, earlier as-of) that are still UNTOUCHED drafts are set to `revoked` in the same
 *   transaction, by PUT with `If-Match: W/"<versionId>"`: if a clinician edits the plan between our read
 *   and our write, the server answers 412, the transaction fails as a whole and a re-plan sees the edit.
 *   When the older draft proposes the same activities, it stands and nothing new is written.
 * - A plan is never touched when it is not ours, not a draft (a clinician activated, completed,
 *   suspended or revoked it), its author is no longer our Device, its content no longer hashes to the
 *   content hash the adapter stored (any edit: activities, notes, status, period, addresses ...), or
 *   the server gave it no versionId (no safe If-Match). versionId VALUES are not compared: servers number
 *   versions differently (HAPI 1, 2, ...; Medplum UUIDs); lastUpdated is not used: the adapter cannot know
 *   the server's write instant without a read-back.
 * - A newer proposal of this adapter (later as-of) wins: an older run (a re-run of a past as-of) writes
 *   no CarePlan and revokes nothing.
 */

export type UntouchedReason = 'not-draft' | 'author-changed' | 'edited' | 'no-version' | 'not-adapter';

export type ProposalState = { revocable: true } | { revocable: false; why: UntouchedReason };

/** Whether the adapter may still revoke one of its proposals (see the module comment). */
export function proposalState(cp: CarePlan, own: { identifierSystem: string; deviceReference: string }): ProposalState {
  const ext = proposalExtension(cp);
  if (!ext || !cp.identifier?.some((i) => i.system === own.identifierSystem)) return { revocable: false, why: 'not-adapter' };
  if (cp.status !== 'draft') return { revocable: false, why: 'not-draft' };
  if (cp.author?.reference !== own.deviceReference) return { revocable: false, why: 'author-changed' };
  if (subExtension(ext, 'contentHash')?.valueString !== carePlanContentHash(cp)) return { revocable: false, why: 'edited' };
  if (!cp.meta?.versionId) return { revocable: false, why: 'no-version' };
  return { revocable: true };
}

export interface CarePlanWriteInput {
  proposal: CarePlanProposal;
  patientId: string;
  /** The patient's CarePlans as read from the server (any author; only this adapter's are considered). */
  onServer: CarePlan[];
  identifierSystem: string;
  deviceReference: string;
  /** Provenance.recorded of a revocation (the run's clock). */
  recorded: Date;
}

export interface CarePlanWritePlan {
  entries: BundleEntry[];
  /** The new proposal is written (conditional create). */
  created: boolean;
  /** Why no new proposal is written, when it is not. */
  notCreated?: 'nothing-to-propose' | 'already-written' | 'same-plan-already-proposed' | 'newer-proposal-exists';
  revoked: { id: string; versionId: string }[];
  untouched: { id: string; why: UntouchedReason }[];
}

const urlOf = (canonical: string) => canonical.split('|')[0];
const asOfOf = (cp: CarePlan) => Date.parse(subExtension(proposalExtension(cp), 'asOf')?.valueDateTime ?? '');
const signature = (canonicals: string[]) => [...canonicals].sort().join('\n');
const proposedOf = (cp: CarePlan) =>
  (proposalExtension(cp)?.extension ?? []).filter((e) => e.url === 'proposedActivity').map((e) => e.valueCanonical ?? '');

export function planCarePlanWrite(input: CarePlanWriteInput): CarePlanWritePlan {
  const { proposal, identifierSystem } = input;
  const planUrl = urlOf(proposal.planDefinition);
  const ours = input.onServer.filter(
    (cp) =>
      proposalExtension(cp) &&
      cp.identifier?.some((i) => i.system === identifierSystem) &&
      cp.subject?.reference === `Patient/${input.patientId}` &&
      (cp.instantiatesCanonical ?? []).some((c) => urlOf(c) === planUrl),
  );
  const plan: CarePlanWritePlan = { entries: [], created: false, revoked: [], untouched: [] };
  const sameIdentifier = ours.find((cp) => cp.identifier?.some((i) => i.system === identifierSystem && i.value === proposal.identifier.value));
  if (sameIdentifier) return { ...plan, notCreated: 'already-written' };

  const runAsOf = Date.parse(proposal.asOf);
  if (ours.some((cp) => asOfOf(cp) > runAsOf)) return { ...plan, notCreated: 'newer-proposal-exists' };

  const newSignature = proposal.carePlan ? signature(proposal.proposed.map((p) => p.activityDefinition)) : undefined;
  let keepOlder = false;
  const toRevoke: CarePlan[] = [];
  for (const cp of ours.filter((c) => asOfOf(c) < runAsOf).sort((a, b) => asOfOf(b) - asOfOf(a))) {
    const state = proposalState(cp, { identifierSystem, deviceReference: input.deviceReference });
    if (!state.revocable) {
      plan.untouched.push({ id: cp.id!, why: state.why });
      continue;
    }
    if (newSignature !== undefined && !keepOlder && signature(proposedOf(cp)) === newSignature) keepOlder = true;
    else toRevoke.push(cp);
  }

  const create = proposal.carePlan !== undefined && !keepOlder;
  if (proposal.carePlan && create) {
    const fullUrl = carePlanFullUrl(proposal.identifier.value);
    plan.entries.push({
      fullUrl,
      resource: proposal.carePlan,
      request: { method: 'POST', url: 'CarePlan', ifNoneExist: `identifier=${identifierSystem}|${proposal.identifier.value}` },
    });
    const provenanceId = carePlanProvenanceId(proposal.identifier.value);
    plan.entries.push({
      fullUrl: `urn:uuid:${stableUuid(`careplan-provenance:${proposal.identifier.value}`)}`,
      resource: { ...proposal.provenance!, id: provenanceId },
      request: { method: 'PUT', url: `Provenance/${provenanceId}` },
    });
    plan.created = true;
  } else plan.notCreated = proposal.carePlan ? 'same-plan-already-proposed' : 'nothing-to-propose';

  for (const cp of toRevoke) {
    const versionId = cp.meta!.versionId!;
    plan.entries.push(...revocationEntries(cp, versionId, create ? proposal.identifier : undefined, input.deviceReference, input.recorded));
    plan.revoked.push({ id: cp.id!, versionId });
  }
  return plan;
}

function revocationEntries(
  cp: CarePlan,
  versionId: string,
  supersededBy: { system: string; value: string } | undefined,
  deviceReference: string,
  recorded: Date,
): BundleEntry[] {
  const { meta, ...rest } = cp;
  const extension: Extension[] = (rest.extension ?? []).map((e) =>
    e.url === CAREPLAN_PROPOSAL_EXTENSION_URL && supersededBy
      ? { ...e, extension: [...(e.extension ?? []).filter((x) => x.url !== 'supersededBy'), { url: 'supersededBy', valueIdentifier: supersededBy }] }
      : e,
  );
  const revoked: CarePlan = {
    ...rest,
    // keep the security labels; the server sets versionId and lastUpdated
    meta: { ...(meta?.security ? { security: meta.security } : { security: [AIAST_LABEL] }) },
    extension,
    status: 'revoked',
    note: [
      ...(cp.note ?? []),
      { text: supersededBy ? `Revoked by fhir-ml-adapter: superseded by proposal ${supersededBy.value}.` : 'Revoked by fhir-ml-adapter: a newer assessment proposes nothing.' },
    ],
  };
  // Its narrative says what it is now.
  revoked.text = carePlanNarrative(revoked);
  const provenanceId = `cpr-${createHash('sha256').update(`${cp.id}\u0000${versionId}`).digest('hex').slice(0, 40)}`;
  const provenance: Provenance = {
    resourceType: 'Provenance',
    id: provenanceId,
    meta: { security: [AIAST_LABEL] },
    target: [{ reference: `CarePlan/${cp.id}` }],
    recorded: recorded.toISOString(),
    activity: {
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation', code: 'UPDATE', display: 'revise' }],
      text: supersededBy ? `Draft proposal revoked, superseded by ${supersededBy.value}` : 'Draft proposal revoked: a newer assessment proposes nothing',
    },
    agent: [
      {
        type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'author', display: 'Author' }] },
        who: { reference: deviceReference },
      },
    ],
    entity: [{ role: 'revision', what: { reference: `CarePlan/${cp.id}/_history/${versionId}` } }],
  };
  return [
    { fullUrl: `urn:uuid:${stableUuid(`careplan-revoke:${cp.id}`)}`, resource: revoked, request: { method: 'PUT', url: `CarePlan/${cp.id}`, ifMatch: `W/"${versionId}"` } },
    { fullUrl: `urn:uuid:${stableUuid(`careplan-revoke-provenance:${provenanceId}`)}`, resource: provenance, request: { method: 'PUT', url: `Provenance/${provenanceId}` } },
  ];
}
