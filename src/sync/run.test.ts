/**
 * The orchestrator against the real embedded FHIR server, with a fault-injecting client wrapped around the
 * real one for what a server won't do on demand: a write that fails, a patient listed twice while paging,
 * credentials that stop working mid-run.
 */
import type { Bundle, Resource } from 'fhir/r4.js';
import { AdapterError } from '../core/errors.js';
import { packagePath } from '../core/paths.js';
import { loadDiabetesRows } from '../demo/diabetes-rows.js';
import { seedDemo } from '../demo/demo.js';
import { DEMO_AS_OF } from '../demo/seed.js';
import { FhirClient, type SearchPage, type SearchParams } from '../fhir/client.js';
import { startFhirServer, type RunningFhirServer } from '../server/index.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../writeback/identifiers.js';
import { prepareModels, type SyncModel } from './models.js';
import { skipEntry } from './batch.js';
import { runSync } from './run.js';

class FaultyClient extends FhirClient {
  failTransactions: AdapterError | undefined;
  /** Batch transactions never answer (a server that hangs mid-write). */
  hangTransactions = false;
  failDevice: AdapterError | undefined;
  failSearchesOf: { type: string; error: AdapterError; after: number } | undefined;
  duplicatePatientIds = false;
  private searches = 0;

  override async *search<T extends Resource>(resourceType: string, params: SearchParams): AsyncGenerator<SearchPage<T>> {
    if (this.failSearchesOf?.type === resourceType && this.searches++ >= this.failSearchesOf.after) throw this.failSearchesOf.error;
    for await (const page of super.search<T>(resourceType, params)) {
      // As offset paging over a changing population can: every patient id page repeats its first id.
      if (this.duplicatePatientIds && resourceType === 'Patient' && params._elements === 'id' && page.resources.length) {
        yield { ...page, resources: [...page.resources, page.resources[0]] };
      } else yield page;
    }
  }

  override transaction(bundle: Bundle): Promise<Bundle> {
    if (this.failDevice && bundle.entry?.some((e) => e.resource?.resourceType === 'Device')) return Promise.reject(this.failDevice);
    if (this.hangTransactions && bundle.entry?.some((e) => e.resource?.resourceType === 'RiskAssessment')) return new Promise(() => undefined);
    if (this.failTransactions && bundle.entry?.some((e) => e.resource?.resourceType === 'RiskAssessment')) return Promise.reject(this.failTransactions);
    return super.transaction(bundle);
  }
}

const unavailable = () => new AdapterError('fhir-unavailable', 'FHIR server unavailable (injected)', { transient: true });

