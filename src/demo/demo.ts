import type { FhirResource } from 'fhir/r4.js';
import { chunk } from '../core/chunk.js';
import type { App } from '../app.js';
import type { FhirClient } from '../fhir/client.js';
import { startFhirServer, type RunningFhirServer } from '../server/index.js';
import { runSync, type SyncModel, type SyncResult } from '../sync/index.js';
import { loadDiabetesRows, type DiabetesRow } from './diabetes-rows.js';
import { buildDemoPatient, DEMO_AS_OF, demoPatientId, putTransaction } from './seed.js';
import { buildDemoChestImaging } from './seed-imaging.js';
import { buildShowcaseCare, buildShowcasePatients, SHOWCASE, type ShowcasePatient } from './seed-showcase.js';

/** Models the demo runs, in order. */
export const DEMO_MODELS = ['diabetes-progression', 'curb65'];

export interface DemoOptions {
  /** Add the showcase patients and the existing care of two data-set patients (`seed-showcase.ts`). */
  showcase?: boolean;
}

/** Every resource of the demo population, patient by patient. */
export function* demoResources(rows: DiabetesRow[], asOf: Date = DEMO_AS_OF, options: DemoOptions = {}): Generator<FhirResource[]> {
  const care = options.showcase ? buildShowcaseCare(asOf) : new Map<string, FhirResource[]>();
  for (let i = 0; i < rows.length; i++) {
    yield [...buildDemoPatient(rows[i], i, asOf), ...buildDemoChestImaging(rows[i], i, asOf), ...(care.get(demoPatientId(i)) ?? [])];
  }
  if (options.showcase) yield* buildShowcasePatients(asOf);
}

/** Loads the demo population into a server, 50 patients per transaction. */
export async function seedDemo(server: Pick<RunningFhirServer, 'load'>, rows: DiabetesRow[], asOf: Date = DEMO_AS_OF, options: DemoOptions = {}): Promise<number> {
  let total = 0;
  for (const part of chunk([...demoResources(rows, asOf, options)], 50)) {
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
  /** The patients the demo shows one by one (see `seed-showcase.ts`). */
  showcase: ShowcasePatient[];
}

/**
 * The embedded server, seeded with demo patients, synced end to end over HTTP: what `npm start` runs.
 * Models, logger and client settings come from the app (the composition root). The caller closes `server`.
 */
export async function runDemo(app: Pick<App, 'config' | 'logger' | 'mapContext' | 'models' | 'fhirClientFor'>, options: { rows?: DiabetesRow[] } = {}): Promise<DemoRun> {
  const rows = options.rows ?? loadDiabetesRows();
  const server = await startFhirServer({ port: 0, logger: app.logger });
  try {
    const seeded = await seedDemo(server, rows, DEMO_AS_OF, { showcase: true });
    // The embedded server: no credentials, whatever the configured server needs.
    const client = app.fhirClientFor({ ...app.config.fhir, url: server.url, auth: { type: 'none' } });
    const models = await app.models(DEMO_MODELS);
    const result = await runSync(client, models, {
      asOf: DEMO_AS_OF,
      identifierSystem: app.config.sync.identifierSystem,
      batchSize: 100,
      mapContext: app.mapContext,
      logger: app.logger,
    });
    return { server, client, models, result, rows, seeded, showcase: SHOWCASE.filter((p) => result.results.some((r) => r.patientId === p.id)) };
  } catch (err) {
    await server.close();
    throw err;
  }
}
