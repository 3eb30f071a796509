/**
 * Integration: CarePlan proposals written to the real embedded FHIR server and read back, as the batch
 * step will do it. The content hash the adapter stores must survive the server's round trip (otherwise
 * every plan would look edited); a re-run writes nothing; a newer different plan revokes the older draft
 * in the same transaction; an activated plan is never touched; a clinician's edit between our read and
 * our write wins (If-Match fails the transaction, nothing is half-written) and is then left alone.
 */
import type { Bundle, CarePlan, Condition, Patient, Provenance } from 'fhir/r4.js';
import type { Prediction } from '../../src/core/types.js';
import { FhirClient } from '../../src/fhir/client.js';
import { startFhirServer, type RunningFhirServer } from '../../src/server/index.js';
import { applyPlanDefinition, buildAssessmentContext, loadCarePlanDefinitions, planCarePlanWrite, proposalState, type CarePlanDefinitions } from '../../src/writeback/care-plan/index.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../../src/writeback/identifiers.js';
import { buildTransactionBundle, fullUrlFor, planAssessment } from '../../src/writeback/plan.js';

const DEVICE = 'Device/dm-model';
const model = {
  id: 'diabetes-progression',
  version: '1.0.0',
  outcome: { coding: [{ system: 'http://snomed.info/sct', code: '73211009' }], text: 'progression' },
  horizon: { value: 1, unit: 'a' },
};

