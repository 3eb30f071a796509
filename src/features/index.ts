/**
 * The feature mapping engine: mapping files -> checked Mapping objects -> per-patient FeatureRows.
 * Pure code; the only I/O is reading mapping files.
 */
export {
  parseMapping,
  loadMapping,
  loadMappings,
  validateMappingsCommand,
  inputColumns,
  observationCodes,
  maxLookback,
  lookbackStart,
  type MappingFileResult,
  type ValidateMappingsResult,
} from './load.js';
export { mapPatient, compileMapping, completedYears } from './engine.js';
import { analyzeReport } from '../nlp/index.js';
import { setReportAnalyzer } from './sources-issue3.js';

// report-finding features read findings through the clinical NLP; the engine takes it as a plain
// function so its tests can run a fixed analyzer.
setReportAnalyzer(analyzeReport);

export { setReportAnalyzer, REPORT_STATUSES, IMAGING_STATUSES, type ReportAnalysis, type ReportAnalyzer } from './sources-issue3.js';
export { mappingSchema, featureSchema, DEFAULT_OBSERVATION_STATUSES, type Mapping, type FeatureSpec, type FeatureSource, type Transform } from './mapping-schema.js';
export { windowStart, parseFhirDateTime } from './time.js';
export { convertUnit, isValidUcum } from './ucum.js';
