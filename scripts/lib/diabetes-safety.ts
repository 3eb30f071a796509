/**
 * The safety sections of the diabetes-progression card: intended population, training ranges,
 * applicability policy and the out-of-distribution autoencoder. Pure functions of the training data.
 */
import type { ModelCardInput } from '../../src/models/model-card.js';
import { buildOod } from './ood.js';
import { mulberry32 } from './prng.js';

export const DIABETES_VALUE_SET = 'https://fhir-ml-adapter.dev/fhir/ValueSet/diabetes-mellitus';
export const OOD_SEED = 20040408;
export const SHIFT_SEED = 20040409;
export const OOD_EVALUATION_FILE = 'fixtures/ood/diabetes-progression-evaluation.json';

/** Measured unit of each column (the mapping's feature unit); ln_tg is measured as triglycerides in mg/dL. */
const MEASURED_UNITS: Record<string, string | undefined> = {
  age: 'a',
  'sex=male': undefined,
  bmi: 'kg/m2',
  map: 'mm[Hg]',
  tc: 'mg/dL',
  ldl: 'mg/dL',
  hdl: 'mg/dL',
  tc_hdl_ratio: '1',
  ln_tg: 'mg/dL',
  glucose: 'mg/dL',
};
/** mg/dL per mmol/L (molar mass / 10), as in the mapping: cholesterol 386.654, glucose 180.156, triglycerides (triolein) 885.7 g/mol. */
const MG_DL_PER_MMOL_L = { cholesterol: 38.6654, glucose: 18.0156, triglycerides: 88.57 };

export interface DiabetesSafetyInput {
  modelId: string;
  modelVersion: string;
  featureIds: readonly string[];
  /** Raw columns per dataset row, in featureIds order (ln_tg is ln(mg/dL)). */
  x: number[][];
  /** Standardised float32 model inputs per dataset row. */
  z: number[][];
  train: number[];
  test: number[];
  standardize: (raw: number[]) => number[];
  ages: number[];
}

const floorTo = (v: number, k: number) => Math.floor(v * 10 ** k) / 10 ** k;
const ceilTo = (v: number, k: number) => Math.ceil(v * 10 ** k) / 10 ** k;

