/**
 * Integration: real EHR-shaped data. The 58 Synthea patients (../shared/datasets/synthea-r4, blood
 * pressure as panels with components, Synthea's units) are loaded into the embedded FHIR server and
 * synced with diabetes-progression at an as-of inside their data. Skips cleanly without the datasets.
 */
import path from 'node:path';
import type { Resource } from '@medplum/fhirtypes';
import type { RiskAssessment } from 'fhir/r4.js';
import { packagePath, sharedDatasetsDir } from '../../src/core/paths.js';
import { FhirClient } from '../../src/fhir/client.js';
import { loadFiles, startFhirServer, type RunningFhirServer } from '../../src/server/index.js';
import { validationIssues } from '../../src/server/repository.js';
import { prepareModels, type SyncModel } from '../../src/sync/models.js';
import { runSync, type SyncResult } from '../../src/sync/sync.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../../src/writeback/identifiers.js';

const datasets = sharedDatasetsDir();
const describeWithData = datasets ? describe : describe.skip;
if (!datasets) console.log('synthea-sync: ../shared/datasets not found; skipping the Synthea integration test');

const AS_OF = new Date('2020-06-30T00:00:00Z');

describeWithData('Synthea patients through the embedded server (integration)', () => {
  let server: RunningFhirServer;
  let client: FhirClient;
  let models: SyncModel[];
  let result: SyncResult;
  let loadedPatients: number;

  beforeAll(async () => {
    server = await startFhirServer({ port: 0 });
    const loaded = await loadFiles(server, [path.join(datasets!, 'synthea-r4')]);
    loadedPatients = loaded.counts.Patient ?? 0;
    client = new FhirClient({ baseUrl: server.url, auth: { type: 'none' } });
    models = await prepareModels(['diabetes-progression'], { modelsDir: packagePath('models'), mappingsDir: packagePath('mappings') });
    result = await runSync(client, models, { asOf: AS_OF, identifierSystem: DEFAULT_IDENTIFIER_SYSTEM, batchSize: 20 });
  }, 600_000);

  afterAll(async () => {
    await server?.close();
  });

  it('accounts for every patient: scored, or skipped with a reason', () => {
    expect(loadedPatients).toBe(58);
    expect(result.patients).toBe(58);
    expect(result.failed).toBe(0);
    const totals = result.byModel['diabetes-progression'];
    expect(totals.scored + totals.skipped).toBe(58);
    expect(totals.scored).toBeGreaterThan(0);
    const perPatient = result.results.filter((r) => r.modelId === 'diabetes-progression');
    expect(new Set(perPatient.map((r) => r.patientId)).size).toBe(58);
    for (const r of perPatient) {
      if (r.status === 'skipped') expect(r.reason).toMatch(/\S/);
      else expect(r.status).toBe('scored');
    }
  });

  it('scores every patient that has enough data', () => {
    // "Enough" is the mapping's own rule (minObservedFeatures, required features); a patient is only
    // skipped for it, never for an error.
    const mapping = models[0].mapping;
    for (const r of result.results) {
      if (r.status === 'skipped') expect(r.reason).not.toMatch(/error|fail/i);
    }
    expect(mapping.minObservedFeatures).toBeGreaterThan(0);
  });

  it('reconciles, for every patient, the Observations fetched with used + excluded by reason', () => {
    let fetched = 0;
    for (const r of result.results) {
      const counts = r.counts!;
      expect(counts.fetched).toBe(counts.used + counts.excluded);
      const byReason = Object.values(r.excluded ?? {}).reduce((a, b) => a + (b ?? 0), 0);
      expect(byReason).toBe(counts.excluded);
      fetched += counts.fetched;
    }
    const totals = result.byModel['diabetes-progression'];
    expect(totals.fetched).toBe(fetched);
    expect(totals.fetched).toBe(totals.used + totals.excluded);
    expect(totals.used).toBeGreaterThan(0);
  });

  it('writes one valid RiskAssessment per scored patient, its basis being Observations of that patient', async () => {
    const assessments: RiskAssessment[] = [];
    for await (const page of client.search<RiskAssessment>('RiskAssessment', { _count: '500' })) assessments.push(...page.resources);
    const scored = result.results.filter((r) => r.status === 'scored');
    expect(assessments).toHaveLength(scored.length);
    for (const ra of assessments) {
      expect(validationIssues(ra as unknown as Resource).filter((i) => i.severity === 'error')).toEqual([]);
      for (const b of ra.basis ?? []) {
        const [type, id] = b.reference!.split('/');
        expect(type).toBe('Observation');
        const obs = await client.read<fhir4.Observation>('Observation', id);
        expect(obs.subject?.reference).toBe(ra.subject.reference);
        // Nothing after as-of is ever used.
        expect(new Date(obs.effectiveDateTime ?? obs.issued!).getTime()).toBeLessThanOrEqual(AS_OF.getTime());
      }
    }
  }, 300_000);
});