describe('CarePlan proposals against the embedded FHIR server', () => {
  let server: RunningFhirServer;
  let client: FhirClient;
  let defs: CarePlanDefinitions;

  beforeAll(async () => {
    defs = loadCarePlanDefinitions('diabetes-progression')!;
    server = await startFhirServer({ port: 0 });
    client = new FhirClient({ baseUrl: server.url, auth: { type: 'none' } });
    const patient: Patient = { resourceType: 'Patient', id: 'p1', birthDate: '1960-01-01', gender: 'female' };
    const dm: Condition = { resourceType: 'Condition', id: 'dm', subject: { reference: 'Patient/p1' }, code: { coding: [{ system: 'http://snomed.info/sct', code: '44054006' }] } };
    await server.load([patient, dm] as Parameters<RunningFhirServer['load']>[0]);
  });
  afterAll(async () => server.close());

  async function all<T extends CarePlan | Provenance>(type: T['resourceType'], params: Record<string, string> = {}): Promise<T[]> {
    const out: T[] = [];
    for await (const page of client.search<T>(type, { ...params, _count: '100' })) out.push(...page.resources);
    return out;
  }
  const carePlans = () => all<CarePlan>('CarePlan', { subject: 'Patient/p1' });

  /** One run of the batch step for p1 at `asOf`: RiskAssessment + CarePlan proposal in one transaction. */
  async function run(asOf: Date, measured: { bmi: number; ldl: number }, band: Prediction['band'] = 'high'): Promise<{ bundle: Bundle; plan: ReturnType<typeof planCarePlanWrite> }> {
    const prediction: Prediction = { patientId: 'p1', modelId: model.id, modelVersion: model.version, probability: 0.7, band };
    const ra = planAssessment({ model, prediction, patientId: 'p1', asOf, basis: ['Condition/dm'], deviceReference: DEVICE, identifierSystem: DEFAULT_IDENTIFIER_SYSTEM }, asOf);
    const context = buildAssessmentContext({
      prediction,
      asOf,
      row: { columns: ['bmi', 'ldl'], imputed: [false, false], raw: { bmi: measured.bmi, ldl: measured.ldl } },
      units: { bmi: 'kg/m2', ldl: 'mg/dL' },
    });
    const proposal = applyPlanDefinition(defs.planDefinitions[0], defs.activityDefinitions, context, {
      patientId: 'p1',
      asOf,
      deviceReference: DEVICE,
      riskAssessmentReference: fullUrlFor(ra.identifier.value),
      identifierSystem: DEFAULT_IDENTIFIER_SYSTEM,
      addresses: ['Condition/dm'],
    });
    const plan = planCarePlanWrite({ proposal, patientId: 'p1', onServer: await carePlans(), identifierSystem: DEFAULT_IDENTIFIER_SYSTEM, deviceReference: DEVICE, recorded: asOf });
    const bundle = buildTransactionBundle([ra]);
    bundle.entry!.push(...plan.entries);
    return { bundle, plan };
  }

  it('writes, re-runs without duplicates, revokes the superseded draft, leaves an activated plan alone, and lets a concurrent edit win', async () => {
    // 1. first proposal: HbA1c + dietitian
    const first = await run(new Date('2025-01-31T00:00:00Z'), { bmi: 33, ldl: 120 });
    expect(first.plan.created).toBe(true);
    await client.transaction(first.bundle);
    let plans = await carePlans();
    expect(plans).toHaveLength(1);
    const a = plans[0];
    expect(a.supportingInfo![0].reference).toMatch(/^RiskAssessment\//); // the urn:uuid was resolved
    // the stored content hash survives the server round trip: the plan is recognised as untouched
    expect(proposalState(a, { identifierSystem: DEFAULT_IDENTIFIER_SYSTEM, deviceReference: DEVICE })).toEqual({ revocable: true });

    // 2. a re-run of the same as-of writes no CarePlan
    const again = await run(new Date('2025-01-31T00:00:00Z'), { bmi: 33, ldl: 120 });
    expect(again.plan).toMatchObject({ created: false, notCreated: 'already-written', entries: [] });
    await client.transaction(again.bundle);
    expect(await carePlans()).toHaveLength(1);

    // 3. a newer run proposes a different plan (LDL now high): the older draft is revoked in the same transaction
    const second = await run(new Date('2025-04-30T00:00:00Z'), { bmi: 33, ldl: 175 });
    expect(second.plan).toMatchObject({ created: true, revoked: [{ id: a.id }] });
    await client.transaction(second.bundle);
    plans = await carePlans();
    expect(plans.map((p) => p.status).sort()).toEqual(['draft', 'revoked']);
    const revoked = plans.find((p) => p.id === a.id)!;
    expect(revoked.extension![0].extension!.some((e) => e.url === 'supersededBy')).toBe(true);
    const b = plans.find((p) => p.status === 'draft')!;
    expect(b.activity!.map((x) => x.detail!.code!.text)).toEqual(['HbA1c every 3 months', 'Dietitian referral', 'Lipid-lowering therapy review']);

    // 4. a clinician activates the new plan; a later different proposal leaves it untouched
    await client.transaction({ resourceType: 'Bundle', type: 'transaction', entry: [{ resource: { ...b, status: 'active' }, request: { method: 'PUT', url: `CarePlan/${b.id}` } }] });
    const third = await run(new Date('2025-07-31T00:00:00Z'), { bmi: 28, ldl: 175 });
    expect(third.plan.untouched).toEqual([
      { id: b.id, why: 'not-draft' },
      { id: a.id, why: 'not-draft' },
    ]);
    expect(third.plan.revoked).toEqual([]);
    await client.transaction(third.bundle);
    plans = await carePlans();
    expect(plans.find((p) => p.id === b.id)!.status).toBe('active');
    const c = plans.find((p) => p.status === 'draft')!;

    // 5. planned against c, but a clinician edits c before our transaction arrives: If-Match fails it as a whole
    const fourth = await run(new Date('2025-10-31T00:00:00Z'), { bmi: 35, ldl: 100 });
    expect(fourth.plan.revoked.map((r) => r.id)).toEqual([c.id]);
    await client.transaction({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ resource: { ...c, note: [...(c.note ?? []), { text: 'Will discuss at next visit' }] }, request: { method: 'PUT', url: `CarePlan/${c.id}` } }],
    });
    const before = (await carePlans()).length;
    await expect(client.transaction(fourth.bundle)).rejects.toMatchObject({ code: expect.stringMatching(/^fhir-/) });
    expect(await carePlans()).toHaveLength(before); // nothing of the failed transaction was written
    // re-planned, the edit is seen and the edited draft is left alone
    const replanned = await run(new Date('2025-10-31T00:00:00Z'), { bmi: 35, ldl: 100 });
    expect(replanned.plan.untouched).toContainEqual({ id: c.id, why: 'edited' });
    expect(replanned.plan.revoked).toEqual([]);
    await client.transaction(replanned.bundle);
    plans = await carePlans();
    expect(plans.find((p) => p.id === c.id)!.status).toBe('draft');
    expect(plans.filter((p) => p.status === 'draft')).toHaveLength(2);
    // one Provenance per proposal and per revocation
    const provenances = await all<Provenance>('Provenance');
    expect(provenances.filter((p) => p.id!.startsWith('cp-'))).toHaveLength(4);
    expect(provenances.filter((p) => p.id!.startsWith('cpr-'))).toHaveLength(1);
  });
});
