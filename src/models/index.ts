export { bandFor } from './bands.js';
export { explainBatch } from './explain.js';
export { loadModelById, readModelCard } from './loader.js';
export { checkMappingAgainstCard, checkModelAgainstMapping } from './mapping-check.js';
export type { ModelCard } from './model-card.js';
export { modelIds } from './registry.js';
export type { OnnxModelRunner } from './runner.js';
