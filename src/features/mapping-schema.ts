import { z } from 'zod';
import { isValidUcum } from './ucum.js';

/**
 * The declarative mapping format (`mappings/<model>.yaml`): how FHIR data becomes one model's input
 * tensor. This schema is the contract between mapping files, the feature engine and model cards.
 * Keep it strict: unknown keys are errors, so a typo in a mapping never silently changes a score.
 */

const coding = z.strictObject({ system: z.string().min(1), code: z.string().min(1), display: z.string().optional() });

/** A case-sensitive UCUM unit, validated with @lhncbc/ucum-lhc when the mapping is parsed. */
export const ucumUnit = z.string().superRefine((unit, ctx) => {
  if (!isValidUcum(unit)) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(unit)} is not a valid UCUM unit` });
});

/**
 * An Observation code to match. `unit` optionally declares the unit results under this code come in
 * (e.g. 14647-2 in mmol/L); it is checked at load time to be convertible to the feature's unit
 * (with the code's or the feature's molarMass), so a missing molar mass is caught before any patient is mapped.
 */
const observationCoding = coding.extend({
  unit: ucumUnit.optional(),
  /** g/mol for values under this code, overriding the feature's molarMass (BUN 28.0134 vs urea 60.06). */
  molarMass: z.number().positive().optional(),
});

/** Observation.status values accepted by default: final results only (see README in this folder). */
export const DEFAULT_OBSERVATION_STATUSES = ['final', 'amended', 'corrected'] as const;
const observationStatus = z.enum(['registered', 'preliminary', 'final', 'amended', 'corrected', 'cancelled', 'entered-in-error', 'unknown']);

/** ISO 8601 duration (P2Y, P30D, PT48H ...). The lookback window ends at as-of. */
const isoDuration = z
  .string()
  .regex(/^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?$/, 'must be an ISO 8601 duration such as P2Y or PT48H');

const patientAgeSource = z.strictObject({ kind: z.literal('patient-age') });
const patientSexSource = z.strictObject({ kind: z.literal('patient-sex') });

const observationSource = z.strictObject({
  kind: z.literal('observation'),
  /** Codes of the Observation itself, or of a component inside a panel. */
  codes: z.array(observationCoding).min(1),
  /** Panel codes to search too; the value is then taken from the component matching `codes`. */
  panels: z.array(coding).optional(),
  /** Observation statuses accepted (default final, amended, corrected); others are excluded as `status`. */
  statuses: z.array(observationStatus).min(1).optional(),
  /** Optional FHIRPath evaluated on the Observation (or component) to select the Quantity; default `value`. */
  valuePath: z.string().optional(),
  /** For coded values (one-hot): FHIRPath to the code, default `value.coding.code`. */
  codePath: z.string().optional(),
});

const derivedSource = z.strictObject({
  kind: z.literal('derived'),
  op: z.enum(['ratio', 'mean-arterial-pressure', 'log', 'sum', 'difference', 'product']),
  /** Feature ids this one is computed from, in order (ratio: [numerator, denominator]; MAP: [systolic, diastolic]). */
  of: z.array(z.string()).min(1),
});

/** Issue 3: a finding asserted in report text (value 1 when found with the wanted assertion, else 0). */
const reportFindingSource = z.strictObject({
  kind: z.literal('report-finding'),
  /** Finding concept codes from the NLP lexicon (SNOMED CT). */
  findings: z.array(coding).min(1),
  assertion: z.enum(['affirmed', 'negated', 'possible', 'historical', 'hypothetical', 'other-subject']).default('affirmed'),
  /** Restrict to reports with one of these codes or categories (e.g. LOINC chest imaging report codes). */
  reportCodes: z.array(coding).optional(),
  reportCategories: z.array(coding).optional(),
});

/** Issue 3: ImagingStudy features. */
const imagingSource = z.strictObject({
  kind: z.literal('imaging'),
  measure: z.enum(['count', 'days-since-last', 'series', 'instances']),
  modalities: z.array(z.string()).optional(), // DICOM modality codes: CT, CR, DX, MR ...
  bodySites: z.array(coding).optional(),
});

export const featureSourceSchema = z.discriminatedUnion('kind', [
  patientAgeSource,
  patientSexSource,
  observationSource,
  derivedSource,
  reportFindingSource,
  imagingSource,
]);

const transformSchema = z.union([
  z.literal('log'),
  z.strictObject({ log: z.strictObject({ offset: z.number().default(0) }) }),
  z.strictObject({ standardize: z.strictObject({ mean: z.number(), std: z.number().positive() }) }),
  z.strictObject({ clip: z.strictObject({ min: z.number().optional(), max: z.number().optional() }) }),
]);

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

export const featureSchema = z.strictObject({
  id: z.string().regex(/^[a-z][a-z0-9_]*$/, 'feature ids are lower_snake_case'),
  description: z.string().optional(),
  source: featureSourceSchema,
  /** Target UCUM unit; values are converted with @lhncbc/ucum-lhc. */
  unit: ucumUnit.optional(),
  /** g/mol, for mass <-> substance conversions (glucose 180.156, cholesterol 386.654). */
  molarMass: z.number().positive().optional(),
  /** Lookback window before as-of. Required for observation, report and imaging sources. */
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

export const mappingSchema = z.strictObject({
  id: z.string().min(1),
  version: z.string().regex(/^\d+\.\d+\.\d+$/, 'must be a semantic version such as 1.0.0'),
  model: z.string().min(1),
  description: z.string().optional(),
  /** Minimum number of input features observed (not imputed) for a patient to be scored. */
  minObservedFeatures: z.number().int().nonnegative().default(0),
  /** Optional gate: the patient is scored only when this feature is > 0 (e.g. pneumonia affirmed). */
  requires: z.strictObject({ feature: z.string().min(1), reason: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'skip reasons are lower-kebab-case') }).optional(),
  features: z.array(featureSchema).min(1),
});

export type Mapping = z.infer<typeof mappingSchema>;
export type FeatureSpec = z.infer<typeof featureSchema>;
export type FeatureSource = z.infer<typeof featureSourceSchema>;
export type Transform = z.infer<typeof transformSchema>;
