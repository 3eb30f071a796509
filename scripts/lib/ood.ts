/**
 * Builds a model's out-of-distribution check: trains the autoencoder (./autoencoder.ts) on the model's
 * training rows, exports it to ONNX with the reconstruction error as the graph output, sets the threshold
 * and measures flag rates on the evaluation sets. Returns the ONNX bytes, the card's `ood` section and the
 * evaluation file (the exact rows behind every flag rate in the card, so a test can reproduce them with
 * onnxruntime). Pure function of its inputs.
 */
import { createHash } from 'node:crypto';
import type { ModelCardInput } from '../../src/models/model-card.js';
import { exportedParameters, reconstructionError, trainAutoencoder, type Autoencoder, type AutoencoderSpec } from './autoencoder.js';
import { dec, sig, stableJson } from './numfmt.js';
import { buildModel, FLOAT, floatTensor, node, onnx, valueInfo } from './onnx-build.js';

export const OOD_FILE = 'ood.onnx';
export const OOD_OPSET = 13;
/** Training rows at or below this quantile of reconstruction error are in distribution. */
export const THRESHOLD_QUANTILE = 0.99;
/** No evaluated row may lie this close (relative) to the threshold: float32 runtimes must agree on every flag. */
const MIN_RELATIVE_MARGIN = 1e-4;

export interface OodSet {
  id: string;
  description: string;
  rows: number[][];
}

export interface OodBuildInput {
  modelId: string;
  modelVersion: string;
  featureIds: readonly string[];
  inputName: string;
  /** Training rows in model-input space (what the model sees). */
  training: { rows: number[][]; source: string };
  /** Evaluated besides the training rows: held-out, then shifted sets. */
  sets: OodSet[];
  spec: AutoencoderSpec;
  /** Standardise inside the graph with the training mean and population std (for unstandardised model inputs). */
  scaleInputs: boolean;
  evaluationFile: string;
  /** What the flag rates do not show (selection, sample size, synthetic rows ...). */
  limitations: string[];
}

export type OodSectionInput = NonNullable<ModelCardInput['ood']>;

const round6 = (rows: number[][]) => rows.map((r) => r.map((v) => dec(v, 6)));

export function buildOod(input: OodBuildInput): { onnx: Uint8Array; section: OodSectionInput; evaluationJson: string } {
  const d = input.featureIds.length;
  const trainRows = round6(input.training.rows);
  const sets = input.sets.map((s) => ({ ...s, rows: round6(s.rows) }));

  let scaling: { center: number[]; scale: number[] } | null = null;
  if (input.scaleInputs) {
    const center = Array.from({ length: d }, (_, j) => sig(trainRows.reduce((a, r) => a + r[j], 0) / trainRows.length, 7));
    const scale = center.map((c, j) => {
      const sd = Math.sqrt(trainRows.reduce((a, r) => a + (r[j] - c) ** 2, 0) / trainRows.length);
      return sig(sd > 0 ? sd : 1, 7);
    });
    scaling = { center, scale };
  }
  // What the graph computes before encoding, in float32 steps (Sub, then Div).
  const encode = (row: number[]): number[] =>
    row.map((v, j) => {
      const x = Math.fround(v);
      return scaling ? Math.fround(Math.fround(x - Math.fround(scaling.center[j])) / Math.fround(scaling.scale[j])) : x;
    });

  const { net, finalLoss } = trainAutoencoder(trainRows.map(encode), input.spec);
  const exported = exportedParameters(net, (x) => sig(x, 7));
  const errorOf = (row: number[]) => reconstructionError(exported, encode(row));

  const trainErrors = trainRows.map(errorOf).sort((a, b) => a - b);
  const k = Math.ceil(THRESHOLD_QUANTILE * trainErrors.length) - 1;
  const threshold = sig((trainErrors[k] + trainErrors[Math.min(k + 1, trainErrors.length - 1)]) / 2, 7);

  const evaluate = (id: string, description: string, rows: number[][]) => {
    const errors = rows.map(errorOf);
    const close = errors.find((e) => Math.abs(e - threshold) / threshold < MIN_RELATIVE_MARGIN);
    if (close !== undefined) throw new Error(`${input.modelId} OOD: a row of set ${id} has error ${close}, too close to the threshold ${threshold}`);
    const flagged = errors.filter((e) => e > threshold).length;
    return { id, description, n: rows.length, flagged, flagRate: dec(flagged / Math.max(rows.length, 1), 4) };
  };
  const evaluation = [
    evaluate('training', `the ${trainRows.length} training rows (by construction about ${dec(1 - THRESHOLD_QUANTILE, 2) * 100}% flagged)`, trainRows),
    ...sets.map((s) => evaluate(s.id, s.description, s.rows)),
  ];

  const onnxBytes = exportOnnx(input, exported, scaling);
  const golden = [
    { note: 'training mean', input: scaling ? scaling.center : input.featureIds.map(() => 0) },
    ...sets.map((s) => ({ note: `first row of ${s.id}`, input: s.rows[0] })),
  ].map((g) => ({ ...g, reconstructionError: sig(errorOf(g.input), 7) }));

  const section: OodSectionInput = {
    file: 'ood.onnx',
    sha256: createHash('sha256').update(onnxBytes).digest('hex'),
    opset: OOD_OPSET,
    input: { name: input.inputName, elemType: 'float32', shape: ['N', d] },
    output: { name: 'reconstruction_error', elemType: 'float32', shape: ['N', 1] },
    method:
      'Autoencoder on the model-input columns; a row is out of distribution when its reconstruction error is above the threshold. ' +
      'Reconstruction error = mean over columns of the squared difference between the (scaled) input and its reconstruction.',
    architecture: {
      layers: input.spec.layers,
      hiddenActivation: 'tanh',
      bottleneckActivation: 'linear',
      outputActivation: 'linear',
      inputScaling: scaling,
      error: scaling
        ? 'mean squared error in the scaled space ((x - center) / scale), per row'
        : 'mean squared error in model-input space (already standardised), per row',
    },
    training: {
      rows: trainRows.length,
      source: input.training.source,
      optimizer: 'Adam (beta1 0.9, beta2 0.999, epsilon 1e-8), Glorot-uniform initialisation, Float64, mini-batches reshuffled every epoch',
      learningRate: input.spec.learningRate,
      epochs: input.spec.epochs,
      batchSize: input.spec.batchSize,
      seed: input.spec.seed,
      finalLoss: sig(finalLoss, 4),
    },
    threshold,
    thresholdRule:
      `midpoint between the ${THRESHOLD_QUANTILE * 100}th-percentile order statistic of the training rows' reconstruction errors ` +
      `(index ceil(${THRESHOLD_QUANTILE} n) - 1 of the sorted errors) and the next larger one, so that float32 differences between ` +
      `runtimes cannot flip a training row; flagged when error > threshold`,
    evaluation,
    evaluationFile: input.evaluationFile,
    limitations: input.limitations,
    goldenVectors: golden,
  };

  // One row per line: arrays of numbers are written compactly.
  const evaluationJson = stableJson({
    modelId: input.modelId,
    modelVersion: input.modelVersion,
    note: 'Rows behind the flag rates of the model card `ood.evaluation`, in model-input column order, rounded to 6 decimals (these rounded rows are the evaluated rows). Generated by the model build; do not edit.',
    columns: input.featureIds,
    threshold,
    sets: [{ id: 'training', rows: trainRows }, ...sets.map((s) => ({ id: s.id, rows: s.rows }))],
  }).replace(/\[\s+(-?[\d.e+-]+(?:,\s+-?[\d.e+-]+)*)\s+\]/g, (_, nums: string) => `[${nums.split(/,\s+/).join(', ')}]`);
  return { onnx: onnxBytes, section, evaluationJson };
}

