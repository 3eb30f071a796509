export { bandFor } from './bands.js';
export { explain, explainBatch, type Contribution } from './explain.js';
export { CARD_FILE, MODEL_FILE, SELFTEST_TOLERANCE, loadModel, loadModelById, readModelCard, selfTest, sha256Hex } from './loader.js';
export { checkMappingAgainstCard, checkModelAgainstMapping, mappingInputColumns } from './mapping-check.js';
export { RISK_CODES, RISK_PROBABILITY_SYSTEM, modelCardSchema, type ModelCard } from './model-card.js';
export { describeOnnx, type OnnxDescription } from './onnx-inspect.js';
export { MODELS_DIR, packageRoot } from './paths.js';
export { listModels, type ModelSummary } from './registry.js';
export { DEFAULT_BATCH_SIZE, OnnxModelRunner, type ModelRunner, type RunnerOptions } from './runner.js';
