import { performance } from 'node:perf_hooks';
import { AdapterError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { FhirClient } from '../fhir/client.js';
import { prepareModels, type SyncModel } from '../sync/models.js';
import { runSync } from '../sync/sync.js';
import type { ExclusionCount } from '../db/runs.js';
import type { BatchExecutor, BatchPatientOutcome } from './executor.js';

/**
 * The BatchExecutor over today's orchestrator (`runSync` for exactly the batch's patients). The one
 * file to re-point when the sync is split into a batch step and a run loop: the batch step will also
 * expose each patient's input vector, so `inputHash` can be filled and unchanged patients filtered out
 * before writing (see input-hash.ts).
 */
export interface SyncExecutorDeps {
  clientFor(sourceId: string): FhirClient;
  modelsFor(modelIds: string[]): Promise<SyncModel[]>;
  identifierSystem: string;
  logger?: Logger;
}

export function createSyncExecutor(deps: SyncExecutorDeps): BatchExecutor {
  const logger = deps.logger ?? silentLogger;
  return async (input) => {
    const started = performance.now();
    const client = deps.clientFor(input.sourceId);
    const models = await deps.modelsFor(input.modelIds);
    const result = await runSync(client, models, {
      asOf: input.asOf,
      patientIds: input.patientIds,
      batchSize: Math.max(1, input.patientIds.length),
      identifierSystem: deps.identifierSystem,
      collectPatients: true,
      logger,
    });
    // One runSync batch per job: any failure is the whole batch's. Thrown, so the queue retries it.
    if (result.aborted) throw result.aborted.error;
    if (result.failures.length) {
      const f = result.failures[0];
      throw new AdapterError(f.code as AdapterError['code'], f.message, { transient: f.code === 'fhir-unavailable' });
    }
    const versions = new Map(result.models.map((m) => [m.id, m.version]));
    const outcomes: BatchPatientOutcome[] = result.results.map((r) => ({
      patientId: r.patientId,
      modelId: r.modelId,
      modelVersion: versions.get(r.modelId),
      status: r.status,
      reason: r.reason,
      probability: r.probability,
      band: r.band,
      write: r.write,
      counts: r.counts,
      excluded: r.excluded as Record<string, number> | undefined,
      explanation: r.explanation,
    }));
    const exclusions: ExclusionCount[] = [];
    for (const [modelId, t] of Object.entries(result.byModel)) {
      for (const [reason, count] of Object.entries(t.excludedByReason)) exclusions.push({ modelId, kind: 'excluded', reason, count: count as number });
      for (const [reason, count] of Object.entries(t.partIssuesByReason)) exclusions.push({ modelId, kind: 'part-issue', reason, count: count as number });
      for (const [reason, count] of Object.entries(t.skippedByReason)) exclusions.push({ modelId, kind: 'skipped', reason, count });
    }
    return { outcomes, exclusions, requests: result.requests, unattributed: result.unattributed, durationMs: performance.now() - started };
  };
}

/**
 * Models loaded once per process (ONNX session, checks, golden self-test) and shared by every batch and
 * API request; a model that fails to load fails its callers with the loader's error, every time.
 */
export function createModelCache(dirs: { modelsDir: string; mappingsDir: string }): (modelIds: string[]) => Promise<SyncModel[]> {
  const cache = new Map<string, Promise<SyncModel>>();
  return (modelIds) =>
    Promise.all(
      modelIds.map((id) => {
        let model = cache.get(id);
        if (!model) {
          model = prepareModels([id], dirs).then((m) => m[0]);
          cache.set(id, model);
        }
        return model;
      }),
    );
}
