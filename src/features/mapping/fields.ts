import { z } from 'zod';
import { ISO_DURATION } from '../../core/time.js';
import { isValidUcum } from '../ucum.js';

/**
 * The building blocks of the mapping format shared by every feature, whatever its source: codings,
 * UCUM units, durations, transforms, the missing-value policy and the feature's common fields. Source
 * plug-ins (`../sources/<kind>.ts`) build their `source:` schema from these; `schema.ts` assembles the
 * whole mapping. Strict objects: an unknown key is an error, so a typo never silently changes a score.
 */

export const coding = z.strictObject({ system: z.string().min(1), code: z.string().min(1), display: z.string().optional() });
export type Coding = {
  system: string;
  code: string;
  /** Observation search codes: the category the code is filed under, when the mapping states it (per-patient pulls search by it). */
  category?: { system: string; code: string };
};

/** A case-sensitive UCUM unit, validated with @lhncbc/ucum-lhc when the mapping is parsed. */
export const ucumUnit = z.string().superRefine((unit, ctx) => {
  if (!isValidUcum(unit)) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(unit)} is not a valid UCUM unit` });
});

/** ISO 8601 duration (P2Y, P30D, PT48H ...). The lookback window ends at as-of. */
export const isoDuration = z.string().regex(ISO_DURATION, 'must be an ISO 8601 duration such as P2Y or PT48H');

export const transformSchema = z.union([
  z.literal('log'),
  z.strictObject({ log: z.strictObject({ offset: z.number().default(0) }) }),
  z.strictObject({ standardize: z.strictObject({ mean: z.number(), std: z.number().positive() }) }),
  z.strictObject({ clip: z.strictObject({ min: z.number().optional(), max: z.number().optional() }) }),
]);
export type Transform = z.infer<typeof transformSchema>;

const missingSchema = z.strictObject({
  /**
   * `mean`: the training mean: `value` (feature unit, then every transform) when given, else the
   * standardize transform's mean fed in at that transform (so the column is 0, then any later clip);
   * `constant`: `value` in the feature's unit, then every transform; `required`: the patient is
   * skipped (`skipReason: missing-required-feature:<id>`). Required on input features that can be
   * missing; not allowed on non-input features. One-hot features are all zeros when missing.
   */
  strategy: z.enum(['mean', 'constant', 'required']),
  value: z.number().optional(),
  /** Adds a `<id>__missing` column (1 when imputed). */
  indicator: z.boolean().default(false),
});

/** The fields every feature has, whatever its source. */
export const featureFields = z.strictObject({
  id: z.string().regex(/^[a-z][a-z0-9_]*$/, 'feature ids are lower_snake_case'),
  description: z.string().optional(),
  /** Target UCUM unit; values are converted with @lhncbc/ucum-lhc. */
  unit: ucumUnit.optional(),
  /** g/mol, for mass <-> substance conversions (glucose 180.156, cholesterol 386.654). */
  molarMass: z.number().positive().optional(),
  /** Lookback window before as-of, for sources that read dated resources. */
  lookback: isoDuration.optional(),
  aggregate: z.enum(['latest', 'mean', 'min', 'max', 'count', 'any']).default('latest'),
  plausible: z.strictObject({ min: z.number().optional(), max: z.number().optional() }).optional(),
  missing: missingSchema.optional(),
  transforms: z.array(transformSchema).default([]),
  /** One-hot over coded values; expands into columns `<id>=<category>`. */
  oneHot: z.array(z.string()).min(1).optional(),
  /** false: computed (e.g. as an input of a derived feature) but not a model input column. */
  input: z.boolean().default(true),
});
export type FeatureFields = z.infer<typeof featureFields>;

/** A feature whose source is `S` (the source plug-ins are written against this). */
export type Feature<S> = FeatureFields & { source: S };
