import type { FhirResource } from 'fhir/r4.js';
import { chunk } from '../core/chunk.js';
import { silentLogger, type Logger } from '../core/log.js';
import { FhirClient } from '../fhir/client.js';
import { startFhirServer, type RunningFhirServer } from '../server/index.js';
import { prepareModels, type SyncModel } from '../sync/models.js';
import { runSync, type SyncResult } from '../sync/sync.js';
import { loadDiabetesRows, type DiabetesRow } from './diabetes-rows.js';
import { buildDemoPatient, DEMO_AS_OF, putTransaction } from './seed.js';
import { buildDemoChestImaging } from './seed-imaging.js';

/** Models the demo runs, in order. */
export const DEMO_MODELS = ['diabetes-progression', 'curb65'];

/** Every resource of the demo population, patient by patient. */
export function* demoResources(rows: DiabetesRow[], asOf: Date = DEMO_AS_OF): Generator<FhirResource[]> {
  for (let i = 0; i < rows.length; i++) yield [...buildDemoPatient(rows[i], i, asOf), ...buildDemoChestImaging(rows[i], i, asOf)];
}

/** Loads the demo population into a server, 50 patients per transaction. */
export async function seedDemo(server: Pick<RunningFhirServer, 'load'>, rows: DiabetesRow[], asOf: Date = DEMO_AS_OF): Promise<number> {
  let total = 0;
  for (const part of chunk([...demoResources(rows, asOf)], 50)) {
    // The server speaks medplum's resource types; the shapes are the same R4 JSON.
    const loaded = await server.load(putTransaction(part.flat()) as Parameters<RunningFhirServer['load']>[0]);
    total += loaded.total;
  }
  return total;
}

export interface DemoRun {
  server: RunningFhirServer;
  client: FhirClient;
  models: SyncModel[];
  result: SyncResult;
  rows: DiabetesRow[];
  seeded: number;
}

/**
 * The embedded server, seeded with demo patients, synced end to end over HTTP: what `npm start` runs.
 * The caller closes `server`.
 */
export async function runDemo(options: { logger?: Logger; modelsDir: string; mappingsDir: string; identifierSystem: string; rows?: DiabetesRow[] }): Promise<DemoRun> {
  const logger = options.logger ?? silentLogger;
  const rows = options.rows ?? loadDiabetesRows();
  const server = await startFhirServer({ port: 0, logger });
  try {
    const seeded = await seedDemo(server, rows);
    const client = new FhirClient({ baseUrl: server.url, auth: { type: 'none' }, logger });
    const models = await prepareModels(DEMO_MODELS, options);
    const result = await runSync(client, models, {
      asOf: DEMO_AS_OF,
      identifierSystem: options.identifierSystem,
      batchSize: 100,
      logger,
    });
    return { server, client, models, result, rows, seeded };
  } catch (err) {
    await server.close();
    throw err;
  }
}