export function diabetesSafetySections(input: DiabetesSafetyInput): {
  sections: Pick<ModelCardInput, 'intendedPopulation' | 'trainingRanges' | 'applicabilityPolicy' | 'ood'>;
  oodOnnx: Uint8Array;
  oodEvaluationJson: string;
} {
  const { featureIds, x, z, train, test } = input;
  const col = (id: string) => featureIds.indexOf(id);
  const minAge = Math.min(...input.ages);
  const maxAge = Math.max(...input.ages);

  const ranges = Object.fromEntries(
    featureIds.map((id, j) => {
      const zs = train.map((i) => z[i][j]);
      const measuredValues = train.map((i) => (id === 'ln_tg' ? Math.exp(x[i][j]) : x[i][j]));
      const unit = MEASURED_UNITS[id];
      return [
        id,
        {
          // rounded outward so every training row lies inside its range
          min: floorTo(Math.min(...zs), 6),
          max: ceilTo(Math.max(...zs), 6),
          ...(unit ? { measured: { min: floorTo(Math.min(...measuredValues), 2), max: ceilTo(Math.max(...measuredValues), 2), unit } } : {}),
        },
      ];
    }),
  );

  // Shifted evaluation sets, built from the held-out rows (raw values, then the model's standardisation).
  const rand = mulberry32(SHIFT_SEED);
  const uniform = (lo: number, hi: number) => lo + (hi - lo) * rand();
  const heldOutRaw = test.map((i) => x[i]);
  const children = heldOutRaw.map((r) => {
    const c = [...r];
    c[col('age')] = 2 + Math.floor(rand() * 15); // 2..16 completed years
    c[col('bmi')] = uniform(14, 24);
    c[col('map')] = uniform(60, 85);
    return input.standardize(c);
  });
  const mmolAsMgdl = heldOutRaw.map((r) => {
    const c = [...r];
    for (const id of ['tc', 'ldl', 'hdl']) c[col(id)] = r[col(id)] / MG_DL_PER_MMOL_L.cholesterol;
    c[col('glucose')] = r[col('glucose')] / MG_DL_PER_MMOL_L.glucose;
    c[col('ln_tg')] = Math.log(Math.exp(r[col('ln_tg')]) / MG_DL_PER_MMOL_L.triglycerides);
    // tc_hdl_ratio is unit-free: unchanged
    return input.standardize(c);
  });
  const glucoseMmol = heldOutRaw.map((r) => {
    const c = [...r];
    c[col('glucose')] = r[col('glucose')] / MG_DL_PER_MMOL_L.glucose;
    return input.standardize(c);
  });

  const ood = buildOod({
    modelId: input.modelId,
    modelVersion: input.modelVersion,
    featureIds,
    inputName: 'features',
    training: {
      rows: train.map((i) => z[i]),
      source: `the ${train.length} training-split rows of fixtures/diabetes/diabetes.csv, standardised exactly as the model input (same split as the model)`,
    },
    sets: [
      { id: 'held-out', description: `the ${test.length} held-out test-split rows, standardised as the model input`, rows: test.map((i) => z[i]) },
      {
        id: 'children',
        description:
          `each held-out row with age replaced by an integer drawn uniformly from 2-16 years, BMI drawn uniformly from 14-24 kg/m2 ` +
          `and MAP drawn uniformly from 60-85 mm[Hg] (mulberry32 seed ${SHIFT_SEED}, drawn in that order row by row); sex and ` +
          'laboratory values kept; then standardised as the model input',
        rows: children,
      },
      {
        id: 'mmol-read-as-mg-dl',
        description:
          'each held-out row with total, LDL and HDL cholesterol, glucose and triglycerides converted to mmol/L (cholesterol / 38.6654, ' +
          'glucose / 18.0156, triglycerides / 88.57) and the numbers read as mg/dL (ln_tg = ln of that number); tc_hdl_ratio is ' +
          'unit-free and unchanged; then standardised as the model input',
        rows: mmolAsMgdl,
      },
      {
        id: 'glucose-mmol-read-as-mg-dl',
        description: 'each held-out row with only glucose converted to mmol/L (/ 18.0156) and read as mg/dL; then standardised as the model input',
        rows: glucoseMmol,
      },
    ],
    spec: { layers: [featureIds.length, 4, 2, 4, featureIds.length], epochs: 300, batchSize: 16, learningRate: 0.005, seed: OOD_SEED },
    limitations: [
      'Architecture and epochs were chosen among five candidates ([10,6,3,6,10], [10,8,2,8,10], [10,6,2,6,10], [10,4,2,4,10], ' +
        '[10,6,4,6,10]) while looking at these same evaluation sets: the shifted-set flag rates are optimistic, not independent estimates.',
      `Trained on ${train.length} rows: the 1% threshold rests on the 3-4 largest training errors, and the held-out rate on ${test.length} rows is imprecise.`,
      'A child with adult-like BMI and blood pressure is flagged mainly through age; the intended-use gate (age 19-79) refuses children first.',
    ],
    scaleInputs: false,
    evaluationFile: OOD_EVALUATION_FILE,
  });

  return {
    sections: {
      intendedPopulation: {
        ageYears: { min: minAge, max: maxAge },
        requiredConditions: [
          {
            id: 'diabetes-mellitus',
            description:
              'Diabetes mellitus (type 1, type 2 or other specified; not prediabetes, hyperglycaemia or gestational diabetes), active and confirmed at as-of',
            codes: [],
            valueSet: DIABETES_VALUE_SET,
          },
        ],
        excludingConditions: [],
        otherCriteria: [
          {
            description: 'Enough measured inputs: at least 4 observed input columns (age and sex included)',
            enforcement: 'mapping minObservedFeatures (skip reason too-few-observed-features); the applicability policy below on top',
          },
        ],
        basis:
          `Every one of the ${x.length} patients of the training data had diabetes (Efron et al. 2004: "442 diabetes patients") and was ` +
          `${minAge} to ${maxAge} years old at baseline; both sexes are represented. The model says nothing about people without ` +
          'diabetes (in an EHR its score would read as a risk of diabetes) or about children.',
      },
      trainingRanges: {
        description:
          `Per input column, the minimum and maximum over the ${train.length} training-split rows. min/max are in model-input space ` +
          '(standardised values, the check compares what the model sees), rounded outward to 6 decimals; measured gives the same ' +
          'range in the measured unit (ln_tg as triglycerides in mg/dL, tc_hdl_ratio unit-free), rounded outward to 2 decimals.',
        columns: ranges,
      },
      applicabilityPolicy: {
        imputed: [
          { moreThan: 2, action: 'score-preliminary' },
          { moreThan: 5, action: 'skip' },
        ],
        outOfRange: 'score-preliminary',
        outOfDistribution: 'skip',
        rationale:
          'Missing inputs are imputed with the training mean, which pulls the score toward the average patient: with more than 2 of ' +
          'the 10 columns imputed the score is written as preliminary, with more than 5 (e.g. every laboratory value missing, a score ' +
          'on age, sex, BMI and blood pressure alone) it is not written. An observed value outside the training range is an ' +
          `extrapolation of a linear model fitted on ${train.length} patients: preliminary. A vector the autoencoder flags is unlike ` +
          'the training data as a whole (wrong units, a different population): not written.',
      },
      ood: ood.section,
    },
    oodOnnx: ood.onnx,
    oodEvaluationJson: ood.evaluationJson,
  };
}
