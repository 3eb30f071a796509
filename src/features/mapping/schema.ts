import { z } from 'zod';
import { SOURCE_SCHEMAS } from '../sources/index.js';
import { featureFields } from './fields.js';

/**
 * The declarative mapping format (`mappings/<model>.yaml`): how FHIR data becomes one model's input
 * tensor. This schema is the contract between mapping files, the feature engine and model cards: the
 * common feature fields (`fields.ts`) plus one `source:` schema per registered source kind.
 */

export const featureSourceSchema = z.discriminatedUnion('kind', SOURCE_SCHEMAS);

export const featureSchema = featureFields.extend({ source: featureSourceSchema });

export const mappingSchema = z.strictObject({
  id: z.string().min(1),
  version: z.string().regex(/^\d+\.\d+\.\d+$/, 'must be a semantic version such as 1.0.0'),
  model: z.string().min(1),
  description: z.string().optional(),
  /** Minimum number of input features observed (not imputed) for a patient to be scored. */
  minObservedFeatures: z.number().int().nonnegative().default(0),
  /** Optional gate: the patient is scored only when this feature is > 0 (e.g. pneumonia affirmed). */
  requires: z
    .strictObject({ feature: z.string().min(1), reason: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'skip reasons are lower-kebab-case') })
    .optional(),
  features: z.array(featureSchema).min(1),
});

export type Mapping = z.infer<typeof mappingSchema>;
export type FeatureSpec = z.infer<typeof featureSchema>;
export type { FeatureSource } from '../sources/index.js';
export type { Transform } from './fields.js';
