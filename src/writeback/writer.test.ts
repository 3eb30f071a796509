/** FhirWriter against the real embedded FHIR server (integration). */
import type { CarePlan, RiskAssessment } from 'fhir/r4.js';
import { AdapterError } from '../core/errors.js';
import { FhirClient, type FhirClientOptions } from '../fhir/client.js';
import { startFaultProxy, type FaultKind, type FaultProxy } from '../fhir/testing/fault-proxy.js';
import { recordingClock } from '../fhir/testing/scripted-peer.js';
import { startFhirServer, type RunningFhirServer } from '../server/index.js';
import { applyPlanDefinition, buildAssessmentContext, loadCarePlanDefinitions, planCarePlanWrite } from './care-plan/index.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from './identifiers.js';
import { fullUrlFor, planAssessment, type AssessmentPlan } from './plan.js';
import type { WritebackModel } from './resources.js';
import { FhirWriter, type WriteClient } from './writer.js';

const model: WritebackModel = {
  id: 'test-model',
  version: '2.0.0',
  outcome: { coding: [{ system: 'http://snomed.info/sct', code: '419099009', display: 'Dead' }], text: 'death' },
  horizon: { value: 30, unit: 'd' },
};
const asOf = new Date('2025-03-01T00:00:00Z');

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

/** The plans with a diabetes CarePlan proposal each (HbA1c for a high band), as the CarePlan step builds them. */
function withCarePlans(list: AssessmentPlan[], deviceReference: string): AssessmentPlan[] {
  const defs = loadCarePlanDefinitions('diabetes-progression')!;
  return list.map((plan) => {
    const prediction = { modelId: 'diabetes-progression', modelVersion: '1.0.0', probability: 0.8, band: 'high' as const };
    const context = buildAssessmentContext({ prediction, asOf, row: { columns: [], imputed: [], raw: {} }, units: {} });
    const proposal = applyPlanDefinition(defs.planDefinitions[0], defs.activityDefinitions, context, {
      patientId: plan.patientId,
      asOf,
      deviceReference,
      riskAssessmentReference: fullUrlFor(plan.identifier.value),
      identifierSystem: DEFAULT_IDENTIFIER_SYSTEM,
    });
    const write = planCarePlanWrite({ proposal, patientId: plan.patientId, onServer: [], identifierSystem: DEFAULT_IDENTIFIER_SYSTEM, deviceReference, recorded: asOf });
    return { ...plan, carePlans: [{ identifier: proposal.identifier, proposal, plan: write }] };
  });
}

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

