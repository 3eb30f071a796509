import { z } from 'zod';

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
  });

export type ModelCard = z.infer<typeof modelCardSchema>;
/** The card as written to disk (defaults may be omitted). */
export type ModelCardInput = z.input<typeof modelCardSchema>;
