export { openDatabase, bossDbFor, type Database, type Queryable, type QueryResult, type OpenDatabaseOptions } from './database.js';
export { migrate, type MigrationReport } from './migrate.js';
export { MIGRATIONS, SCHEMA } from './migrations.js';
export { RunStore, isUuid } from './runs.js';
export type { RunRow, RunState, BatchRow, BatchState, OutcomeRow, OutcomeInput, OutcomeStatus, ExclusionCount, RunCounts, RunSelection, FinalizeResult } from './runs.js';
export { WatermarkStore } from './watermarks.js';
export { PatientScoreStore, type PatientScore, type PatientScoreUpdate } from './patient-scores.js';
export { SessionStore } from './sessions.js';
