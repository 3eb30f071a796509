import { z } from 'zod';
import { conditionCodeSchema } from '../clinical/codes.js';

/**
 * The model card (`models/<id>/model-card.json`): everything the adapter needs to run a model and
 * everything a reviewer needs to judge it. Strict: unknown keys are errors.
 */

export const RISK_PROBABILITY_SYSTEM = 'http://terminology.hl7.org/CodeSystem/risk-probability';
export const RISK_CODES = ['negligible', 'low', 'moderate', 'high', 'certain'] as const;

const coding = z.strictObject({ system: z.string().min(1), code: z.string().min(1), display: z.string().optional() });

/** A dimension: a positive integer, or a symbolic name for a dynamic (batch) dimension. */
const dim = z.union([z.number().int().positive(), z.string().min(1)]);
const tensorSpec = z.strictObject({
  name: z.string().min(1),
  elemType: z.literal('float32'),
  shape: z.array(dim).min(1),
});

const riskBand = z.strictObject({
  code: z.enum(RISK_CODES),
  /** Inclusive lower bound of the band on the probability scale; the band ends where the next starts. */
  min: z.number().min(0).max(1),
  description: z.string().optional(),
});

const standardize = z.strictObject({ mean: z.number(), std: z.number().positive() });

const calibrationBin = z.strictObject({
  bin: z.number().int().positive(),
  n: z.number().int().nonnegative(),
  meanPredicted: z.number(),
  observedRate: z.number(),
  minPredicted: z.number(),
  maxPredicted: z.number(),
});

const goldenVector = z.strictObject({
  note: z.string().optional(),
  input: z.array(z.number()),
  /** Expected values per output name (one value per output element for this single row). */
  expected: z.record(z.string(), z.array(z.number())),
});

/** A model-input column id as listed in featureIds. */
const columnId = z.string().min(1);

export { LEXICAL_HIERARCHY_SYSTEMS, conditionCodeSchema } from '../clinical/codes.js';

/** One condition criterion: any of its codes (inline, or in the value set the canonical names) matches. */
const conditionCriterion = z
  .strictObject({
    id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'criterion ids are lower-kebab-case'),
    description: z.string().min(1),
    codes: z.array(conditionCodeSchema).default([]),
    /** Canonical URL of a ValueSet kept in the repository (mappings/valuesets/*.json). */
    valueSet: z.string().url().optional(),
  })
  .refine((c) => c.codes.length > 0 || c.valueSet !== undefined, { message: 'needs codes or a valueSet' });

export const ADMINISTRATIVE_GENDERS = ['male', 'female', 'other', 'unknown'] as const;

/**
 * The population the model may score, as data (enforced by evaluateIntendedUse). Deceased patients and
 * inactive records are never scored, whatever the card says.
 */
const intendedPopulation = z.strictObject({
  /** Completed years at as-of, both bounds inclusive. */
  ageYears: z.strictObject({ min: z.number().int().nonnegative().optional(), max: z.number().int().positive().optional() }).optional(),
  /** Administrative genders admitted; absent: any (including a missing gender). */
  sex: z.array(z.enum(ADMINISTRATIVE_GENDERS)).min(1).optional(),
  /** Every criterion must be met by an active, confirmed Condition at as-of. */
  requiredConditions: z.array(conditionCriterion).default([]),
  /** Any active Condition (confirmed or suspected) meeting one of these refuses the patient. */
  excludingConditions: z.array(conditionCriterion).default([]),
  /** Criteria stated for reviewers, with where (or whether) the adapter enforces them. */
  otherCriteria: z.array(z.strictObject({ description: z.string().min(1), enforcement: z.string().min(1) })).default([]),
  /** Why this population: what the training data or the publication covers. */
  basis: z.string().min(1),
});

/**
 * Per-column range of the training rows. `min`/`max` are in model-input space (the value handed to the
 * model, after the mapping's transforms: standardised for diabetes-progression); that is what the
 * applicability check compares. `measured` gives the same range in the measured unit, for people.
 */
