import ort from 'onnxruntime-node';
import { AdapterError, toAdapterError } from '../core/errors.js';
import type { ModelCard } from './model-card.js';

/** Anything that turns input rows into probabilities. */
export interface ModelRunner {
  readonly card: ModelCard;
  /**
   * Probabilities, one per row. `rows` is either one Float32Array per row or one flat row-major
   * Float32Array of n * featureIds.length values (n may then be omitted).
   */
  predict(rows: Float32Array[] | Float32Array, n?: number): Promise<Float32Array>;
}

export interface RunnerOptions {
  /** Rows per session.run call. */
  batchSize?: number;
}

export const DEFAULT_BATCH_SIZE = 1024;

/** Runs an ONNX model, many patients per session.run call. */
export class OnnxModelRunner implements ModelRunner {
  readonly batchSize: number;
  /** Sessions that live and die with this model (its out-of-distribution check): released by `close`. */
  private readonly companions: { close(): Promise<void> }[] = [];

  constructor(
    readonly card: ModelCard,
    readonly session: ort.InferenceSession,
    readonly dir: string,
    options: RunnerOptions = {},
  ) {
    this.batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1) throw new RangeError('batchSize must be a positive integer');
  }

  get outputNames(): string[] {
    return [this.card.onnx.output.name, ...this.card.onnx.additionalOutputs.map((o) => o.name)];
  }

  async predict(rows: Float32Array[] | Float32Array, n?: number): Promise<Float32Array> {
    return (await this.run(rows, n))[this.card.onnx.output.name];
  }

  /** Every output of the model, each flattened to n values (outputs are [N,1]). */
  async run(rows: Float32Array[] | Float32Array, n?: number): Promise<Record<string, Float32Array>> {
    const { flat, count } = this.toFlat(rows, n);
    const d = this.card.featureIds.length;
    const names = this.outputNames;
    const out: Record<string, Float32Array> = Object.fromEntries(names.map((name) => [name, new Float32Array(count)]));
    for (let start = 0; start < count; start += this.batchSize) {
      const size = Math.min(this.batchSize, count - start);
      const chunk = flat.slice(start * d, (start + size) * d);
      let result: ort.InferenceSession.OnnxValueMapType;
      try {
        const feeds = { [this.card.onnx.input.name]: new ort.Tensor('float32', chunk, [size, d]) };
        result = await this.session.run(feeds, names);
      } catch (err) {
        throw toAdapterError(err, 'inference-failed', `model ${this.card.id}: session.run failed`);
      }
      for (const name of names) {
        const t = result[name] as ort.Tensor | undefined;
        if (!t || t.type !== 'float32' || t.data.length !== size)
          throw new AdapterError(
            'inference-failed',
            `model ${this.card.id}: output ${name} has type ${t?.type} dims [${t?.dims.join(',')}], expected float32 [${size},1]`,
          );
        out[name].set(t.data as Float32Array, start);
      }
    }
    return out;
  }

  /** Ties a companion session (the model's OOD check) to this runner: `close` releases it too. */
  closeWith(companion: { close(): Promise<void> }): void {
    this.companions.push(companion);
  }

  async close(): Promise<void> {
    const companions = this.companions.splice(0);
    await Promise.all(companions.map((c) => c.close().catch(() => undefined)));
    await this.session.release();
  }

  private toFlat(rows: Float32Array[] | Float32Array, n?: number): { flat: Float32Array; count: number } {
    const d = this.card.featureIds.length;
    let flat: Float32Array;
    if (Array.isArray(rows)) {
      if (n !== undefined && n !== rows.length)
        throw new AdapterError('inference-failed', `model ${this.card.id}: n = ${n} but ${rows.length} rows given`);
      flat = new Float32Array(rows.length * d);
      rows.forEach((r, i) => {
        if (r.length !== d)
          throw new AdapterError('inference-failed', `model ${this.card.id}: row ${i} has ${r.length} values, expected ${d} (${this.card.featureIds.join(', ')})`);
        flat.set(r, i * d);
      });
    } else {
      flat = rows;
      if (flat.length % d !== 0 || (n !== undefined && flat.length !== n * d))
        throw new AdapterError('inference-failed', `model ${this.card.id}: ${flat.length} values is not ${n ?? 'n'} rows of ${d} columns`);
    }
    for (let k = 0; k < flat.length; k++) {
      if (!Number.isFinite(flat[k]))
        throw new AdapterError(
          'inference-failed',
          `model ${this.card.id}: row ${Math.floor(k / d)} column ${this.card.featureIds[k % d]} is ${flat[k]}; impute missing values in the mapping`,
        );
    }
    return { flat, count: flat.length / d };
  }
}
