/**
 * Bulk Data `$export` (FHIR Bulk Data Access IG v2): the HTTP client (`client.ts`), the request
 * (`request.ts`), the manifest (`manifest.ts`), NDJSON streaming and line checks (`ndjson.ts`), and one
 * export run to the end and staged, resumable (`export.ts`). Staging itself is src/db/staging.ts.
 */
export { BulkDataClient, type BulkClientOptions, type ExportStatus, type PollProgress } from './client.js';
export { parseManifest, type BulkFile, type BulkFileKind, type BulkManifest } from './manifest.js';
export { readLines, checkResourceLine, type CheckedResource } from './ndjson.js';
export { exportRequestKey, kickOffPath, kickOffParams, validateExportRequest, NDJSON_FORMAT, type BulkExportRequest, type ExportLevel } from './request.js';
export {
  runBulkExport,
  compartmentPatient,
  type BulkExportReport,
  type BulkExportStore,
  type BulkSink,
  type FileCounts,
  type LineProblem,
  type OpenExport,
  type ResourceRef,
  type RunExportOptions,
  type StagedResource,
} from './export.js';
