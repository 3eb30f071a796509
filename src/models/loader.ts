import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import ort from 'onnxruntime-node';
import { AdapterError, type ErrorCode } from '../core/errors.js';
import { modelCardSchema, type ModelCard } from './model-card.js';
import { describeOnnx, type DeclaredTensor, type OnnxDescription } from './onnx-inspect.js';
import { OnnxModelRunner, type RunnerOptions } from './runner.js';

/**
 * How every ONNX session of the adapter runs: fully optimised, one thread, no spinning. The models are
 * small (a logistic regression, an autoencoder of a few dozen units) and run on a batch of at most a few
 * hundred rows, so more threads only add hand-offs; and onnxruntime's default thread pool spins after
 * each run, which on a shared machine burns cores the FHIR server (or the next batch's parse) needs.
 */
export const SESSION_OPTIONS: ort.InferenceSession.SessionOptions = {
  graphOptimizationLevel: 'all',
  logSeverityLevel: 3,
  executionMode: 'sequential',
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
};

export const CARD_FILE = 'model-card.json';
export const MODEL_FILE = 'model.onnx';
export const SELFTEST_TOLERANCE = 1e-5;

function fail(code: ErrorCode, id: string, file: string, problem: string, cause?: unknown): AdapterError {
  return new AdapterError(code, `model ${id} (${file}): ${problem}`, { cause, details: { modelId: id, file } });
}