function exportOnnx(input: OodBuildInput, net: Autoencoder, scaling: { center: number[]; scale: number[] } | null): Uint8Array {
  const d = input.featureIds.length;
  const nodes = [];
  const initializers = [];
  let x = input.inputName;
  if (scaling) {
    initializers.push(floatTensor('center', [d], scaling.center), floatTensor('scale', [d], scaling.scale));
    nodes.push(node('Sub', [input.inputName, 'center'], ['centered'], 'center'), node('Div', ['centered', 'scale'], ['scaled'], 'scale'));
    x = 'scaled';
  }
  let a = x;
  net.layers.forEach((layer, l) => {
    initializers.push(floatTensor(`W${l}`, [layer.inputs, layer.outputs], layer.weights), floatTensor(`b${l}`, [layer.outputs], layer.bias));
    const out = l === net.layers.length - 1 ? 'reconstruction' : `z${l}`;
    nodes.push(node('Gemm', [a, `W${l}`, `b${l}`], [out], `dense${l}`));
    a = out;
    if (layer.tanh) {
      nodes.push(node('Tanh', [out], [`h${l}`], `tanh${l}`));
      a = `h${l}`;
    }
  });
  nodes.push(
    node('Sub', ['reconstruction', x], ['residual'], 'residual'),
    node('Mul', ['residual', 'residual'], ['squared'], 'square'),
    node('ReduceMean', ['squared'], ['reconstruction_error'], 'mean_over_columns', [
      { name: 'axes', type: onnx.AttributeProto.AttributeType.INTS, ints: [1] },
      { name: 'keepdims', type: onnx.AttributeProto.AttributeType.INT, i: 1 },
    ]),
  );
  return buildModel({
    graphName: `${input.modelId.replace(/-/g, '_')}_ood_autoencoder`,
    docString: `Out-of-distribution check for ${input.modelId} ${input.modelVersion}: autoencoder reconstruction error per row; see model-card.json "ood".`,
    nodes,
    initializers,
    inputs: [valueInfo(input.inputName, FLOAT, ['N', d])],
    outputs: [valueInfo('reconstruction_error', FLOAT, ['N', 1])],
    metadata: [
      ['model_id', input.modelId],
      ['model_version', input.modelVersion],
      ['kind', 'ood-autoencoder'],
      ['feature_ids', input.featureIds.join(',')],
    ],
    opset: OOD_OPSET,
  });
}
