// Public API of the embedded FHIR R4 server (medplum fhir-router + MemoryRepository, gaps wrapped).
export { createFhirServer, startFhirServer, toTransaction, FHIR_BASE_PATH } from './server.js';
export type { FhirServer, FhirServerOptions, LoadResult, RunningFhirServer, StartFhirServerOptions } from './server.js';
export { loadFiles, describeFailure } from './load.js';
export type { LoadFilesOptions, LoadFilesResult, LoadFailure, LoadedFile } from './load.js';
export { runFhirServer, parseArgs, isLoopbackHost, parseCountFlag, checkBaseUrl } from './main.js';
export type { RunFhirServerOptions, RunningFhirServerProcess } from './main.js';
export { IndexedMemoryRepository } from './repository.js';
export type { ChangeRecord } from './repository.js';
export type { Authorize } from './auth.js';
export type { BulkExportOptions, BulkExportManifest } from './bulk-export.js';
export { PATIENT_SCOPED_TYPES, SINGLE_PATIENT_REQUIRED, CATEGORY_REQUIRED } from './patient-scope.js';
export type { PatientScopeRules } from './patient-scope.js';
