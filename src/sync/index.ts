/**
 * The orchestrator: `runSync` (the run loop) over the batch step (`scoreBatch` -> `writeBatch`), with
 * the totals a run reports. `prepareModels` loads models with their mappings; `pullStep` is the pull
 * step shared with `fhir-ml features`.
 */
export { runSync, defaultMapContext, type SyncOptions } from './run.js';
export { scoreBatch, skipEntry, writeBatch, type BatchContext, type BatchEntry, type ScoredBatch } from './batch.js';
export { type AbortStage, type ModelTotals, type PatientResult, type PatientStatus, type SyncResult } from './totals.js';
export { prepareModel, prepareModels, inspectModels, type ModelDirs, type ModelStatus, type SyncModel } from './models.js';
export { pullStep, pullSpecFor } from './pull-step.js';
