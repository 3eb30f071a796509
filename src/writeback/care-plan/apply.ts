import { createHash } from 'node:crypto';
import type { ActivityDefinition, CarePlan, CarePlanActivity, CodeableConcept, Extension, PlanDefinition, PlanDefinitionAction, Provenance } from 'fhir/r4.js';
import fhirpath from 'fhirpath';
import { AdapterError } from '../../core/errors.js';
import { CAREPLAN_PROPOSAL_EXTENSION_URL } from '../extensions.js';
import { assessmentIdentifierValue, MODEL_REGISTRY_SYSTEM, stableUuid } from '../identifiers.js';
import { carePlanNarrative } from '../narrative.js';
import { AIAST_LABEL } from '../resources.js';

/** US Core's CarePlan category code system (`assess-plan`). */
export const CAREPLAN_CATEGORY_SYSTEM = 'http://hl7.org/fhir/us/core/CodeSystem/careplan-category';
import type { AssessmentContext } from './context.js';
import { canonicalOf, flattenActions, resolveActivity } from './definitions.js';
import { findExistingActivity, type ExistingCare, type OmissionReason } from './existing.js';
import { acceptanceByActivity, rankByAcceptance, type AcceptanceStats } from './ranking.js';

/**
 * The subset of PlanDefinition/$apply this adapter needs, as a pure function: evaluate each action's
 * applicability conditions (FHIRPath over the assessment context), resolve its ActivityDefinition, leave
 * out what the patient already has (existing.ts), order the rest (ranking.ts) and build a CarePlan
 * proposal with its Provenance:
 *   status draft, intent proposal, instantiatesCanonical the PlanDefinition (url|version), subject,
 *   author the model's Device, supportingInfo the RiskAssessment, addresses the relevant Conditions,
 *   one activity per applicable action (detail: kind, instantiatesCanonical, code, status not-started,
 *   scheduledTiming, description), the AIAST security label, a deterministic identifier, notes saying
 *   what was left out and why and how the activities were ordered, and the careplan-proposal extension.
 * An action applies when every one of its applicability conditions evaluates to exactly `true`; a nested
 * action applies only when its parent does. When nothing is left to propose there is no CarePlan.
 */

export interface ApplyOptions {
  patientId: string;
  asOf: Date;
  /** `Device/<id>` of the model. */
  deviceReference: string;
  /** The RiskAssessment the plan answers: `RiskAssessment/<id>` or its urn:uuid in the same transaction. */
  riskAssessmentReference: string;
  identifierSystem: string;
  /** `Condition/<id>` the plan addresses (e.g. the intended-use evidence). */
  addresses?: string[];
  /** The patient's CarePlans, ServiceRequests, Procedures and Observations. */
  existing?: ExistingCare;
  /** This adapter's earlier proposals on the server (any patient), for the ordering. */
  history?: CarePlan[];
  /**
   * Acceptance per ActivityDefinition url for this model and band, already computed from the history
   * (`acceptanceByActivity`): a run reads the history once and reuses it for every patient. Wins over `history`.
   */
  acceptance?: ReadonlyMap<string, AcceptanceStats>;
  /**
   * The server would not give this adapter's earlier proposals (it refuses CarePlan searches that name no
   * patient, as single-patient EHR APIs do): the order rests on priority and the plan definition alone,
   * and the note says so rather than "none decided yet".
   */
  acceptanceUnavailable?: boolean;
  /** Provenance.recorded (the run's clock); default as-of. */
  recorded?: Date;
}

export interface ProposedActivity {
  actionId: string;
  activityDefinition: string;
  code: CodeableConcept;
  priority?: string;
  acceptance: AcceptanceStats;
}

export interface OmittedActivity {
  actionId: string;
  activityDefinition: string;
  code: CodeableConcept;
  reason: OmissionReason;
  evidence: string;
}

export interface CarePlanProposal {
  identifier: { system: string; value: string };
  planDefinition: string;
  /** As-of instant of the assessment (ISO 8601). */
  asOf: string;
  /** Undefined when no activity remains. */
  carePlan?: CarePlan;
  provenance?: Provenance;
  /** In CarePlan order. */
  proposed: ProposedActivity[];
  omitted: OmittedActivity[];
  /** Ids of actions whose conditions did not hold. */
  notApplicable: string[];
}

