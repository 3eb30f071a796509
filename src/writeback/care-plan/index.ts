/** CarePlan proposals from PlanDefinition/ActivityDefinition data (mappings/careplans/<model id>/): pure planners. */
export { buildAssessmentContext, type AssessmentContext, type AssessmentContextInput } from './context.js';
export { CAREPLANS_DIR, canonicalOf, definitionProblems, loadCarePlanDefinitions, type CarePlanDefinitions } from './definitions.js';
export { findExistingActivity, satisfiedWithin, type ExistingActivity, type ExistingCare, type OmissionReason } from './existing.js';
export { acceptanceByActivity, rankByAcceptance, PRIORITY_ORDER, type AcceptanceStats } from './ranking.js';
export {
  applicableActivities,
  applyPlanDefinition,
  carePlanContentHash,
  carePlanFullUrl,
  carePlanIdentifierValue,
  carePlanProvenanceId,
  type ApplyOptions,
  type CarePlanProposal,
  type OmittedActivity,
  type ProposedActivity,
} from './apply.js';
export { planCarePlanWrite, proposalState, type CarePlanWriteInput, type CarePlanWritePlan, type ProposalState, type UntouchedReason } from './write-plan.js';
export { careReadScope, type CareReadAssessment, type CareReadScope } from './care-read-scope.js';
