/**
 * The orchestrator: `runSync` (the run loop) over the batch step (`scoreBatch` -> `writeBatch`), with
 * the totals a run reports. `prepareModels` loads models with their mappings; `pullStep` is the pull
 * step shared with `fhir-ml features`.
 */
export { runSync, defaultMapContext, type SyncOptions } from './run.js';
export { assessmentStatus, scoreBatch, skipEntry, writeBatch, type BatchContext, type BatchEntry, type CarePlanCounts, type ScoredBatch } from './batch.js';
export { CarePlanStep, writeWithCarePlans, isConcurrentEdit, MAX_REPLANS } from './care-plans.js';
export { assessPatient, type PatientAssessment } from './patient-assessment.js';
export { type AbortStage, type ModelTotals, type PatientApplicability, type PatientResult, type PatientStatus, type SyncResult } from './totals.js';
export { prepareModel, prepareModels, inspectModels, type ModelDirs, type ModelStatus, type SyncModel } from './models.js';
export { pullStep, pullSpecFor } from './pull-step.js';