/** Deterministic CarePlan identifier: model, version, patient and as-of (as for the RiskAssessment) plus the PlanDefinition url|version. */
export function carePlanIdentifierValue(modelId: string, modelVersion: string, patientId: string, asOf: Date, planCanonical: string): string {
  return createHash('sha256').update(`${assessmentIdentifierValue(modelId, modelVersion, patientId, asOf)}\u0000${planCanonical}`).digest('hex').slice(0, 40);
}

export function carePlanFullUrl(identifierValue: string): string {
  return `urn:uuid:${stableUuid(`careplan:${identifierValue}`)}`;
}

/** Deterministic Provenance id of a proposal (a FHIR id: at most 64 of [A-Za-z0-9-.]). */
export function carePlanProvenanceId(identifierValue: string): string {
  return `cp-${identifierValue}`;
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object')
    return `{${Object.keys(value)
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(value);
}

/**
 * Hash of the content of a CarePlan as the adapter wrote it: everything except id, meta, text, the hash
 * itself, and supportingInfo references (the server rewrites the RiskAssessment's urn:uuid; their number
 * is kept). A clinician's edit of anything else changes it; the adapter then never touches the plan.
 */
export function carePlanContentHash(cp: CarePlan): string {
  const { id: _id, meta: _meta, text: _text, ...rest } = cp;
  const extension = (rest.extension ?? []).map((e) =>
    e.url === CAREPLAN_PROPOSAL_EXTENSION_URL ? { ...e, extension: (e.extension ?? []).filter((x) => x.url !== 'contentHash' && x.url !== 'supersededBy') } : e,
  );
  const content = { ...rest, extension, supportingInfo: (rest.supportingInfo ?? []).length };
  return createHash('sha256').update(canonicalJson(content)).digest('hex');
}

/**
 * Condition expressions compiled once each (parsing costs some 25 times an evaluation, and every
 * assessment of a run evaluates the same few expressions). Keyed by the expression text.
 */
const compiledConditions = new Map<string, (context: AssessmentContext, env: { assessment: AssessmentContext }) => unknown[]>();

function compiledCondition(expression: string): (context: AssessmentContext, env: { assessment: AssessmentContext }) => unknown[] {
  let fn = compiledConditions.get(expression);
  if (!fn) {
    const compiled = fhirpath.compile(expression);
    fn = (context, env) => compiled(context, env) as unknown[];
    compiledConditions.set(expression, fn);
  }
  return fn;
}

/**
 * Condition results per assessment context: a run asks the same questions of one assessment twice (which
 * care to read, then the proposal itself), and FHIRPath evaluation is most of a proposal's cost. The
 * context is not changed once built (buildAssessmentContext); the entry goes with it.
 */
const conditionResults = new WeakMap<AssessmentContext, Map<string, unknown[]>>();

function evaluateCondition(expression: string, context: AssessmentContext): unknown[] {
  let results = conditionResults.get(context);
  if (!results) conditionResults.set(context, (results = new Map()));
  let result = results.get(expression);
  if (!result) results.set(expression, (result = compiledCondition(expression)(context, { assessment: context })));
  return result;
}

function applies(action: PlanDefinitionAction, context: AssessmentContext, planId: string): boolean {
  for (const c of action.condition ?? []) {
    if (c.kind !== 'applicability') continue;
    let result: unknown[];
    try {
      result = evaluateCondition(c.expression!.expression!, context);
    } catch (err) {
      throw new AdapterError('mapping-invalid', `PlanDefinition ${planId} action ${action.id}: condition failed: ${err instanceof Error ? err.message : String(err)}`, {
        cause: err,
      });
    }
    if (result.length > 1 || (result.length === 1 && typeof result[0] !== 'boolean'))
      throw new AdapterError('mapping-invalid', `PlanDefinition ${planId} action ${action.id}: condition must give one boolean, gave ${JSON.stringify(result).slice(0, 80)}`);
    if (result[0] !== true) return false;
  }
  return true;
}

/** Applicable actions with an ActivityDefinition, in definition order (nested only under an applicable parent). */
function applicableActions(pd: PlanDefinition, context: AssessmentContext): { applicable: PlanDefinitionAction[]; notApplicable: string[] } {
  const applicable: PlanDefinitionAction[] = [];
  const notApplicable: string[] = [];
  const walk = (actions: PlanDefinitionAction[] | undefined) => {
    for (const a of actions ?? []) {
      if (!applies(a, context, pd.id ?? pd.url ?? '?')) {
        notApplicable.push(...flattenActions([a]).map((x) => x.id!));
        continue;
      }
      if (a.definitionCanonical) applicable.push(a);
      walk(a.action);
    }
  };
  walk(pd.action);
  return { applicable, notApplicable };
}

/**
 * The ActivityDefinitions whose actions apply to this assessment, before anything is left out for
 * existing care: what a caller must read the patient's care for. Pure; throws as applyPlanDefinition does.
 */
export function applicableActivities(
  planDefinition: PlanDefinition,
  activityDefinitions: ReadonlyMap<string, ActivityDefinition>,
  context: AssessmentContext,
): ActivityDefinition[] {
  return applicableActions(planDefinition, context).applicable.map((action) => {
    const ad = resolveActivity(activityDefinitions, action.definitionCanonical!);
    if (!ad) throw new AdapterError('mapping-invalid', `PlanDefinition ${canonicalOf(planDefinition)} action ${action.id}: ${action.definitionCanonical} not loaded`);
    return ad;
  });
}

const display = (cc: CodeableConcept) => cc.text ?? cc.coding?.find((c) => c.display)?.display ?? cc.coding?.[0]?.code ?? 'activity';

const REASON_TEXT: Record<OmissionReason, string> = {
  'already-planned': 'already in an active care plan',
  'already-requested': 'already requested',
  'in-progress': 'in progress',
  'recently-done': 'done recently',
  'recent-result': 'a recent result exists',
};

function proposalExtension(context: AssessmentContext, proposed: ProposedActivity[], omitted: OmittedActivity[]): Extension {
  return {
    url: CAREPLAN_PROPOSAL_EXTENSION_URL,
    extension: [
      { url: 'model', valueCoding: { system: MODEL_REGISTRY_SYSTEM, code: context.modelId, version: context.modelVersion } },
      { url: 'riskBand', valueCode: context.band },
      { url: 'asOf', valueDateTime: context.asOf },
      ...proposed.map((p): Extension => ({ url: 'proposedActivity', valueCanonical: p.activityDefinition })),
      ...omitted.map(
        (o): Extension => ({
          url: 'omittedActivity',
          extension: [
            { url: 'definition', valueCanonical: o.activityDefinition },
            { url: 'code', valueCodeableConcept: o.code },
            { url: 'reason', valueCode: o.reason },
            { url: 'evidence', valueReference: { reference: o.evidence } },
          ],
        }),
      ),
    ],
  };
}

/** Applies a PlanDefinition to an assessment (see the module comment). Pure. */
export function applyPlanDefinition(
  planDefinition: PlanDefinition,
  activityDefinitions: ReadonlyMap<string, ActivityDefinition>,
  context: AssessmentContext,
  options: ApplyOptions,
): CarePlanProposal {
  const planCanonical = canonicalOf(planDefinition);
  const identifier = {
    system: options.identifierSystem,
    value: carePlanIdentifierValue(context.modelId, context.modelVersion, options.patientId, options.asOf, planCanonical),
  };
  const { applicable, notApplicable } = applicableActions(planDefinition, context);

  const omitted: OmittedActivity[] = [];
  const candidates: { action: PlanDefinitionAction; ad: ActivityDefinition; activityUrl: string; priority?: string }[] = [];
  for (const action of applicable) {
    const ad = resolveActivity(activityDefinitions, action.definitionCanonical!);
    if (!ad) throw new AdapterError('mapping-invalid', `PlanDefinition ${planCanonical} action ${action.id}: ${action.definitionCanonical} not loaded`);
    const has = findExistingActivity(ad, options.existing ?? {}, options.patientId, options.asOf);
    if (has) omitted.push({ actionId: action.id!, activityDefinition: canonicalOf(ad), code: ad.code!, reason: has.reason, evidence: has.evidence });
    else candidates.push({ action, ad, activityUrl: ad.url!, priority: action.priority ?? ad.priority });
  }
  const stats =
    options.acceptance ?? acceptanceByActivity(options.history ?? [], { modelId: context.modelId, band: context.band, identifierSystem: options.identifierSystem });
  const ranked = rankByAcceptance(candidates, stats);
  const proposed: ProposedActivity[] = ranked.map(({ item, stats: s }) => ({
    actionId: item.action.id!,
    activityDefinition: canonicalOf(item.ad),
    code: item.ad.code!,
    ...(item.priority ? { priority: item.priority } : {}),
    acceptance: s,
  }));

  const base = { identifier, planDefinition: planCanonical, asOf: context.asOf, proposed, omitted, notApplicable };
  if (proposed.length === 0) return base;

  const activity: CarePlanActivity[] = ranked.map(({ item }) => ({
    detail: {
      kind: item.ad.kind as NonNullable<CarePlanActivity['detail']>['kind'],
      instantiatesCanonical: [canonicalOf(item.ad)],
      code: item.ad.code,
      status: 'not-started',
      doNotPerform: false,
      ...(item.ad.timingTiming ? { scheduledTiming: item.ad.timingTiming } : {}),
      description: item.action.description ?? item.ad.description ?? item.action.title ?? display(item.ad.code!),
    },
  }));
  const notes: { text: string }[] = [];
  if (omitted.length)
    notes.push({
      text: `Not proposed because the patient already has them: ${omitted.map((o) => `${display(o.code)} (${REASON_TEXT[o.reason]}: ${o.evidence})`).join('; ')}.`,
    });
  const evidence = proposed.filter((p) => p.acceptance.decided > 0);
  notes.push({
    text: options.acceptanceUnavailable
      ? `Order: priority, then the plan definition's order (the acceptance of this adapter's earlier proposals is not used: this server does not search CarePlans across patients).`
      : `Order: priority, then acceptance of this adapter's earlier proposals for ${context.band}-risk ${context.modelId} patients on this server` +
        (evidence.length
          ? ` (${evidence.map((p) => `${display(p.code)} accepted ${p.acceptance.accepted} of ${p.acceptance.decided}`).join('; ')}), then the plan definition's order.`
          : ' (none decided yet), then the plan definition\'s order.'),
  });

  const carePlan: CarePlan = {
    resourceType: 'CarePlan',
    meta: { security: [AIAST_LABEL] },
    extension: [proposalExtension(context, proposed, omitted)],
    identifier: [identifier],
    instantiatesCanonical: [planCanonical],
    status: 'draft',
    intent: 'proposal',
    // US Core's CarePlan category: an assessment and plan of treatment.
    category: [{ coding: [{ system: CAREPLAN_CATEGORY_SYSTEM, code: 'assess-plan', display: 'Assessment and Plan of Treatment' }] }],
    title: planDefinition.title ?? planDefinition.name,
    description:
      `Proposed by the ${context.modelId} ${context.modelVersion} model for a ${context.band} risk (probability ${context.probability.toFixed(2)}) ` +
      `at ${context.asOf}: a draft for a clinician to accept, change or reject.`,
    subject: { reference: `Patient/${options.patientId}` },
    period: { start: context.asOf },
    created: context.asOf,
    author: { reference: options.deviceReference, display: `${context.modelId} ${context.modelVersion}` },
    ...(options.addresses?.length ? { addresses: options.addresses.map((reference) => ({ reference })) } : {}),
    supportingInfo: [{ reference: options.riskAssessmentReference }],
    activity,
    note: notes,
  };
  carePlan.extension![0].extension!.push({ url: 'contentHash', valueString: carePlanContentHash(carePlan) });
  carePlan.text = carePlanNarrative(carePlan);

  const provenance: Provenance = {
    resourceType: 'Provenance',
    meta: { security: [AIAST_LABEL] },
    target: [{ reference: carePlanFullUrl(identifier.value) }],
    recorded: (options.recorded ?? options.asOf).toISOString(),
    policy: [planCanonical],
    activity: {
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation', code: 'CREATE', display: 'create' }],
      text: `Proposed by ${context.modelId} ${context.modelVersion} from ${planCanonical}`,
    },
    agent: [
      {
        type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'author', display: 'Author' }] },
        who: { reference: options.deviceReference },
      },
    ],
    entity: [{ role: 'source', what: { reference: options.riskAssessmentReference } }],
  };
  return { ...base, carePlan, provenance };
}
