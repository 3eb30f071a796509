import { performance } from 'node:perf_hooks';
import type { App } from '../app.js';
import { systemClock, type Clock } from '../core/clock.js';
import { AdapterError } from '../core/errors.js';
import { writeModeOf, type SourceConfig } from '../config/sources.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { PatientScoreStore } from '../db/patient-scores.js';
import type { ExclusionCount } from '../db/runs.js';
import type { CareReader } from '../fhir/care-pull.js';
import type { FhirClient } from '../fhir/client.js';
import { newTally, tallied } from '../fhir/traffic.js';
import { scoreBatch, type BatchEntry, type ScoredBatch } from '../sync/batch.js';
import { CarePlanStep, writeWithCarePlans } from '../sync/care-plans.js';
import type { SyncModel } from '../sync/models.js';
import type { PullStrategyFactory } from '../fhir/strategy.js';
import { pullStrategyFor } from '../sync/pull-step.js';
import { batchOutcome, patientResult, type ModelTotals } from '../sync/totals.js';
import { FhirWriter } from '../writeback/writer.js';
import type { BatchExecutor, BatchInput, BatchPatientOutcome, BatchReport } from './executor.js';
import { decideWrite, inputHash } from './input-hash.js';

/**
 * The BatchExecutor of the service: one batch of one run through the orchestrator's steps, directly:
 * the pull step (`pullStep`), the batch step (`scoreBatch`: intended-use gates, applicability, the
 * card's policy), the write decision on each scored patient's input hash, the CarePlan proposals and the
 * one write (`writeWithCarePlans`), and the batch's counts (`batchOutcome`). Models, the mapper's
 * services and the identifier system come from the composition root (`app`); clients from the service
 * (one per source, with its metrics observer). Every FHIR exchange of the batch is counted by a request
 * tally bound to it (`fhir/traffic`), so concurrent batches on one client each count their own.
 *
 * A scored patient whose inputs (vector, imputations, resources used) and model version are those of
 * its last written score (PatientScoreStore) gets no new RiskAssessment: its plans are dropped before
 * the write and it is reported `unchanged` with the hash, which the worker records again.
 */
export interface SyncExecutorDeps {
  app: Pick<App, 'models' | 'mapContext' | 'config'>;
  clientFor(sourceId: string): FhirClient;
  scores: Pick<PatientScoreStore, 'get'>;
  /** A source's pull strategy (search when absent): src/sync/pull-strategies.ts servicePullStrategy. */
  pullStrategyFor?: (sourceId: string) => PullStrategyFactory;
  /** The batches of a run that staged a Bulk Data export read staging (serviceBulkPulls().staged). */
  stagedPullFor?: (sourceId: string) => PullStrategyFactory;
  /** The sources (their `options.shadow`/`options.carePlans`); a source not here is written as `sync` says. */
  sources?: ReadonlyMap<string, Pick<SourceConfig, 'options'>>;
  clock?: Clock;
  logger?: Logger;
}

/** Runs whose CarePlan step a process keeps. */
const MAX_RUNS_KEPT = 4;

/** Reason of an `unchanged` outcome. */
export const UNCHANGED_REASON = 'inputs-unchanged';

