/**
 * A small dense autoencoder trained in plain TypeScript, deterministically: Float64 arithmetic, a seeded
 * mulberry32 for initialisation and shuffling, Adam with fixed hyper-parameters and a fixed number of
 * epochs. The same rows and spec always give the same weights (V8's Math.tanh/exp/sqrt are
 * platform-independent software implementations), so the exported ONNX file is reproducible byte for byte.
 *
 * Layers: widths [d, h, b, h, d]; tanh after every hidden layer except the bottleneck (the middle layer),
 * which is linear, as is the output. Loss: per row, the mean over columns of the squared reconstruction
 * error; averaged over each mini-batch.
 */
import { mulberry32, shuffle } from './prng.js';

export interface AutoencoderSpec {
  layers: number[];
  epochs: number;
  batchSize: number;
  learningRate: number;
  seed: number;
}

export interface DenseLayer {
  /** Row-major [in][out]. */
  weights: Float64Array;
  bias: Float64Array;
  inputs: number;
  outputs: number;
  tanh: boolean;
}

export interface Autoencoder {
  layers: DenseLayer[];
}

const BETA1 = 0.9;
const BETA2 = 0.999;
const EPSILON = 1e-8;

/** Whether the transition into layer index `to` (1-based over the widths) applies tanh. */
function usesTanh(widths: number[], to: number): boolean {
  const bottleneck = (widths.length - 1) / 2;
  return to !== widths.length - 1 && to !== bottleneck;
}

export function initAutoencoder(spec: AutoencoderSpec): Autoencoder {
  const { layers: widths } = spec;
  if (widths.length < 3 || widths.length % 2 === 0 || widths[0] !== widths.at(-1))
    throw new Error(`autoencoder widths must be symmetric with an odd count, got [${widths}]`);
  const rand = mulberry32(spec.seed);
  const layers: DenseLayer[] = [];
  for (let l = 0; l + 1 < widths.length; l++) {
    const inputs = widths[l];
    const outputs = widths[l + 1];
    const limit = Math.sqrt(6 / (inputs + outputs)); // Glorot uniform
    const weights = new Float64Array(inputs * outputs);
    for (let k = 0; k < weights.length; k++) weights[k] = (2 * rand() - 1) * limit;
    layers.push({ weights, bias: new Float64Array(outputs), inputs, outputs, tanh: usesTanh(widths, l + 1) });
  }
  return { layers };
}

/** Forward pass; returns every layer's activation (index 0 is the input). */
export function forward(net: Autoencoder, x: ArrayLike<number>): Float64Array[] {
  const acts: Float64Array[] = [Float64Array.from(x)];
  for (const layer of net.layers) {
    const a = acts.at(-1)!;
    const z = Float64Array.from(layer.bias);
    for (let i = 0; i < layer.inputs; i++) {
      const ai = a[i];
      if (ai === 0) continue;
      const row = i * layer.outputs;
      for (let o = 0; o < layer.outputs; o++) z[o] += ai * layer.weights[row + o];
    }
    if (layer.tanh) for (let o = 0; o < z.length; o++) z[o] = Math.tanh(z[o]);
    acts.push(z);
  }
  return acts;
}

/** Mean over columns of the squared reconstruction error of one row. */
export function reconstructionError(net: Autoencoder, x: ArrayLike<number>): number {
  const out = forward(net, x).at(-1)!;
  let s = 0;
  for (let j = 0; j < out.length; j++) s += (out[j] - x[j]) ** 2;
  return s / out.length;
}

/** Trains in place of a fresh initialisation; returns the network and the last epoch's mean loss. */
export function trainAutoencoder(rows: number[][], spec: AutoencoderSpec): { net: Autoencoder; finalLoss: number } {
  const net = initAutoencoder(spec);
  const d = spec.layers[0];
  if (rows.some((r) => r.length !== d)) throw new Error(`every training row needs ${d} values`);
  const m = net.layers.map((l) => ({ w: new Float64Array(l.weights.length), b: new Float64Array(l.bias.length) }));
  const v = net.layers.map((l) => ({ w: new Float64Array(l.weights.length), b: new Float64Array(l.bias.length) }));
  const rand = mulberry32((spec.seed ^ 0x5bd1e995) >>> 0);
  const order = rows.map((_, i) => i);
  let beta1t = 1;
  let beta2t = 1;
  let finalLoss = NaN;
  for (let epoch = 0; epoch < spec.epochs; epoch++) {
    shuffle(order, rand);
    let epochLoss = 0;
    for (let start = 0; start < order.length; start += spec.batchSize) {
      const batch = order.slice(start, start + spec.batchSize);
      const gw = net.layers.map((l) => new Float64Array(l.weights.length));
      const gb = net.layers.map((l) => new Float64Array(l.bias.length));
      for (const idx of batch) {
        const x = rows[idx];
        const acts = forward(net, x);
        const out = acts.at(-1)!;
        // dLoss/dOut for the row's mean squared error, averaged over the batch
        let delta = new Float64Array(d);
        for (let j = 0; j < d; j++) {
          const e = out[j] - x[j];
          epochLoss += (e * e) / d;
          delta[j] = (2 * e) / d / batch.length;
        }
        for (let l = net.layers.length - 1; l >= 0; l--) {
          const layer = net.layers[l];
          if (layer.tanh) {
            const a = acts[l + 1];
            for (let o = 0; o < layer.outputs; o++) delta[o] *= 1 - a[o] * a[o];
          }
          const input = acts[l];
          const prev = new Float64Array(layer.inputs);
          for (let i = 0; i < layer.inputs; i++) {
            const row = i * layer.outputs;
            let s = 0;
            for (let o = 0; o < layer.outputs; o++) {
              gw[l][row + o] += input[i] * delta[o];
              s += layer.weights[row + o] * delta[o];
            }
            prev[i] = s;
          }
          for (let o = 0; o < layer.outputs; o++) gb[l][o] += delta[o];
          delta = prev;
        }
      }
      beta1t *= BETA1;
      beta2t *= BETA2;
      const lr = (spec.learningRate * Math.sqrt(1 - beta2t)) / (1 - beta1t);
      net.layers.forEach((layer, l) => {
        adam(layer.weights, gw[l], m[l].w, v[l].w, lr);
        adam(layer.bias, gb[l], m[l].b, v[l].b, lr);
      });
    }
    finalLoss = epochLoss / rows.length;
  }
  if (!Number.isFinite(finalLoss)) throw new Error('autoencoder training diverged');
  return { net, finalLoss };
}

function adam(param: Float64Array, grad: Float64Array, m: Float64Array, v: Float64Array, lr: number): void {
  for (let k = 0; k < param.length; k++) {
    m[k] = BETA1 * m[k] + (1 - BETA1) * grad[k];
    v[k] = BETA2 * v[k] + (1 - BETA2) * grad[k] * grad[k];
    param[k] -= (lr * m[k]) / (Math.sqrt(v[k]) + EPSILON);
  }
}

/** A copy whose parameters are rounded as exported (to `round`, then float32). */
export function exportedParameters(net: Autoencoder, round: (x: number) => number): Autoencoder {
  return {
    layers: net.layers.map((l) => ({
      ...l,
      weights: Float64Array.from(l.weights, (w) => Math.fround(round(w))),
      bias: Float64Array.from(l.bias, (b) => Math.fround(round(b))),
    })),
  };
}
