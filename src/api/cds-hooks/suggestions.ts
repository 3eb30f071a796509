import type { ServiceRequest } from 'fhir/r4.js';
import type { CareRecord } from '../../fhir/care-pull.js';
import { perPatientCareReader } from '../../fhir/care-pull-per-patient.js';
import type { FhirClient } from '../../fhir/client.js';
import type { BatchEntry } from '../../sync/batch.js';
import type { SyncModel } from '../../sync/models.js';
import { AIAST_LABEL } from '../../writeback/resources.js';
import { applyPlanDefinition, buildAssessmentContext, careReadScope } from '../../writeback/care-plan/index.js';
import type { CardFacts } from './cards.js';

/**
 * The CarePlan proposal of a scored patient, as card suggestions: the model's PlanDefinitions applied
 * to the assessment exactly as the sync's CarePlan step applies them (same applicability conditions,
 * same omission of what the patient already has, read with the request's token from its fhirServer),
 * each proposed activity one suggestion that creates a draft ServiceRequest (intent `proposal`,
 * instantiating the ActivityDefinition, AI-labelled). Nothing is proposed for a preliminary score (as in
 * the sync), or when the patient's current care cannot be read (no fhirAuthorization): a suggestion must
 * not repeat care the patient already has.
 */
export async function proposalSuggestions(
  entry: BatchEntry,
  model: SyncModel,
  options: { fhir?: FhirClient; asOf: Date; identifierSystem: string },
): Promise<{ suggestions: NonNullable<CardFacts['suggestions']>; note?: string }> {
  const definitions = model.carePlans;
  if (!definitions || entry.status !== 'scored' || !entry.prediction || !entry.row) return { suggestions: [] };
  if (entry.applicability?.decision === 'score-preliminary') return { suggestions: [], note: 'No care plan is proposed on a preliminary score.' };
  if (!options.fhir) return { suggestions: [], note: 'Care plan proposals need read access to the patient\'s current care (fhirAuthorization); none were made.' };

  const row = entry.row;
  const context = buildAssessmentContext({
    prediction: entry.prediction,
    asOf: options.asOf,
    row: { columns: row.columns, imputed: row.imputed, raw: row.raw },
    units: model.units,
    ...(entry.applicability ? { applicability: entry.applicability } : {}),
  });
  // What may be proposed decides what care is read: the activities' codes, since their longest window.
  const scope = careReadScope([{ definitions, context }], options.asOf);
  if (!scope.codes.length) return { suggestions: [] };
  // One patient per request (every FHIR server answers those; a server requiring Observation categories
  // gets them), as the per-patient strategy reads care.
  const care = await perPatientCareReader(options.fhir, options.asOf, { patientConcurrency: 1 })({
    carePlanPatients: [entry.patientId],
    activityPatients: [entry.patientId],
    activityCodes: scope.codes,
    resultsSince: scope.resultsSince,
  });
  const existing: CareRecord = care.byPatient.get(entry.patientId) ?? { carePlans: [], serviceRequests: [], procedures: [], observations: [] };

  const suggestions: NonNullable<CardFacts['suggestions']> = [];
  for (const pd of definitions.planDefinitions) {
    const proposal = applyPlanDefinition(pd, definitions.activityDefinitions, context, {
      patientId: entry.patientId,
      asOf: options.asOf,
      deviceReference: `Device/${model.runner.card.id}`,
      riskAssessmentReference: `urn:uuid:${entry.patientId}`,
      identifierSystem: options.identifierSystem,
      addresses: entry.evidence ?? [],
      existing,
      recorded: options.asOf,
    });
    for (const activity of proposal.proposed) {
      const label = activity.code.text ?? activity.code.coding?.find((c) => c.display)?.display ?? activity.code.coding?.[0]?.code ?? 'activity';
      const resource: ServiceRequest = {
        resourceType: 'ServiceRequest',
        status: 'draft',
        intent: 'proposal',
        instantiatesCanonical: [activity.activityDefinition],
        code: activity.code,
        subject: { reference: `Patient/${entry.patientId}` },
        ...(activity.priority ? { priority: activity.priority as ServiceRequest['priority'] } : {}),
        ...(entry.evidence?.length ? { reasonReference: entry.evidence.map((reference) => ({ reference })) } : {}),
        meta: { security: [AIAST_LABEL] },
        note: [{ text: `Proposed by fhir-ml-adapter model ${model.runner.card.id} ${model.runner.card.version} (${entry.prediction.band} risk); review before acting.` }],
      };
      suggestions.push({ label: `Propose: ${label}`, resource: resource as unknown as { resourceType: string } & Record<string, unknown> });
    }
  }
  return { suggestions };
}