describe('FhirWriter with unknown-outcome faults (integration, fault proxy in front of the embedded server)', () => {
  let server: RunningFhirServer;
  let direct: FhirClient;
  const proxies: FaultProxy[] = [];

  beforeEach(async () => {
    server = await startFhirServer({ port: 0 });
    direct = new FhirClient({ baseUrl: server.url });
    await server.load(['a', 'b'].map((id) => ({ resourceType: 'Patient', id, gender: 'male' as const })) as Parameters<RunningFhirServer['load']>[0]);
  });
  afterEach(async () => {
    await Promise.all(proxies.splice(0).map((p) => p.close()));
    await server.close();
  });

  /** A client through a proxy that gives the transaction POSTs the scripted faults, in order. */
  async function throughProxy(postFaults: FaultKind[], extra: Partial<FhirClientOptions> = {}) {
    const origin = new URL(server.url).origin;
    const proxy = await startFaultProxy({ target: origin, script: [{ match: (r) => r.method === 'POST', faults: postFaults }] });
    proxies.push(proxy);
    const client = new FhirClient({ baseUrl: server.url.replace(origin, proxy.origin), clock: recordingClock(), random: () => 0.5, ...extra });
    return { proxy, client, posts: () => proxy.log.filter((e) => e.method === 'POST') };
  }

  async function count(type: string): Promise<number> {
    let n = 0;
    for await (const page of direct.search(type, { _count: '1000' })) n += page.resources.length;
    return n;
  }

  it('recognises a transaction committed before its response was lost: counted as created, not sent again', async () => {
    const { client, posts } = await throughProxy(['lost-after-commit']);
    const result = await new FhirWriter(client, DEFAULT_IDENTIFIER_SYSTEM).write(plans('Device/d1', ['a', 'b']));
    expect(result).toMatchObject({ created: 2, alreadyPresent: 0 });
    expect(result.createdIdentifiers).toHaveLength(2);
    expect(posts().map((p) => [p.fault ?? 'ok', p.forwarded])).toEqual([['lost-after-commit', true]]);
    expect(await count('RiskAssessment')).toBe(2);
    expect(await count('Provenance')).toBe(2);
  });

  it.each<[FaultKind[], number]>([
    [['500'], 2],
    [['reset', '500'], 3],
    [['503-html', '429-seconds'], 3],
  ])('resends a transaction the read-back shows missing after %j, with the same result as a clean write', async (faults, attempts) => {
    const { client, posts } = await throughProxy(faults);
    const result = await new FhirWriter(client, DEFAULT_IDENTIFIER_SYSTEM).write(plans('Device/d1', ['a', 'b']));
    expect(result).toMatchObject({ created: 2, alreadyPresent: 0 });
    expect(posts()).toHaveLength(attempts);
    expect(await count('RiskAssessment')).toBe(2);
    expect(await count('Provenance')).toBe(2);
  });

  it('sends a CarePlan whose RiskAssessment is already stored on its own, pointing at the stored one; a lost answer does not duplicate it', async () => {
    // The assessments are already there (a shadow run before, or proposals added later): only the CarePlans go.
    const stored = await new FhirWriter(direct, DEFAULT_IDENTIFIER_SYSTEM).write(plans('Device/d1', ['a', 'b']));
    expect(stored.created).toBe(2);
    const { client, posts } = await throughProxy(['lost-after-commit']);
    const result = await new FhirWriter(client, DEFAULT_IDENTIFIER_SYSTEM).write(withCarePlans(plans('Device/d1', ['a', 'b']), 'Device/d1'));
    expect(result).toMatchObject({ created: 0, alreadyPresent: 2 });
    // read back by the CarePlans' identifiers: counted as created, not sent again
    expect(result.carePlans.created).toHaveLength(2);
    expect(posts().map((p) => [p.fault ?? 'ok', p.forwarded])).toEqual([['lost-after-commit', true]]);
    expect(posts()[0].body).not.toContain('"resourceType":"RiskAssessment"');
    const carePlans: CarePlan[] = [];
    for await (const page of direct.search<CarePlan>('CarePlan', { _count: '100' })) carePlans.push(...page.resources);
    expect(carePlans).toHaveLength(2);
    const assessments: RiskAssessment[] = [];
    for await (const page of direct.search<RiskAssessment>('RiskAssessment', { _count: '100' })) assessments.push(...page.resources);
    for (const cp of carePlans) {
      const ra = assessments.find((a) => a.subject.reference === cp.subject.reference)!;
      expect(cp.supportingInfo).toEqual([{ reference: `RiskAssessment/${ra.id}` }]);
    }
    expect(await count('Provenance')).toBe(4);
    // and the same write again finds them: nothing sent
    const again = await new FhirWriter(direct, DEFAULT_IDENTIFIER_SYSTEM).write(withCarePlans(plans('Device/d1', ['a', 'b']), 'Device/d1'));
    expect(again.carePlans).toEqual({ created: [], alreadyPresent: expect.arrayContaining(result.carePlans.created), revoked: [] });
    expect(await count('CarePlan')).toBe(2);
  });

  it('says truthfully how many attempts a write that never got through made, and writes nothing', async () => {
    const { client, posts } = await throughProxy(['500', 'reset', '500'], { maxRetries: 2 });
    let error: unknown;
    try {
      await new FhirWriter(client, DEFAULT_IDENTIFIER_SYSTEM).write(plans('Device/d1', ['a']));
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(AdapterError);
    expect((error as AdapterError).code).toBe('fhir-unavailable');
    expect((error as AdapterError).transient).toBe(true);
    expect((error as AdapterError).message).toMatch(/failed on all 3 attempts/);
    expect((error as AdapterError).details).toMatchObject({ attempts: 3 });
    expect(posts()).toHaveLength(3);
    expect(await count('RiskAssessment')).toBe(0);
  });

  it.each<{ faults: FaultKind[] }>([
    { faults: ['500'] },
    { faults: ['reset'] },
    { faults: ['lost-after-commit'] },
    { faults: ['stall-after-commit'] },
    { faults: ['500', 'lost-after-commit'] },
  ])('registers the Device exactly once after $faults on its create', async ({ faults }) => {
    const { client, posts } = await throughProxy(faults, { timeoutMs: 1500 });
    const reference = await new FhirWriter(client, DEFAULT_IDENTIFIER_SYSTEM).ensureDevice(model);
    expect(reference).toMatch(/^Device\/[A-Za-z0-9\-.]+$/);
    expect(await count('Device')).toBe(1);
    // Sent again only while the read-back found nothing.
    const committed = posts().findIndex((p) => p.forwarded);
    expect(committed).toBe(posts().length - 1);
  });
});

