/**
 * Diabetes-progression model: data loading, deterministic training, evaluation and export.
 * Everything here is a pure function of the committed CSV, so `npm run train` reproduces the
 * committed `model.onnx` and `model-card.json` byte for byte (`--check` verifies it).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { modelCardSchema, type ModelCardInput } from '../../src/models/model-card.js';
import { differingFiles } from './artifacts.js';
import { diabetesSafetySections, OOD_EVALUATION_FILE } from './diabetes-safety.js';
import { fitLogistic, sigmoid } from './logreg.js';
import { auroc, brier, calibrationTable } from './metrics.js';
import { dec, sig, stableJson } from './numfmt.js';
import { buildModel, floatTensor, FLOAT, node, valueInfo } from './onnx-build.js';
import { stratifiedSplit } from './prng.js';

export const MODEL_ID = 'diabetes-progression';
export const MODEL_VERSION = '1.0.0';
export const CSV_HEADER = ['age', 'sex', 'bmi', 'bp', 'tc', 'ldl', 'hdl', 'tch', 'ltg', 'glu', 'progression'] as const;
export const FEATURE_IDS = ['age', 'sex=male', 'bmi', 'map', 'tc', 'ldl', 'hdl', 'tc_hdl_ratio', 'ln_tg', 'glucose'] as const;
/** Columns passed through without standardisation (one-hot indicators). */
const UNSTANDARDIZED = new Set<string>(['sex=male']);

/** Outcome threshold: progression > 140 (the sample median is 140.5; see the card). */
export const THRESHOLD = 140;
export const SPLIT_SEED = 20040407;
export const TEST_FRACTION = 0.25;
export const L2_LAMBDA = 1;
export const NEWTON_ITERATIONS = 25;
const CALIBRATION_BINS = 5;

export type DiabetesRow = Record<(typeof CSV_HEADER)[number], number>;

/** Converts sklearn's space-separated raw files into the committed CSV text. */
export function fixtureCsvFromSklearn(dataGz: Buffer, targetGz: Buffer): string {
  const data = gunzipSync(dataGz).toString('utf8').trim().split('\n');
  const target = gunzipSync(targetGz).toString('utf8').trim().split('\n');
  if (data.length !== target.length) throw new Error(`row count mismatch: ${data.length} vs ${target.length}`);
  const lines = [CSV_HEADER.join(',')];
  data.forEach((line, i) => {
    const cells = line.trim().split(/\s+/).map(Number);
    if (cells.length !== 10 || cells.some((c) => !Number.isFinite(c))) throw new Error(`bad data row ${i + 1}`);
    const y = Number(target[i].trim());
    if (!Number.isFinite(y)) throw new Error(`bad target row ${i + 1}`);
    lines.push([...cells, y].map((v) => String(v)).join(','));
  });
  return `${lines.join('\n')}\n`;
}

export function parseCsv(text: string): DiabetesRow[] {
  const [header, ...lines] = text.trim().split('\n');
  if (header !== CSV_HEADER.join(',')) throw new Error(`unexpected CSV header: ${header}`);
  return lines.map((line, i) => {
    const cells = line.split(',').map(Number);
    if (cells.length !== CSV_HEADER.length || cells.some((c) => !Number.isFinite(c))) throw new Error(`bad CSV row ${i + 2}`);
    return Object.fromEntries(CSV_HEADER.map((h, j) => [h, cells[j]])) as DiabetesRow;
  });
}

/** Raw (unstandardised) model columns for one dataset row, in FEATURE_IDS order. */
export function rawFeatures(r: DiabetesRow): number[] {
  if (r.sex !== 1 && r.sex !== 2) throw new Error(`sex must be 1 or 2, got ${r.sex}`);
  return [r.age, r.sex === 2 ? 1 : 0, r.bmi, r.bp, r.tc, r.ldl, r.hdl, r.tc / r.hdl, r.ltg, r.glu];
}

export interface DiabetesArtifacts {
  onnx: Uint8Array;
  card: string;
  /** Out-of-distribution autoencoder (ood.onnx) and the rows behind its card flag rates. */
  oodOnnx: Uint8Array;
  oodEvaluation: string;
  metrics: { auroc: number; brier: number; nTrain: number; nTest: number; prevalence: number };
}