describe('runSync (integration, with injected faults)', () => {
  let server: RunningFhirServer;
  let models: SyncModel[];

  beforeEach(async () => {
    server = await startFhirServer({ port: 0 });
    await seedDemo(server, loadDiabetesRows().slice(0, 10));
  });
  afterEach(async () => server.close());
  beforeAll(async () => {
    models = await prepareModels(['diabetes-progression'], { modelsDir: packagePath('models'), mappingsDir: packagePath('mappings') });
  });

  const client = () => new FaultyClient({ baseUrl: server.url, auth: { type: 'none' }, maxRetries: 0 });
  const options = { asOf: DEMO_AS_OF, identifierSystem: DEFAULT_IDENTIFIER_SYSTEM, batchSize: 4, explain: false };

  it('scores a patient listed twice by the server once', async () => {
    const c = client();
    c.duplicatePatientIds = true;
    const result = await runSync(c, models, options);
    expect(result.patients).toBe(10);
    expect(result.byModel['diabetes-progression']).toMatchObject({ scored: 10, created: 10 });
    expect(new Set(result.results.map((r) => r.patientId)).size).toBe(10);
  });

  it('fails a batch whose write fails as a whole: nothing of it counted as scored, each patient reported once', async () => {
    const c = client();
    c.failTransactions = unavailable();
    const result = await runSync(c, models, { ...options, patientIds: ['demo-0001', 'demo-0002', 'no-such-patient'] });
    expect(result.failed).toBe(3);
    expect(result.byModel['diabetes-progression']).toMatchObject({ scored: 0, created: 0, bands: {} });
    expect(result.notFound).toBe(0);
    expect(result.results.map((r) => `${r.patientId}:${r.status}`).sort()).toEqual(['demo-0001:failed', 'demo-0002:failed', 'no-such-patient:failed']);
    expect(result.aborted).toBeUndefined();

    // The next run completes the failed patients, without duplicates.
    c.failTransactions = undefined;
    const again = await runSync(c, models, { ...options, patientIds: ['demo-0001', 'demo-0002', 'no-such-patient'] });
    expect(again).toMatchObject({ failed: 0, notFound: 1 });
    expect(again.byModel['diabetes-progression']).toMatchObject({ scored: 2, created: 2 });
  });

  it('stops early when credentials stop working, keeping the complete batches before it', async () => {
    const c = client();
    c.failSearchesOf = { type: 'Observation', after: 1, error: new AdapterError('fhir-auth', 'FHIR server refused the credentials (401)', { status: 401 }) };
    // Without CarePlan proposals: their reads of recent results are Observation searches too.
    const result = await runSync(c, models, { ...options, carePlans: false });
    expect(result.aborted).toMatchObject({ code: 'fhir-auth' });
    expect(result.batches).toBe(1);
    expect(result.byModel['diabetes-progression'].scored).toBe(4);
    expect(result.byModel['diabetes-progression'].created).toBe(4);
  });

  it('stops after the same permanent error in several batches in a row', async () => {
    const c = client();
    c.failTransactions = new AdapterError('fhir-rejected', 'transaction rejected (injected 422)', { status: 422 });
    const result = await runSync(c, models, { ...options, batchSize: 2 });
    expect(result.aborted).toMatchObject({ code: 'fhir-rejected' });
    expect(result.failures).toHaveLength(2);
    expect(result.failed).toBe(4);
    expect(result.byModel['diabetes-progression'].scored).toBe(0);
  });

  it('reports a failed Device registration as the run\'s failure, before any batch', async () => {
    const c = client();
    c.failDevice = unavailable();
    const result = await runSync(c, models, options);
    expect(result.aborted).toMatchObject({ code: 'fhir-unavailable', stage: 'devices' });
    expect(result).toMatchObject({ batches: 0, patients: 0 });
  });

  it('stops taking batches when asked, counting the batch in progress in full', async () => {
    const stop = new AbortController();
    const result = await runSync(client(), models, { ...options, stop: stop.signal, onProgress: () => stop.abort() });
    expect(result.interrupted).toEqual({ abandonedPatients: 0 });
    expect(result).toMatchObject({ batches: 1, patients: 4 });
    expect(result.byModel['diabetes-progression']).toMatchObject({ scored: 4, created: 4 });
    expect(result.results).toHaveLength(4);
  });

  it('abandons a batch whose write does not come back when asked twice, counting none of it', async () => {
    const c = client();
    c.hangTransactions = true;
    const stop = new AbortController();
    const abandon = new AbortController();
    const result = await runSync(c, models, {
      ...options,
      stop: stop.signal,
      abandon: abandon.signal,
      // The first batch is scored and its (never answered) write is in flight: stop, then give up on it.
      beforeWrite: () => {
        stop.abort();
        setImmediate(() => abandon.abort());
      },
    });
    expect(result.interrupted).toEqual({ abandonedPatients: 4 });
    expect(result).toMatchObject({ batches: 0, patients: 0, failed: 0 });
    expect(result.byModel['diabetes-progression']).toMatchObject({ scored: 0, created: 0 });
    expect(result.results).toEqual([]);
  });

  it('lets the caller skip entries and see rows before anything is written', async () => {
    const seen: string[] = [];
    const result = await runSync(client(), models, {
      ...options,
      patientIds: ['demo-0001', 'demo-0002'],
      beforeWrite: (batch) => {
        for (const entry of batch.entries) {
          seen.push(`${entry.patientId}:${entry.row?.columns.length}:${entry.plans.length}`);
          if (entry.patientId === 'demo-0002') skipEntry(entry, 'inputs-unchanged');
        }
      },
    });
    expect(seen.sort()).toEqual(['demo-0001:10:1', 'demo-0002:10:1']);
    expect(result.byModel['diabetes-progression']).toMatchObject({ scored: 1, created: 1, skipped: 1, skippedByReason: { 'inputs-unchanged': 1 } });
    expect(result.results.find((r) => r.patientId === 'demo-0002')).toMatchObject({ status: 'skipped', reason: 'inputs-unchanged' });
  });
});