const trainingRanges = z.strictObject({
  description: z.string().min(1),
  columns: z.record(
    columnId,
    z.strictObject({
      min: z.number(),
      max: z.number(),
      measured: z.strictObject({ min: z.number(), max: z.number(), unit: z.string().min(1) }).optional(),
    }),
  ),
});

export const APPLICABILITY_ACTIONS = ['score', 'score-preliminary', 'skip'] as const;
const applicabilityAction = z.enum(APPLICABILITY_ACTIONS);

/** What the adapter does with a score whose inputs are imputed, out of range or out of distribution. */
const applicabilityPolicy = z.strictObject({
  /** Tiers: when more than `moreThan` input columns are imputed, `action` applies (the strictest tier met wins). */
  imputed: z.array(z.strictObject({ moreThan: z.number().int().nonnegative(), action: applicabilityAction })).default([]),
  /** When any observed input lies outside trainingRanges. */
  outOfRange: applicabilityAction,
  /** When the out-of-distribution check flags the input vector. */
  outOfDistribution: applicabilityAction,
  rationale: z.string().min(1),
});

const oodEvaluation = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/),
  description: z.string().min(1),
  n: z.number().int().nonnegative(),
  flagged: z.number().int().nonnegative(),
  flagRate: z.number().min(0).max(1),
});

/**
 * The out-of-distribution check shipped beside the model (models/<id>/ood.onnx): an autoencoder whose
 * graph outputs each row's reconstruction error; a row is flagged when the error is above `threshold`.
 */
const oodSection = z.strictObject({
  file: z.literal('ood.onnx'),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be a lowercase hex sha256'),
  opset: z.number().int().positive(),
  /** Same layout and column order as the model input (the batch step feeds it the same Float32Array). */
  input: tensorSpec,
  /** Per-row reconstruction error, shape [N,1]. */
  output: tensorSpec,
  method: z.string().min(1),
  architecture: z.strictObject({
    /** Layer widths from input to output, e.g. [10, 6, 3, 6, 10]. */
    layers: z.array(z.number().int().positive()).min(3),
    hiddenActivation: z.literal('tanh'),
    bottleneckActivation: z.literal('linear'),
    outputActivation: z.literal('linear'),
    /** (x - center) / scale applied inside the graph before encoding; null when the inputs are already standardised. */
    inputScaling: z.strictObject({ center: z.array(z.number()), scale: z.array(z.number().positive()) }).nullable(),
    error: z.string().min(1),
  }),
  training: z.strictObject({
    rows: z.number().int().positive(),
    source: z.string().min(1),
    optimizer: z.string().min(1),
    learningRate: z.number().positive(),
    epochs: z.number().int().positive(),
    batchSize: z.number().int().positive(),
    seed: z.number().int(),
    finalLoss: z.number().nonnegative(),
  }),
  threshold: z.number().positive(),
  thresholdRule: z.string().min(1),
  /** Flag rates on the training, held-out and shifted sets (reproduced by a test from the repository). */
  evaluation: z.array(oodEvaluation).min(1),
  /** Evaluation rows, so the flag rates can be reproduced with onnxruntime (path relative to the repo root). */
  evaluationFile: z.string().min(1),
  /** What the flag rates do not show (selection on the evaluation sets, sample size, synthetic training rows ...). */
  limitations: z.array(z.string().min(1)).default([]),
  goldenVectors: z.array(z.strictObject({ note: z.string().optional(), input: z.array(z.number()), reconstructionError: z.number().nonnegative() })).min(1),
});

