/**
 * The feature mapping: mapping files -> checked Mapping objects -> per-patient FeatureRows.
 * `mapping/` owns the format (schema, validation, queries, loading); `sources/` holds one plug-in per
 * kind of source; `engine.ts` maps a record. Pure code; the only I/O is reading mapping files.
 */
export { parseMapping, loadMapping, validateMappingsDir, type MappingFileResult } from './mapping/load.js';
export { inputColumns, valueColumns, resourceNeeds, type ResourceNeeds } from './mapping/queries.js';
export type { Mapping, FeatureSpec } from './mapping/schema.js';
export type { Coding } from './mapping/fields.js';
export { mapPatient } from './engine.js';
export { createMapContext } from './context.js';
export { describeTransforms } from './values.js';
export type { MapContext, ReportAnalysis, ReportAnalyzer } from './sources/index.js';
