import type { Bundle, BundleEntry, Provenance, RiskAssessment } from 'fhir/r4.js';
import type { CarePlanProposal, CarePlanWritePlan } from './care-plan/index.js';
import { stableUuid } from './identifiers.js';
import { buildProvenance, buildRiskAssessment, type RiskAssessmentInput } from './resources.js';

/** One patient's write for one model run: built purely, sent by the writer. */
export interface AssessmentPlan {
  patientId: string;
  modelId: string;
  identifier: { system: string; value: string };
  riskAssessment: RiskAssessment;
  provenance: Provenance;
  /** CarePlan proposals answering this assessment, written in the same transaction (one per PlanDefinition). */
  carePlans?: CarePlanWrite[];
}

/**
 * One CarePlan proposal's write: the proposal as applied (what is proposed, what was left out and why)
 * and its transaction entries (conditional create + Provenance, revocations under If-Match). Its
 * `supportingInfo` and Provenance name the RiskAssessment by its transaction fullUrl (`fullUrlFor`); the
 * writer points them at the stored RiskAssessment when that is already on the server.
 */
export interface CarePlanWrite {
  identifier: { system: string; value: string };
  proposal: CarePlanProposal;
  plan: CarePlanWritePlan;
}

export function planAssessment(input: RiskAssessmentInput, recorded: Date): AssessmentPlan {
  const riskAssessment = buildRiskAssessment(input);
  const identifier = riskAssessment.identifier![0] as { system: string; value: string };
  const provenance = buildProvenance({
    targetReference: fullUrlFor(identifier.value),
    deviceReference: input.deviceReference,
    sources: input.basis,
    recorded,
    modelId: input.model.id,
    modelVersion: input.model.version,
  });
  return { patientId: input.patientId, modelId: input.model.id, identifier, riskAssessment, provenance };
}

/** Deterministic Provenance id for an assessment identifier (a FHIR id: at most 64 of [A-Za-z0-9-.]). */
export function provenanceIdFor(identifierValue: string): string {
  return `ra-${identifierValue}`;
}

export function fullUrlFor(identifierValue: string): string {
  return `urn:uuid:${stableUuid(identifierValue)}`;
}

/**
 * One transaction per batch. RiskAssessments are conditional creates on their deterministic identifier,
 * so a concurrent or repeated write cannot duplicate them; the Provenance points at the RiskAssessment's
 * urn:uuid, which the server rewrites to the created id. Plans for assessments already on the server are
 * filtered out before this (see FhirWriter), so nothing is re-sent on a re-run.
 */
export function buildTransactionBundle(plans: AssessmentPlan[]): Bundle {
  return { resourceType: 'Bundle', type: 'transaction', entry: plans.flatMap(assessmentEntries) };
}

/** The RiskAssessment (conditional create) and its Provenance (PUT under a deterministic id) of one plan. */
export function assessmentEntries(plan: AssessmentPlan): BundleEntry[] {
  const raUrl = fullUrlFor(plan.identifier.value);
  // Provenance has no identifier to make a create conditional, so it gets a deterministic id and is
  // PUT: if a racing writer already created this assessment (its conditional create then matches),
  // the Provenance is the same resource again, never a duplicate.
  const provenanceId = provenanceIdFor(plan.identifier.value);
  return [
    {
      fullUrl: raUrl,
      resource: plan.riskAssessment,
      request: {
        method: 'POST',
        url: 'RiskAssessment',
        // The system is validated at config time to contain no query metacharacters.
        ifNoneExist: `identifier=${plan.identifier.system}|${plan.identifier.value}`,
      },
    },
    {
      fullUrl: `urn:uuid:${stableUuid('provenance:' + plan.identifier.value)}`,
      resource: { ...plan.provenance, id: provenanceId },
      request: { method: 'PUT', url: `Provenance/${provenanceId}` },
    },
  ];
}