export const modelCardSchema = z
  .strictObject({
    id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'model ids are lower-kebab-case'),
    version: z.string().regex(/^\d+\.\d+\.\d+$/, 'must be a semantic version such as 1.0.0'),
    name: z.string().min(1),
    description: z.string().min(1),
    /** sha256 (hex) of model.onnx. */
    sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be a lowercase hex sha256'),
    onnx: z.strictObject({
      file: z.literal('model.onnx'),
      opset: z.number().int().positive(),
      input: tensorSpec,
      /** The output holding the probability, shape [N,1]. */
      output: tensorSpec,
      additionalOutputs: z.array(tensorSpec).default([]),
    }),
    /** Ordered input columns (expanded mapping columns). */
    featureIds: z.array(z.string().min(1)).min(1),
    outcome: z.strictObject({ coding: z.array(coding).min(1), text: z.string().min(1) }),
    /** UCUM time unit (d, wk, mo, a). */
    horizon: z.strictObject({ value: z.number().positive(), unit: z.enum(['h', 'd', 'wk', 'mo', 'a']) }),
    riskBands: z.array(riskBand).min(1),
    preprocessing: z.strictObject({
      description: z.string(),
      /** Per column id: the standardisation applied before the model (null: passed through as is). */
      columns: z.record(z.string(), standardize.nullable()),
    }),
    trainingData: z.strictObject({
      citation: z.string().min(1),
      source: z.string().min(1),
      n: z.number().int().nonnegative(),
      split: z.string(),
      outcomeDefinition: z.string().min(1),
    }),
    evaluation: z.strictObject({
      kind: z.enum(['held-out', 'published-rule']),
      description: z.string(),
      nTest: z.number().int().nonnegative().optional(),
      auroc: z.number().min(0).max(1).optional(),
      brier: z.number().min(0).max(1).optional(),
      calibration: z.array(calibrationBin).optional(),
      /** Published per-score table (rule-based models). */
      table: z
        .array(z.strictObject({ score: z.number().int(), probability: z.number().min(0).max(1), source: z.string() }))
        .optional(),
    }),
    intendedUse: z.string().min(1),
    /** The population the model may score (optional: a card without it only gets the universal gates). */
    intendedPopulation: intendedPopulation.optional(),
    trainingRanges: trainingRanges.optional(),
    applicabilityPolicy: applicabilityPolicy.optional(),
    ood: oodSection.optional(),
    limitations: z.array(z.string().min(1)).min(1),
    goldenVectors: z.array(goldenVector).min(1),
    explanation: z.strictObject({
      method: z.string().min(1),
      /** Per input column: the value a column is replaced with when occluded. */
      baseline: z.array(z.number()),
    }),
  })
  .superRefine((card, ctx) => {
    const n = card.featureIds.length;
    if (new Set(card.featureIds).size !== n) ctx.addIssue({ code: 'custom', path: ['featureIds'], message: 'duplicate column ids' });
    const last = card.onnx.input.shape.at(-1);
    if (card.onnx.input.shape.length !== 2 || last !== n)
      ctx.addIssue({ code: 'custom', path: ['onnx', 'input', 'shape'], message: `must be [N, ${n}] (featureIds.length)` });
    if (card.riskBands[0].min !== 0) ctx.addIssue({ code: 'custom', path: ['riskBands', 0, 'min'], message: 'first band must start at 0' });
    for (let i = 1; i < card.riskBands.length; i++) {
      if (card.riskBands[i].min <= card.riskBands[i - 1].min)
        ctx.addIssue({ code: 'custom', path: ['riskBands', i, 'min'], message: 'band thresholds must increase' });
      if (RISK_CODES.indexOf(card.riskBands[i].code) <= RISK_CODES.indexOf(card.riskBands[i - 1].code))
        ctx.addIssue({ code: 'custom', path: ['riskBands', i, 'code'], message: 'band codes must follow negligible < low < moderate < high < certain' });
    }
    const cols = Object.keys(card.preprocessing.columns);
    if (cols.length !== n || cols.some((c, i) => c !== card.featureIds[i]))
      ctx.addIssue({ code: 'custom', path: ['preprocessing', 'columns'], message: 'must list exactly the featureIds, in order' });
    if (card.explanation.baseline.length !== n)
      ctx.addIssue({ code: 'custom', path: ['explanation', 'baseline'], message: `must have ${n} values` });
    card.goldenVectors.forEach((g, i) => {
      if (g.input.length !== n) ctx.addIssue({ code: 'custom', path: ['goldenVectors', i, 'input'], message: `must have ${n} values` });
      const outs = [card.onnx.output, ...card.onnx.additionalOutputs].map((o) => o.name);
      for (const k of Object.keys(g.expected))
        if (!outs.includes(k)) ctx.addIssue({ code: 'custom', path: ['goldenVectors', i, 'expected', k], message: 'not an output of the model' });
      if (!(card.onnx.output.name in g.expected))
        ctx.addIssue({ code: 'custom', path: ['goldenVectors', i, 'expected'], message: `must include ${card.onnx.output.name}` });
    });
    if (card.trainingRanges)
      for (const [col, r] of Object.entries(card.trainingRanges.columns)) {
        if (!card.featureIds.includes(col)) ctx.addIssue({ code: 'custom', path: ['trainingRanges', 'columns', col], message: 'not a featureId' });
        if (!(r.min <= r.max)) ctx.addIssue({ code: 'custom', path: ['trainingRanges', 'columns', col], message: 'min must not exceed max' });
      }
    const age = card.intendedPopulation?.ageYears;
    if (age?.min !== undefined && age.max !== undefined && age.min > age.max)
      ctx.addIssue({ code: 'custom', path: ['intendedPopulation', 'ageYears'], message: 'min must not exceed max' });
    if (card.ood) {
      const { ood } = card;
      if (ood.input.shape.length !== 2 || ood.input.shape[1] !== n)
        ctx.addIssue({ code: 'custom', path: ['ood', 'input', 'shape'], message: `must be [N, ${n}]: the same rows as the model input` });
      if (ood.output.shape.length !== 2 || ood.output.shape[1] !== 1)
        ctx.addIssue({ code: 'custom', path: ['ood', 'output', 'shape'], message: 'must be [N, 1]: one reconstruction error per row' });
      if (ood.architecture.layers[0] !== n || ood.architecture.layers.at(-1) !== n)
        ctx.addIssue({ code: 'custom', path: ['ood', 'architecture', 'layers'], message: `must start and end with ${n} (featureIds.length)` });
      const scaling = ood.architecture.inputScaling;
      if (scaling && (scaling.center.length !== n || scaling.scale.length !== n))
        ctx.addIssue({ code: 'custom', path: ['ood', 'architecture', 'inputScaling'], message: `center and scale need ${n} values` });
      ood.goldenVectors.forEach((g, i) => {
        if (g.input.length !== n) ctx.addIssue({ code: 'custom', path: ['ood', 'goldenVectors', i, 'input'], message: `must have ${n} values` });
      });
      ood.evaluation.forEach((e, i) => {
        if (e.flagged > e.n) ctx.addIssue({ code: 'custom', path: ['ood', 'evaluation', i, 'flagged'], message: 'exceeds n' });
      });
    }
  });

export type ModelCard = z.infer<typeof modelCardSchema>;
/** The card as written to disk (defaults may be omitted). */
export type ModelCardInput = z.input<typeof modelCardSchema>;
export type IntendedPopulation = NonNullable<ModelCard['intendedPopulation']>;
export type ConditionCriterion = IntendedPopulation['requiredConditions'][number];
export type { ConditionCode } from '../clinical/codes.js';
export type TrainingRanges = NonNullable<ModelCard['trainingRanges']>;
export type ApplicabilityPolicy = NonNullable<ModelCard['applicabilityPolicy']>;
export type ApplicabilityAction = (typeof APPLICABILITY_ACTIONS)[number];
export type OodSection = NonNullable<ModelCard['ood']>;
