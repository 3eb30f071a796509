export { bandFor } from './bands.js';
export { explainBatch } from './explain.js';
export { loadModelById, readModelCard } from './loader.js';
export { checkMappingAgainstCard, checkModelAgainstMapping } from './mapping-check.js';
export type { ModelCard } from './model-card.js';
export { modelIds } from './registry.js';
export type { OnnxModelRunner } from './runner.js';
export type { ApplicabilityPolicy, IntendedPopulation } from './model-card.js';
export { assessApplicability, applicabilitySentence, type Applicability, type ApplicabilityInput, type OutOfRange } from './applicability.js';
export {
  compileIntendedUse,
  deceasedAt,
  evaluateIntendedUse,
  intendedUseConditionCodes,
  intendedUseConditions,
  type IntendedUseInput,
  type IntendedUseResult,
} from './intended-use.js';
export { loadOodModel, OodRunner, type OodResult } from './ood.js';
export { rationale, rationaleFeaturesFromMapping, type Rationale, type RationaleFeature, type RationaleItem } from './rationale.js';
export { SKIP_REASONS, type SkipReason } from './skip-reasons.js';
export { loadValueSets, VALUE_SETS_DIR, type ValueSetIndex } from './value-sets.js';
