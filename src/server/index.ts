// Public API of the embedded FHIR R4 server (medplum fhir-router + MemoryRepository, gaps wrapped).
export { createFhirServer, startFhirServer, toTransaction, FHIR_BASE_PATH } from './server.js';
export type { FhirServer, FhirServerOptions, LoadResult, RunningFhirServer, StartFhirServerOptions } from './server.js';
export { loadFiles, describeFailure } from './load.js';
export type { LoadFilesOptions, LoadFilesResult, LoadFailure, LoadedFile } from './load.js';
export { runFhirServer, parseArgs } from './main.js';
export type { RunFhirServerOptions, RunningFhirServerProcess } from './main.js';
export { IndexedMemoryRepository } from './repository.js';