export function buildDiabetesArtifacts(csvText: string): DiabetesArtifacts {
  const rows = parseCsv(csvText);
  const y: number[] = rows.map((r) => (r.progression > THRESHOLD ? 1 : 0));
  const x = rows.map(rawFeatures);
  const { train, test } = stratifiedSplit(y, TEST_FRACTION, SPLIT_SEED);

  // Training-split mean and population std, rounded so the mapping can store them verbatim.
  const stats = FEATURE_IDS.map((id, j) => {
    if (UNSTANDARDIZED.has(id)) return null;
    const v = train.map((i) => x[i][j]);
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    const std = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length);
    return { mean: sig(mean, 7), std: sig(std, 7) };
  });
  // What the adapter does: standardise in float64, hand float32 to the model.
  const standardize = (row: number[]) => row.map((v, j) => Math.fround(stats[j] ? (v - stats[j]!.mean) / stats[j]!.std : v));
  const z = x.map(standardize);

  const fit = fitLogistic(train.map((i) => z[i]), train.map((i) => y[i]), L2_LAMBDA, NEWTON_ITERATIONS);
  if (!(fit.lastStep < 1e-10)) throw new Error(`Newton did not converge (last step ${fit.lastStep})`);
  // Exported parameters: rounded, then float32 (what the ONNX file holds).
  const weights = fit.weights.map((w) => Math.fround(sig(w, 7)));
  const bias = Math.fround(sig(fit.bias, 7));
  const predict = (row: number[]) => sigmoid(row.reduce((s, v, j) => s + Math.fround(v) * weights[j], bias));

  const yTest = test.map((i) => y[i]);
  const pTest = test.map((i) => predict(z[i]));
  const metrics = {
    auroc: dec(auroc(yTest, pTest), 4),
    brier: dec(brier(yTest, pTest), 4),
    nTrain: train.length,
    nTest: test.length,
    prevalence: dec(y.reduce((a, b) => a + b, 0) / y.length, 4),
  };
  const calibration = calibrationTable(yTest, pTest, CALIBRATION_BINS).map((b) => ({
    bin: b.bin,
    n: b.n,
    meanPredicted: dec(b.meanPredicted, 4),
    observedRate: dec(b.observedRate, 4),
    minPredicted: dec(b.minPredicted, 4),
    maxPredicted: dec(b.maxPredicted, 4),
  }));

  const onnx = buildModel({
    graphName: 'diabetes_progression_logreg',
    docString: 'L2-regularised logistic regression on standardised features; see model-card.json.',
    nodes: [
      node('Gemm', ['features', 'coef', 'intercept'], ['logit'], 'linear'),
      node('Sigmoid', ['logit'], ['probability'], 'sigmoid'),
    ],
    initializers: [floatTensor('coef', [FEATURE_IDS.length, 1], weights), floatTensor('intercept', [1], [bias])],
    inputs: [valueInfo('features', FLOAT, ['N', FEATURE_IDS.length])],
    outputs: [valueInfo('probability', FLOAT, ['N', 1])],
    metadata: [
      ['model_id', MODEL_ID],
      ['model_version', MODEL_VERSION],
      ['feature_ids', FEATURE_IDS.join(',')],
    ],
  });

  // Golden vectors: the "average" female patient, an extreme, and the first three test patients.
  const goldenInputs: { note: string; input: number[] }[] = [
    { note: 'all standardised columns at the training mean, female', input: FEATURE_IDS.map(() => 0) },
    { note: 'high-risk extreme (+2 SD on every standardised column, male)', input: FEATURE_IDS.map((id) => (UNSTANDARDIZED.has(id) ? 1 : 2)) },
    ...test.slice(0, 3).map((i) => ({ note: `test-split patient (dataset row ${i + 1})`, input: z[i].map((v) => dec(v, 6)) })),
  ];
  const goldenVectors = goldenInputs.map((g) => ({ ...g, expected: { probability: [sig(predict(g.input), 7)] } }));

  const sexMale = train.reduce((s, i) => s + x[i][1], 0) / train.length;
  const safety = diabetesSafetySections({
    modelId: MODEL_ID,
    modelVersion: MODEL_VERSION,
    featureIds: FEATURE_IDS,
    x,
    z,
    train,
    test,
    standardize,
    ages: rows.map((r) => r.age),
  });
  const card: ModelCardInput = {
    id: MODEL_ID,
    version: MODEL_VERSION,
    name: 'Diabetes progression at 1 year (above-median), logistic regression',
    description:
      'Probability that the quantitative measure of diabetes disease progression one year after baseline exceeds 140 ' +
      '(about the sample median), from age, sex, BMI, mean arterial pressure and five blood measurements. ' +
      'A demonstration model trained on the 442-patient LARS diabetes data set; not a validated clinical tool.',
    sha256: createHash('sha256').update(onnx).digest('hex'),
    onnx: {
      file: 'model.onnx',
      opset: 13,
      input: { name: 'features', elemType: 'float32', shape: ['N', FEATURE_IDS.length] },
      output: { name: 'probability', elemType: 'float32', shape: ['N', 1] },
      additionalOutputs: [],
    },
    featureIds: [...FEATURE_IDS],
    outcome: {
      coding: [{ system: 'http://snomed.info/sct', code: '73211009', display: 'Diabetes mellitus' }],
      text:
        'Diabetes disease progression at 1 year above the sample median (Efron et al. 2004 quantitative progression measure > 140). ' +
        'SNOMED CT has no concept for this data-set-specific measure; the coding names the disease that progresses.',
    },
    horizon: { value: 1, unit: 'a' },
    riskBands: [
      { code: 'negligible', min: 0, description: 'p < 0.05' },
      { code: 'low', min: 0.05, description: '0.05 <= p < 0.25' },
      { code: 'moderate', min: 0.25, description: '0.25 <= p < 0.6' },
      { code: 'high', min: 0.6, description: 'p >= 0.6 (certain is not used: a logistic model of this outcome is never certain)' },
    ],
    preprocessing: {
      description:
        'Every column except sex=male is standardised as (x - mean) / std with the training-split mean and population std ' +
        '(the mapping stores these as its standardize transform); sex=male is 1 for male, 0 otherwise. tc_hdl_ratio is tc / hdl ' +
        '(not the rounded S4 column of the data set); ln_tg is the natural log of serum triglycerides (mg/dL), the data set S5 column.',
      columns: Object.fromEntries(FEATURE_IDS.map((id, j) => [id, stats[j]])),
    },
    trainingData: {
      citation:
        'Efron B, Hastie T, Johnstone I, Tibshirani R. Least Angle Regression. Annals of Statistics 2004;32(2):407-499. doi:10.1214/009053604000000067',
      source: 'fixtures/diabetes/diabetes.csv (raw data from Debian python3-sklearn 1.2.1; original: B. Efron et al., NCSU page)',
      n: rows.length,
      split:
        `stratified by outcome, ${train.length} train / ${test.length} test (test fraction ${TEST_FRACTION}), ` +
        `mulberry32 seed ${SPLIT_SEED}; model: L2 logistic regression (lambda ${L2_LAMBDA}, intercept unpenalised), ` +
        `${NEWTON_ITERATIONS} Newton iterations`,
      outcomeDefinition:
        `progression > ${THRESHOLD} (positive rate ${metrics.prevalence}). 140 is about the median (140.5) of the 1-year progression ` +
        'measure, which gives balanced classes and the most information for a binary demonstration outcome; the measure has no ' +
        'established clinical cut-off.',
    },
    evaluation: {
      kind: 'held-out',
      description: `held-out stratified test split; calibration in ${CALIBRATION_BINS} equal-count bins of predicted probability`,
      nTest: test.length,
      auroc: metrics.auroc,
      brier: metrics.brier,
      calibration,
    },
    intendedUse:
      'Demonstration and integration testing of the adapter pipeline (FHIR data -> features -> ONNX -> RiskAssessment). ' +
      'Not for clinical decision making.',
    ...safety.sections,
    limitations: [
      'Trained on 442 patients from a single 2004 research data set; no external validation.',
      'The outcome is a data-set-specific quantitative progression measure dichotomised at its median, not a clinical event.',
      `Held-out evaluation uses only ${test.length} patients; AUROC and calibration estimates are imprecise.`,
      'Sex is coded 1/2 without labels in the source; we assume 1 = female, 2 = male.',
      'Population, laboratory methods and units of the original cohort are incompletely documented; S5 is assumed to be ln(triglycerides, mg/dL).',
    ],
    goldenVectors,
    explanation: {
      method:
        'Occlusion: each column is replaced by its baseline (0 = training mean for standardised columns, the training ' +
        'male fraction for sex=male) and the change in logit is the contribution. For this linear model it equals ' +
        'coefficient * (value - baseline).',
      baseline: FEATURE_IDS.map((id) => (id === 'sex=male' ? dec(sexMale, 4) : 0)),
    },
  };
  modelCardSchema.parse(card); // never write a card the loader would reject
  return { onnx, card: stableJson(card), metrics, oodOnnx: safety.oodOnnx, oodEvaluation: safety.oodEvaluationJson };
}

export function diabetesPaths(root: string) {
  return {
    csv: join(root, 'fixtures', 'diabetes', 'diabetes.csv'),
    onnx: join(root, 'models', MODEL_ID, 'model.onnx'),
    card: join(root, 'models', MODEL_ID, 'model-card.json'),
    ood: join(root, 'models', MODEL_ID, 'ood.onnx'),
    oodEvaluation: join(root, OOD_EVALUATION_FILE),
  };
}

/** Rebuilds in memory and returns the committed files that differ (empty: reproducible). */
export function checkDiabetesArtifacts(root: string): string[] {
  const p = diabetesPaths(root);
  const built = buildDiabetesArtifacts(readFileSync(p.csv, 'utf8'));
  return differingFiles([
    [p.onnx, built.onnx],
    [p.card, built.card],
    [p.ood, built.oodOnnx],
    [p.oodEvaluation, built.oodEvaluation],
  ]);
}