export function createSyncExecutor(deps: SyncExecutorDeps): BatchExecutor {
  const logger = deps.logger ?? silentLogger;
  const clock = deps.clock ?? systemClock;
  const { identifierSystem } = deps.app.config.sync;
  const writeModeFor = (sourceId: string) => writeModeOf(deps.sources?.get(sourceId), deps.app.config.sync);
  // A model's Device is created once per source and model version (conditional create), then reused by
  // every batch of this process. A failed lookup is not cached.
  const devices = new Map<string, Promise<string>>();
  // A run's CarePlan step, shared by its batches in this process (it reads the acceptance of earlier
  // proposals once per run); the last few runs are kept.
  const carePlanSteps = new Map<string, CarePlanStep>();
  // Its care reads go through the care reader of the strategy that pulled the run's first batch here: every
  // batch of a source is pulled with the source's strategy, so the others' would read the same way.
  const carePlanStepFor = (input: BatchInput, client: FhirClient, models: SyncModel[], readCare: CareReader): CarePlanStep | undefined => {
    // Shadow mode (silent validation: preliminary RiskAssessments) and `carePlans: false` propose none.
    const { shadow, carePlans } = writeModeFor(input.sourceId);
    if (shadow || !carePlans) return undefined;
    const key = `${input.runId}\u0000${input.modelIds.join(',')}`;
    let step = carePlanSteps.get(key);
    if (!step) {
      step = new CarePlanStep(client, models, { asOf: input.asOf, identifierSystem, readCare, logger });
      carePlanSteps.set(key, step);
      for (const old of carePlanSteps.keys()) if (carePlanSteps.size > MAX_RUNS_KEPT) carePlanSteps.delete(old);
    }
    return step.active ? step : undefined;
  };
  const deviceFor = (sourceId: string, writer: FhirWriter, model: SyncModel): Promise<string> => {
    const card = model.runner.card;
    const key = `${sourceId}\u0000${card.id}\u0000${card.version}`;
    let device = devices.get(key);
    if (!device) {
      device = writer.ensureDevice(card);
      devices.set(key, device);
      device.catch(() => devices.delete(key));
    }
    return device;
  };

  const execute = async (input: BatchInput): Promise<Omit<BatchReport, 'requests' | 'durationMs'>> => {
    const stopped = () => {
      if (input.signal?.aborted) throw new AdapterError('internal', 'the batch was stopped: its worker is shutting down or lost it', { transient: true });
    };
    const client = deps.clientFor(input.sourceId);
    const models = await deps.app.models(input.modelIds);
    const writer = new FhirWriter(client, identifierSystem, logger);
    const deviceRefs = new Map<string, string>();
    for (const model of models) deviceRefs.set(model.runner.card.id, await deviceFor(input.sourceId, writer, model));
    stopped();
    if (input.staged && !deps.stagedPullFor) throw new AdapterError('config-invalid', 'a batch of a staged Bulk Data run reached a worker without staging');
    const factory = input.staged ? deps.stagedPullFor!(input.sourceId) : deps.pullStrategyFor?.(input.sourceId);
    const strategy = await pullStrategyFor(models, input.asOf, client, factory, logger);
    const pulled = await strategy.pull(input.patientIds);
    stopped();
    const recorded = clock.now();
    const { shadow } = writeModeFor(input.sourceId);
    const batch = await scoreBatch(input.patientIds, pulled, {
      models,
      asOf: input.asOf,
      identifierSystem,
      devices: deviceRefs,
      mapContext: deps.app.mapContext,
      recorded,
      shadow,
    });
    // Patients whose inputs are those of their last score lose their plans here, so they get neither a
    // RiskAssessment nor a CarePlan proposal.
    const decisions = await decideWrites(batch, models, input.sourceId, deps.scores, shadow);
    stopped();
    const written = await writeWithCarePlans(writer, batch, carePlanStepFor(input, client, models, strategy.readCare), deviceRefs, recorded, logger);
    const outcome = batchOutcome(batch, written.requests);
    const versions = new Map(models.map((m) => [m.runner.card.id, m.runner.card.version]));
    const outcomes: BatchPatientOutcome[] = batch.entries.map((entry) => {
      const r = patientResult(entry);
      const decision = decisions.get(entry);
      const unchanged = decision?.unchanged === true;
      return {
        patientId: r.patientId,
        modelId: r.modelId,
        modelVersion: versions.get(r.modelId),
        status: unchanged ? 'unchanged' : r.status,
        reason: unchanged ? UNCHANGED_REASON : r.reason,
        probability: r.probability,
        band: r.band,
        write: r.write,
        counts: r.counts,
        excluded: r.excluded as Record<string, number> | undefined,
        explanation: r.explanation,
        inputHash: decision?.hash,
      };
    });
    return { outcomes, exclusions: exclusionCounts(outcome.byModel), unattributed: outcome.unattributed };
  };

  return async (input) => {
    const started = performance.now();
    const tally = newTally();
    const report = await tallied(tally, () => execute(input));
    return { ...report, requests: tally.requests, durationMs: performance.now() - started };
  };
}

/**
 * Per scored entry: its input hash, and whether its inputs are those of the patient's last score (then
 * its plans are dropped: nothing is written for it).
 */
async function decideWrites(
  batch: ScoredBatch,
  models: SyncModel[],
  sourceId: string,
  scores: Pick<PatientScoreStore, 'get'>,
  shadow: boolean,
): Promise<Map<BatchEntry, { hash: string; unchanged: boolean }>> {
  const out = new Map<BatchEntry, { hash: string; unchanged: boolean }>();
  for (const model of models) {
    const card = model.runner.card;
    const scored = batch.entries.filter((e) => e.modelId === card.id && e.status === 'scored' && e.row);
    if (scored.length === 0) continue;
    const previous = await scores.get(sourceId, card.id, scored.map((e) => e.patientId));
    for (const entry of scored) {
      const row = entry.row!;
      const hash = inputHash({
        modelId: card.id,
        modelVersion: card.version,
        mappingVersion: row.mappingVersion,
        columns: row.columns,
        values: row.values,
        imputed: row.imputed,
        basis: row.basis,
        shadow,
      });
      const decision = decideWrite(previous.get(entry.patientId), { modelVersion: card.version, inputHash: hash });
      if (!decision.write) entry.plans = [];
      out.set(entry, { hash, unchanged: !decision.write });
    }
  }
  return out;
}

/** Excluded resources, parts and skipped patients of a batch, by model and reason. */
function exclusionCounts(byModel: Record<string, ModelTotals>): ExclusionCount[] {
  const out: ExclusionCount[] = [];
  for (const [modelId, t] of Object.entries(byModel)) {
    for (const [reason, count] of Object.entries(t.excludedByReason)) out.push({ modelId, kind: 'excluded', reason, count: count as number });
    for (const [reason, count] of Object.entries(t.partIssuesByReason)) out.push({ modelId, kind: 'part-issue', reason, count: count as number });
    for (const [reason, count] of Object.entries(t.skippedByReason)) out.push({ modelId, kind: 'skipped', reason, count });
  }
  return out;
}