/** Reads and validates `<dir>/model-card.json` (no ONNX session). */
export async function readModelCard(dir: string): Promise<ModelCard> {
  const file = join(dir, CARD_FILE);
  const dirId = basename(resolve(dir));
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw fail('model-invalid', dirId, file, `cannot read model card: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  const rawId = typeof (raw as { id?: unknown })?.id === 'string' ? (raw as { id: string }).id : dirId;
  const parsed = modelCardSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw fail('model-invalid', rawId, file, `invalid model card: ${issues}`, parsed.error);
  }
  if (parsed.data.id !== dirId)
    throw fail('model-invalid', parsed.data.id, file, `card id ${parsed.data.id} does not match its folder name ${dirId}`);
  return parsed.data;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function shapeText(s: DeclaredTensor['shape']): string {
  return s ? `[${s.map((d) => d ?? '?').join(',')}]` : 'unknown';
}

/** Declared ONNX inputs/outputs against the card; returns the problems found. */
export function compareDeclaredShapes(card: ModelCard, desc: OnnxDescription): string[] {
  const problems: string[] = [];
  const d = card.featureIds.length;
  if (desc.inputs.length !== 1) problems.push(`ONNX graph declares ${desc.inputs.length} inputs, expected 1`);
  const input = desc.inputs.find((i) => i.name === card.onnx.input.name);
  if (!input) problems.push(`ONNX graph has no input ${card.onnx.input.name} (declares ${desc.inputs.map((i) => i.name).join(', ')})`);
  else {
    if (input.elemType !== 'float32') problems.push(`input ${input.name} is ${input.elemType}, expected float32`);
    const s = input.shape;
    if (!s || s.length !== 2 || s[1] !== d)
      problems.push(`input ${input.name} declared shape ${shapeText(s)} does not match featureIds.length ${d} (expected [N,${d}])`);
    else if (typeof s[0] === 'number' && s[0] !== 1) problems.push(`input ${input.name} has a fixed batch dimension ${s[0]}`);
  }
  for (const spec of [card.onnx.output, ...card.onnx.additionalOutputs]) {
    const out = desc.outputs.find((o) => o.name === spec.name);
    if (!out) {
      problems.push(`ONNX graph has no output ${spec.name} (declares ${desc.outputs.map((o) => o.name).join(', ')})`);
      continue;
    }
    if (out.elemType !== 'float32') problems.push(`output ${out.name} is ${out.elemType}, expected float32`);
    if (!out.shape || out.shape.length !== 2 || out.shape[1] !== 1)
      problems.push(`output ${out.name} declared shape ${shapeText(out.shape)}, expected [N,1]`);
  }
  if (desc.opset !== card.onnx.opset) problems.push(`ONNX default-domain opset ${desc.opset} differs from card opset ${card.onnx.opset}`);
  const metaFeatures = desc.metadata.feature_ids;
  if (metaFeatures !== undefined && metaFeatures !== card.featureIds.join(','))
    problems.push(`ONNX metadata feature_ids (${metaFeatures}) differ from card featureIds (${card.featureIds.join(',')})`);
  const metaId = desc.metadata.model_id;
  if (metaId !== undefined && metaId !== card.id) problems.push(`ONNX metadata model_id ${metaId} differs from card id`);
  return problems;
}

/** Runs the card's golden vectors in one batch; returns the mismatches (empty: passed). */
export async function selfTest(runner: OnnxModelRunner, tolerance = SELFTEST_TOLERANCE): Promise<string[]> {
  const { card } = runner;
  const rows = card.goldenVectors.map((g) => Float32Array.from(g.input));
  const outputs = await runner.run(rows);
  const problems: string[] = [];
  card.goldenVectors.forEach((g, i) => {
    for (const [name, expected] of Object.entries(g.expected)) {
      const got = outputs[name][i];
      if (expected.length !== 1 || !(Math.abs(got - expected[0]) <= tolerance))
        problems.push(`golden vector ${i}${g.note ? ` (${g.note})` : ''}: ${name} = ${got}, expected ${expected.join(',')} (tolerance ${tolerance})`);
    }
  });
  return problems;
}

/**
 * Loads `<dir>` (a folder holding model-card.json and model.onnx): validates the card, checks the
 * sha256 of model.onnx, creates the session, checks names and declared shapes against the card,
 * and runs the golden-vector self-test. Every failure is an AdapterError naming the model and file.
 */
export async function loadModel(dir: string, options: RunnerOptions = {}): Promise<OnnxModelRunner> {
  const card = await readModelCard(dir);
  const file = join(dir, MODEL_FILE);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw fail('model-invalid', card.id, file, `cannot read model file: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  const digest = sha256Hex(bytes);
  if (digest !== card.sha256)
    throw fail('model-invalid', card.id, file, `sha256 mismatch: file is ${digest}, model card says ${card.sha256} (corrupted file or stale card)`);

  let desc: OnnxDescription;
  try {
    desc = describeOnnx(bytes);
  } catch (err) {
    throw fail('model-invalid', card.id, file, `cannot decode ONNX: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, SESSION_OPTIONS);
  } catch (err) {
    throw fail('model-invalid', card.id, file, `onnxruntime cannot load the model: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  try {
    const problems: string[] = [];
    const expectedOut = [card.onnx.output.name, ...card.onnx.additionalOutputs.map((o) => o.name)];
    if (session.inputNames.length !== 1 || session.inputNames[0] !== card.onnx.input.name)
      problems.push(`session inputs [${session.inputNames.join(', ')}] do not match card input ${card.onnx.input.name}`);
    const missingOut = expectedOut.filter((o) => !session.outputNames.includes(o));
    if (missingOut.length > 0) problems.push(`session outputs [${session.outputNames.join(', ')}] lack card outputs ${missingOut.join(', ')}`);
    problems.push(...compareDeclaredShapes(card, desc));
    if (problems.length > 0) throw fail('model-mismatch', card.id, file, [...new Set(problems)].join('; '));

    const runner = new OnnxModelRunner(card, session, dir, options);
    let failures: string[];
    try {
      failures = await selfTest(runner);
    } catch (err) {
      throw fail('model-selftest-failed', card.id, file, `self-test could not run: ${err instanceof Error ? err.message : String(err)}`, err);
    }
    if (failures.length > 0) throw fail('model-selftest-failed', card.id, file, `self-test failed: ${failures.join('; ')}`);
    return runner;
  } catch (err) {
    await session.release().catch(() => undefined);
    throw err;
  }
}

/** Loads `<modelsDir>/<id>` from a model registry folder. */
export async function loadModelById(id: string, modelsDir: string, options: RunnerOptions = {}): Promise<OnnxModelRunner> {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(id)) throw new AdapterError('input-invalid', `invalid model id ${JSON.stringify(id)}`);
  return loadModel(join(modelsDir, id), options);
}
