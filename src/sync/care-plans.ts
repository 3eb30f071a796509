import type { CarePlan } from 'fhir/r4.js';
import { AdapterError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { QualitativeRisk } from '../core/types.js';
import { decidedProposals, type CareReader, type CareRecord } from '../fhir/care-pull.js';
import type { FhirClient } from '../fhir/client.js';
import { searchRefusal } from '../fhir/refusal.js';
import { RISK_CODES } from '../models/model-card.js';
import {
  acceptanceByActivity,
  applyPlanDefinition,
  buildAssessmentContext,
  careReadScope,
  planCarePlanWrite,
  type AcceptanceStats,
  type AssessmentContext,
} from '../writeback/care-plan/index.js';
import { fullUrlFor } from '../writeback/plan.js';
import type { FhirWriter } from '../writeback/writer.js';
import { writeBatch, type BatchEntry, type ScoredBatch } from './batch.js';
import type { SyncModel } from './models.js';

/**
 * The CarePlan step of a batch, between scoring and the write: for every patient whose RiskAssessment
 * is written `final` by a model with proposal definitions (mappings/careplans/<model>/), apply the
 * PlanDefinitions to the assessment and plan the CarePlan write, so the proposals go in the same
 * transaction as the assessments.
 *
 * Reads, through the run's pull strategy's care reader (`readCare`: batched for search, one patient per
 * request for per-patient): the patients' CarePlans (their care, and this adapter's earlier proposals a
 * new one may supersede); for the patients with something to propose, active ServiceRequests,
 * Procedures and results with the codes of those activities (behaviour-aware omissions). Once per run,
 * one search (not per patient) for this adapter's decided proposals on the server (acceptance, for the
 * order).
 *
 * A preliminary score (its policy, or shadow mode) gets no proposal: a plan should not rest on a score
 * the model's own policy calls not final. A 412 on the write (a clinician edited a draft between our read
 * and our revocation) re-reads and re-plans the batch, a bounded number of times (`writeWithCarePlans`).
 */

/** Re-plans after a concurrent edit before the batch fails. */
export const MAX_REPLANS = 2;

type Acceptance = Map<string, Map<QualitativeRisk, Map<string, AcceptanceStats>>>;
/** The run's acceptance evidence; `unavailable` when the server refuses the search for it. */
interface AcceptanceRead {
  index: Acceptance;
  requests: number;
  unavailable?: boolean;
}

export class CarePlanStep {
  private acceptance?: Promise<AcceptanceRead>;

  constructor(
    private readonly client: FhirClient,
    private readonly models: SyncModel[],
    private readonly options: { asOf: Date; identifierSystem: string; readCare: CareReader; logger?: Logger },
  ) {}

  /** Whether any model of the run proposes CarePlans. */
  get active(): boolean {
    return this.models.some((m) => m.carePlans);
  }

  /**
   * Plans the proposals of a scored batch: reads the server, then sets `carePlans` on each candidate's
   * assessment plan (replacing an earlier plan of the same batch). Returns the requests made.
   */
  async plan(batch: ScoredBatch, devices: ReadonlyMap<string, string>, recorded: Date): Promise<number> {
    const { asOf, identifierSystem } = this.options;
    const byId = new Map(this.models.map((m) => [m.runner.card.id, m]));
    const candidates: { entry: BatchEntry; model: SyncModel; context: AssessmentContext; device: string }[] = [];
    for (const entry of batch.entries) {
      const plan = entry.plans[0];
      if (!plan) continue;
      delete plan.carePlans;
      const model = byId.get(entry.modelId);
      const device = devices.get(entry.modelId);
      if (entry.status !== 'scored' || !model?.carePlans || !device || !entry.prediction || plan.riskAssessment.status !== 'final') continue;
      const row = entry.row!;
      const context = buildAssessmentContext({
        prediction: entry.prediction,
        asOf,
        row: { columns: row.columns, imputed: row.imputed, raw: row.raw },
        units: model.units,
        ...(entry.applicability ? { applicability: entry.applicability } : {}),
      });
      candidates.push({ entry, model, context, device });
    }
    if (candidates.length === 0) return 0;

    // What would be proposed with no existing care decides what is read: whose activities, which codes, since when.
    const scope = careReadScope(candidates.map((c) => ({ definitions: c.model.carePlans!, context: c.context })), asOf);
    const activityPatients = new Set(candidates.filter((_, i) => scope.withActivities[i]).map((c) => c.entry.patientId));
    const [care, acceptance] = await Promise.all([
      this.options.readCare({
        carePlanPatients: [...new Set(candidates.map((c) => c.entry.patientId))],
        activityPatients: [...activityPatients],
        activityCodes: scope.codes,
        resultsSince: scope.resultsSince,
      }),
      this.acceptanceIndex(),
    ]);

    const none: CareRecord = { carePlans: [], serviceRequests: [], procedures: [], observations: [] };
    for (const c of candidates) {
      const existing = care.byPatient.get(c.entry.patientId) ?? none;
      const stats = acceptance.index.get(c.context.modelId)?.get(c.context.band) ?? new Map<string, AcceptanceStats>();
      const plan = c.entry.plans[0];
      plan.carePlans = c.model.carePlans!.planDefinitions.map((pd) => {
        const proposal = applyPlanDefinition(pd, c.model.carePlans!.activityDefinitions, c.context, {
          ...this.applyOptions(c.entry, c.device, recorded),
          existing,
          acceptance: stats,
          ...(acceptance.unavailable ? { acceptanceUnavailable: true } : {}),
        });
        const write = planCarePlanWrite({ proposal, patientId: c.entry.patientId, onServer: existing.carePlans, identifierSystem, deviceReference: c.device, recorded });
        return { identifier: proposal.identifier, proposal, plan: write };
      });
    }
    this.options.logger?.debug({ patients: candidates.length, withActivities: activityPatients.size, requests: care.requests }, 'care plans planned');
    return care.requests + acceptance.requests;
  }

  private applyOptions(entry: BatchEntry, device: string, recorded: Date) {
    return {
      patientId: entry.patientId,
      asOf: this.options.asOf,
      deviceReference: device,
      riskAssessmentReference: fullUrlFor(entry.plans[0].identifier.value),
      identifierSystem: this.options.identifierSystem,
      addresses: entry.evidence ?? [],
      recorded,
    };
  }

  /**
   * Acceptance of this adapter's earlier proposals per model, band and ActivityDefinition, from one
   * paged search per run; pages are reduced to counts as they come, never held. A server that refuses a
   * CarePlan search naming no patient (single-patient EHR APIs) cannot give it, for any patient: the
   * run's proposals are then ordered without it, and say so.
   */
  private acceptanceIndex(): Promise<AcceptanceRead> {
    this.acceptance ??= (async () => {
      const counts = new Map<string, Map<QualitativeRisk, Map<string, { accepted: number; decided: number }>>>();
      let requests = 0;
      const modelIds = this.models.filter((m) => m.carePlans).map((m) => m.runner.card.id);
      try {
        for await (const page of decidedProposals(this.client, this.options.identifierSystem)) {
          requests++;
          addAcceptance(counts, page.carePlans, modelIds, this.options.identifierSystem);
        }
      } catch (err) {
        if (!searchRefusal(err)?.multiPatient) throw err;
        this.options.logger?.warn({ status: (err as AdapterError).status }, 'the FHIR server refuses CarePlan searches naming no patient: proposals are ordered without the acceptance of earlier ones');
        return { index: new Map(), requests, unavailable: true };
      }
      const index: Acceptance = new Map();
      for (const [model, bands] of counts) {
        const byBand = new Map<QualitativeRisk, Map<string, AcceptanceStats>>();
        for (const [band, urls] of bands) {
          byBand.set(band, new Map([...urls].map(([url, c]) => [url, { ...c, score: (c.accepted + 1) / (c.decided + 2) }])));
        }
        index.set(model, byBand);
      }
      return { index, requests };
    })();
    // A failed read is retried by the next batch, not remembered.
    this.acceptance.catch(() => (this.acceptance = undefined));
    return this.acceptance;
  }
}

/** Adds one page of decided proposals to the acceptance counts (acceptanceByActivity decides what counts). */
function addAcceptance(
  counts: Map<string, Map<QualitativeRisk, Map<string, { accepted: number; decided: number }>>>,
  page: CarePlan[],
  modelIds: string[],
  identifierSystem: string,
): void {
  for (const modelId of modelIds) {
    for (const band of RISK_CODES) {
      const stats = acceptanceByActivity(page, { modelId, band, identifierSystem });
      if (stats.size === 0) continue;
      let bands = counts.get(modelId);
      if (!bands) counts.set(modelId, (bands = new Map()));
      let urls = bands.get(band);
      if (!urls) bands.set(band, (urls = new Map()));
      for (const [url, s] of stats) {
        const c = urls.get(url) ?? { accepted: 0, decided: 0 };
        urls.set(url, { accepted: c.accepted + s.accepted, decided: c.decided + s.decided });
      }
    }
  }
}

/** A write refused because a resource changed since it was read (If-Match): 412, or 409 on some servers. */
export function isConcurrentEdit(err: unknown): boolean {
  return AdapterError.is(err) && (err.status === 412 || err.status === 409);
}

/**
 * The batch's write with its CarePlan proposals: plan them (reading the server), write everything in one
 * transaction; when a revocation's If-Match fails because a clinician edited the draft meanwhile, read
 * again and re-plan (the edited draft is then left alone), at most MAX_REPLANS times. Without a CarePlan
 * step (dry run, shadow mode, proposals off) it is the plain write.
 */
export async function writeWithCarePlans(
  writer: FhirWriter,
  batch: ScoredBatch,
  step: CarePlanStep | undefined,
  devices: ReadonlyMap<string, string> | undefined,
  recorded: Date,
  logger: Logger = silentLogger,
): Promise<{ requests: number }> {
  let requests = 0;
  for (let attempt = 0; ; attempt++) {
    if (step && devices && !batch.dryRun) requests += await step.plan(batch, devices, recorded);
    try {
      const written = await writeBatch(writer, batch);
      return { requests: requests + written.requests };
    } catch (err) {
      const revokes = batch.entries.some((e) => e.plans.some((p) => p.carePlans?.some((c) => c.plan.revoked.length > 0)));
      if (!step || !revokes || !isConcurrentEdit(err) || attempt >= MAX_REPLANS) throw err;
      logger.warn({ attempt: attempt + 1, status: (err as AdapterError).status }, 'a CarePlan changed since it was read: re-reading and re-planning the batch');
    }
  }
}

