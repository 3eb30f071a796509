/** FhirWriter against the real embedded FHIR server (integration). */
import type { RiskAssessment } from 'fhir/r4.js';
import { FhirClient } from '../fhir/client.js';
import { startFhirServer, type RunningFhirServer } from '../server/index.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from './identifiers.js';
import { planAssessment, type AssessmentPlan } from './plan.js';
import type { WritebackModel } from './resources.js';
import { FhirWriter, type WriteClient } from './writer.js';

const model: WritebackModel = {
  id: 'test-model',
  version: '2.0.0',
  outcome: { coding: [{ system: 'http://snomed.info/sct', code: '419099009', display: 'Dead' }], text: 'death' },
  horizon: { value: 30, unit: 'd' },
};
const asOf = new Date('2025-03-01T00:00:00Z');

describe('FhirWriter (integration)', () => {
  let server: RunningFhirServer;
  let client: FhirClient;

  beforeAll(async () => {
    server = await startFhirServer({ port: 0 });
    client = new FhirClient({ baseUrl: server.url, auth: { type: 'none' } });
    await server.load(
      ['a', 'b', 'c'].map((id) => ({ resourceType: 'Patient', id, gender: 'female' as const })) as Parameters<RunningFhirServer['load']>[0],
    );
  });
  afterAll(async () => server.close());

  async function count(type: string): Promise<number> {
    let n = 0;
    for await (const page of client.search(type, { _count: '1000' })) n += page.resources.length;
    return n;
  }

  function plans(deviceReference: string, ids: string[]): AssessmentPlan[] {
    return ids.map((patientId, i) =>
      planAssessment(
        {
          model,
          prediction: { patientId, modelId: model.id, modelVersion: model.version, probability: 0.1 * (i + 1), band: 'low' },
          patientId,
          asOf,
          basis: [`Patient/${patientId}`],
          deviceReference,
          identifierSystem: DEFAULT_IDENTIFIER_SYSTEM,
        },
        asOf,
      ),
    );
  }

  it('creates the Device once, writes each assessment once, and reports the rest as already present', async () => {
    const writer = new FhirWriter(client, DEFAULT_IDENTIFIER_SYSTEM);
    const device = await writer.ensureDevice(model);
    expect(device).toMatch(/^Device\//);
    expect(await new FhirWriter(client, DEFAULT_IDENTIFIER_SYSTEM).ensureDevice(model)).toBe(device);
    expect(await count('Device')).toBe(1);

    const first = await writer.write(plans(device, ['a', 'b']));
    expect(first).toMatchObject({ created: 2, alreadyPresent: 0 });
    const second = await writer.write(plans(device, ['a', 'b', 'c']));
    expect(second).toMatchObject({ created: 1, alreadyPresent: 2 });
    expect(await count('RiskAssessment')).toBe(3);
    expect(await count('Provenance')).toBe(3);
  });

  it('counts a conditional create that matched (a racing writer) as already present, never as created', async () => {
    // A client whose identifier pre-check sees nothing, as when another writer commits in between;
    // the transaction itself goes to the real server, whose conditional create then matches.
    const blind: WriteClient = {
      async *search() {
        yield { resources: [], included: [] };
      },
      transaction: (bundle) => client.transaction(bundle),
    };
    const writer = new FhirWriter(blind, DEFAULT_IDENTIFIER_SYSTEM);
    const before = await count('RiskAssessment');
    const result = await writer.write(plans('Device/x', ['a']));
    expect(result).toMatchObject({ created: 0, alreadyPresent: 1 });
    expect(await count('RiskAssessment')).toBe(before);
    // The Provenance is PUT under a deterministic id: the race leaves one, not two.
    expect(await count('Provenance')).toBe(before);
    const ras: RiskAssessment[] = [];
    for await (const page of client.search<RiskAssessment>('RiskAssessment', { subject: 'Patient/a' })) ras.push(...page.resources);
    expect(ras).toHaveLength(1);
  });
});
