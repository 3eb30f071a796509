import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { AdapterError } from '../core/errors.js';
import { SESSION_OPTIONS, sha256Hex } from './loader.js';
import type { ModelCard, OodSection } from './model-card.js';
import { OnnxModelRunner, type RunnerOptions } from './runner.js';

/**
 * The out-of-distribution check of a model (models/<id>/ood.onnx, described by the card's `ood`
 * section): an autoencoder whose graph outputs each row's reconstruction error. The batch step runs it
 * on the same Float32Array it hands the model and flags rows whose error is above the card's threshold;
 * the applicability policy (applicability.ts) decides what a flag does.
 */

/** Golden reconstruction errors are matched to this relative tolerance (float32 graph vs float64 build). */
export const OOD_SELFTEST_RELATIVE_TOLERANCE = 1e-4;

export interface OodResult {
  /** Reconstruction error per row. */
  error: Float32Array;
  /** error > threshold (a non-finite error is flagged too). */
  flagged: boolean[];
  threshold: number;
}

export class OodRunner {
  private readonly inner: OnnxModelRunner;

  constructor(
    readonly card: ModelCard & { ood: OodSection },
    readonly session: ort.InferenceSession,
    options: RunnerOptions = {},
  ) {
    // The autoencoder is an ONNX graph with the model's input layout and one [N,1] output: the model
    // runner's batching, layout and finite-value checks apply as they are.
    const { ood } = card;
    this.inner = new OnnxModelRunner({ ...card, onnx: { ...card.onnx, input: ood.input, output: ood.output, additionalOutputs: [] } }, session, '', options);
  }

  get threshold(): number {
    return this.card.ood.threshold;
  }

  /** Reconstruction errors and flags; rows as for ModelRunner.predict (one Float32Array per row, or one flat array). */
  async run(rows: Float32Array[] | Float32Array, n?: number): Promise<OodResult> {
    let error: Float32Array;
    try {
      error = await this.inner.predict(rows, n);
    } catch (err) {
      if (err instanceof AdapterError) throw new AdapterError(err.code, `out-of-distribution check: ${err.message}`, { cause: err });
      throw err;
    }
    const threshold = this.threshold;
    return { error, flagged: Array.from(error, (e) => !(e <= threshold)), threshold };
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}

function fail(card: ModelCard, file: string, problem: string, cause?: unknown): AdapterError {
  return new AdapterError('model-invalid', `model ${card.id} (${file}): out-of-distribution check: ${problem}`, {
    cause,
    details: { modelId: card.id, file },
  });
}

/**
 * Loads `<dir>/ood.onnx` for a card with an `ood` section (undefined without one): checks its sha256
 * against the card, its input and output names, and runs the card's golden vectors. Every failure is an
 * AdapterError `model-invalid` naming the model and the file.
 */
export async function loadOodModel(dir: string, card: ModelCard, options: RunnerOptions = {}): Promise<OodRunner | undefined> {
  const ood = card.ood;
  if (!ood) return undefined;
  const file = join(dir, ood.file);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw fail(card, file, `cannot read ${ood.file}: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  const digest = sha256Hex(bytes);
  if (digest !== ood.sha256) throw fail(card, file, `sha256 mismatch: file is ${digest}, model card says ${ood.sha256}`);
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, SESSION_OPTIONS);
  } catch (err) {
    throw fail(card, file, `onnxruntime cannot load it: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  try {
    if (session.inputNames.length !== 1 || session.inputNames[0] !== ood.input.name)
      throw fail(card, file, `session inputs [${session.inputNames.join(', ')}] do not match card ood.input ${ood.input.name}`);
    if (!session.outputNames.includes(ood.output.name))
      throw fail(card, file, `session outputs [${session.outputNames.join(', ')}] lack card ood.output ${ood.output.name}`);
    const runner = new OodRunner(card as ModelCard & { ood: OodSection }, session, options);
    const { error } = await runner.run(ood.goldenVectors.map((g) => Float32Array.from(g.input)));
    const problems = ood.goldenVectors.flatMap((g, i) => {
      const want = g.reconstructionError;
      return Math.abs(error[i] - want) <= OOD_SELFTEST_RELATIVE_TOLERANCE * Math.max(Math.abs(want), 1e-3)
        ? []
        : [`golden vector ${i}${g.note ? ` (${g.note})` : ''}: reconstruction error ${error[i]}, expected ${want}`];
    });
    if (problems.length > 0) throw fail(card, file, `self-test failed: ${problems.join('; ')}`);
    return runner;
  } catch (err) {
    await session.release().catch(() => undefined);
    throw err;
  }
}
