/**
 * Integration: CarePlan proposals written by the sync itself (the batch step's CarePlan step and the
 * writer), over HTTP against the embedded FHIR server, with the real model:
 * - each proposal validates against R4 (and its extension against its StructureDefinition), names the
 *   RiskAssessment it answers and the diagnosis it addresses, carries AIAST and has its Provenance;
 * - what the patient already has is left out and said so (an HbA1c within 3 months, an active referral);
 * - a re-run writes nothing new; a later as-of with changed data revokes the superseded draft in the
 *   same transaction; a plan a clinician activated is never touched, and what clinicians accepted or
 *   cancelled orders the next proposals;
 * - a clinician's edit between our read and our write (412 on If-Match) is re-read and re-planned: the
 *   edited draft is left alone, the batch still completes;
 * - the reads are batched: one search per resource type per batch, one history search per run.
 */
import type { Resource as MedplumResource } from '@medplum/fhirtypes';
import type { Bundle, Resource, CarePlan, Condition, FhirResource, Observation, Patient, Provenance, ServiceRequest } from 'fhir/r4.js';
import { packagePath } from '../../src/core/paths.js';
import { FhirClient, type SearchPage, type SearchParams, type TransactionOptions } from '../../src/fhir/client.js';
import { startFhirServer, type RunningFhirServer } from '../../src/server/index.js';
import { validationIssues } from '../../src/server/repository.js';
import { prepareModels, runSync, type PatientResult, type SyncModel } from '../../src/sync/index.js';
import { CAREPLAN_PROPOSAL_EXTENSION_URL, subExtension } from '../../src/writeback/extensions.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../../src/writeback/identifiers.js';
import { extensionDefinition, extensionProblems } from '../../src/writeback/testing/extension-check.js';

const FIRST = new Date('2025-03-31T00:00:00Z');
const SECOND = new Date('2025-06-30T00:00:00Z');
const THIRD = new Date('2025-09-30T00:00:00Z');
const LOINC = 'http://loinc.org';
const SCT = 'http://snomed.info/sct';
const UCUM = 'http://unitsofmeasure.org';
const day = 86_400_000;

/** Counts searches per resource type and lets a test act just before the next write with a revocation. */
class ObservedClient extends FhirClient {
  readonly searches: { type: string; params: SearchParams }[] = [];
  /** HTTP statuses of the transactions the server refused. */
  readonly refused: (number | undefined)[] = [];
  beforeRevokingWrite?: () => Promise<void>;

  override async *search<T extends Resource>(resourceType: string, params: SearchParams = {}): AsyncGenerator<SearchPage<T>, void, undefined> {
    this.searches.push({ type: resourceType, params });
    yield* super.search<T>(resourceType, params);
  }

  override transaction(bundle: Bundle): Promise<Bundle>;
  override transaction(bundle: Bundle, options: TransactionOptions): Promise<Bundle | undefined>;
  override async transaction(bundle: Bundle, options?: TransactionOptions): Promise<Bundle | undefined> {
    const hook = this.beforeRevokingWrite;
    if (hook && bundle.entry?.some((e) => e.request?.ifMatch)) {
      this.beforeRevokingWrite = undefined;
      await hook();
    }
    try {
      return await (options ? super.transaction(bundle, options) : super.transaction(bundle));
    } catch (err) {
      this.refused.push((err as { status?: number }).status);
      throw err;
    }
  }
}

function obs(id: string, patient: string, code: string, value: number, unit: string, at: Date): Observation {
  return {
    resourceType: 'Observation',
    id,
    status: 'final',
    code: { coding: [{ system: LOINC, code }] },
    subject: { reference: `Patient/${patient}` },
    effectiveDateTime: at.toISOString(),
    valueQuantity: { value, unit, system: UCUM, code: unit },
  };
}

/** A woman of 59 with type 2 diabetes and values that put her in the high band; BMI 33 (a dietitian referral applies). */
function highRiskPatient(id: string, measuredAt: Date, ldl = 93): FhirResource[] {
  const patient: Patient = { resourceType: 'Patient', id, birthDate: '1966-01-15', gender: 'female' };
  const dm: Condition = {
    resourceType: 'Condition',
    id: `${id}-dm`,
    subject: { reference: `Patient/${id}` },
    clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] },
    verificationStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-ver-status', code: 'confirmed' }] },
    code: { coding: [{ system: SCT, code: '44054006', display: 'Diabetes mellitus type 2' }] },
    onsetDateTime: '2018-05-01',
  };
  const at = new Date(measuredAt.getTime() - 10 * day);
  return [
    patient,
    dm,
    ...measurements(id, at, ldl),
  ];
}

function measurements(id: string, at: Date, ldl: number, suffix = ''): Observation[] {
  return [
    obs(`${id}-bmi${suffix}`, id, '39156-5', 33, 'kg/m2', at),
    obs(`${id}-sbp${suffix}`, id, '8480-6', 130, 'mm[Hg]', at),
    obs(`${id}-dbp${suffix}`, id, '8462-4', 86, 'mm[Hg]', at),
    obs(`${id}-tc${suffix}`, id, '2093-3', 157, 'mg/dL', at),
    obs(`${id}-ldl${suffix}`, id, '18262-6', ldl, 'mg/dL', at),
    obs(`${id}-hdl${suffix}`, id, '2085-9', 38, 'mg/dL', at),
    obs(`${id}-tg${suffix}`, id, '2571-8', 129, 'mg/dL', at),
    obs(`${id}-glu${suffix}`, id, '2339-0', 87, 'mg/dL', at),
  ];
}

const PATIENTS = ['cp-plain', 'cp-hba1c', 'cp-referred', 'cp-activate'];

describe('CarePlan proposals written by the sync', () => {
  let server: RunningFhirServer;
  let client: ObservedClient;
  let models: SyncModel[];

  beforeAll(async () => {
    server = await startFhirServer({ port: 0 });
    const hba1c = obs('cp-hba1c-a1c', 'cp-hba1c', '4548-4', 7.2, '%', new Date(FIRST.getTime() - 40 * day));
    const referral: ServiceRequest = {
      resourceType: 'ServiceRequest',
      id: 'cp-referred-dietitian',
      status: 'active',
      intent: 'order',
      code: { coding: [{ system: SCT, code: '103699006', display: 'Referral to dietitian' }] },
      subject: { reference: 'Patient/cp-referred' },
      authoredOn: '2025-03-01',
    };
    await server.load([...PATIENTS.flatMap((id) => highRiskPatient(id, FIRST)), hba1c, referral] as Parameters<RunningFhirServer['load']>[0]);
    client = new ObservedClient({ baseUrl: server.url, auth: { type: 'none' } });
    models = await prepareModels(['diabetes-progression'], { modelsDir: packagePath('models'), mappingsDir: packagePath('mappings') });
  });
  afterAll(async () => {
    await models[0].runner.close();
    await server.close();
  });

  async function carePlansOf(patient: string): Promise<CarePlan[]> {
    const out: CarePlan[] = [];
    for await (const page of new FhirClient({ baseUrl: server.url }).search<CarePlan>('CarePlan', { subject: `Patient/${patient}`, _count: '100' })) out.push(...page.resources);
    return out.sort((a, b) => (a.created ?? '').localeCompare(b.created ?? ''));
  }
  const sync = (asOf: Date) => runSync(client, models, { asOf, identifierSystem: DEFAULT_IDENTIFIER_SYSTEM, batchSize: 10 });
  const activities = (cp: CarePlan) => cp.activity!.map((a) => a.detail!.code!.text);
  const by = (results: PatientResult[], id: string) => results.find((r) => r.patientId === id)!;

  it('writes valid proposals that leave out what the patient has, in one batch of reads, and nothing twice', async () => {
    client.searches.length = 0;
    const first = await sync(FIRST);
    expect(first.failed).toBe(0);
    for (const id of PATIENTS) expect(by(first.results, id)).toMatchObject({ status: 'scored', band: 'high', riskAssessmentStatus: 'final', carePlans: { created: 1, alreadyPresent: 0, revoked: 0, untouched: 0 } });
    expect(first.byModel['diabetes-progression'].carePlans).toEqual({ created: 4, alreadyPresent: 0, revoked: 0, untouched: 0 });

    // No per-patient reads: one search per type for the batch (the four patients in one subject list), one history search.
    const count = (type: string, pred: (p: SearchParams) => boolean = () => true) => client.searches.filter((s) => s.type === type && pred(s.params)).length;
    expect(count('CarePlan', (p) => 'subject' in p)).toBe(1);
    expect(client.searches.find((s) => s.type === 'CarePlan' && 'subject' in s.params)!.params.subject).toBe(PATIENTS.map((p) => `Patient/${p}`).join(','));
    expect(count('CarePlan', (p) => 'identifier' in p)).toBe(1);
    expect(count('ServiceRequest')).toBe(1);
    expect(count('Procedure')).toBe(1);
    // the results checked for "done recently": only the activities' codes, only since their longest window
    const results = client.searches.filter((s) => s.type === 'Observation' && String(s.params.code).includes('4548-4'));
    expect(results).toHaveLength(1);
    expect(results[0].params.date).toEqual([new Date('2024-03-31T00:00:00Z').toISOString().replace(/^/, 'ge'), `le${FIRST.toISOString()}`]);

    const validator = extensionDefinition('careplan-proposal');
    const provenances: Provenance[] = [];
    for await (const page of new FhirClient({ baseUrl: server.url }).search<Provenance>('Provenance', { _count: '100' })) provenances.push(...page.resources);
    for (const id of PATIENTS) {
      const [cp] = await carePlansOf(id);
      expect(validationIssues(cp as unknown as MedplumResource).filter((i) => i.severity === 'error')).toEqual([]);
      expect(extensionProblems(cp.extension!.find((e) => e.url === CAREPLAN_PROPOSAL_EXTENSION_URL)!, validator)).toEqual([]);
      expect(cp).toMatchObject({
        status: 'draft',
        intent: 'proposal',
        instantiatesCanonical: ['https://fhir-ml-adapter.dev/fhir/PlanDefinition/diabetes-progression-care|1.0.0'],
        author: { reference: expect.stringMatching(/^Device\//) },
        addresses: [{ reference: `Condition/${id}-dm` }],
        supportingInfo: [{ reference: expect.stringMatching(/^RiskAssessment\//) }],
        meta: { security: [expect.objectContaining({ code: 'AIAST' })] },
      });
      const ra = await new FhirClient({ baseUrl: server.url }).read<fhir4.RiskAssessment>('RiskAssessment', cp.supportingInfo![0].reference!.split('/')[1]);
      expect(ra.subject.reference).toBe(`Patient/${id}`);
      expect(provenances.some((p) => p.target[0].reference === `CarePlan/${cp.id}` && p.entity?.[0].what.reference === `RiskAssessment/${ra.id}`)).toBe(true);
    }
    expect(activities((await carePlansOf('cp-plain'))[0])).toEqual(['HbA1c every 3 months', 'Dietitian referral']);
    const hba1c = (await carePlansOf('cp-hba1c'))[0];
    expect(activities(hba1c)).toEqual(['Dietitian referral']);
    expect(hba1c.note![0].text).toBe('Not proposed because the patient already has them: HbA1c every 3 months (a recent result exists: Observation/cp-hba1c-a1c).');
    const omitted = hba1c.extension![0].extension!.find((e) => e.url === 'omittedActivity')!;
    expect(subExtension(omitted, 'reason')?.valueCode).toBe('recent-result');
    expect(by(first.results, 'cp-referred').proposals![0].omitted).toEqual([{ activity: 'Dietitian referral', reason: 'already-requested', evidence: 'ServiceRequest/cp-referred-dietitian' }]);
    expect(activities((await carePlansOf('cp-referred'))[0])).toEqual(['HbA1c every 3 months']);

    // The same as-of again: nothing new, every proposal found already there.
    const again = await sync(FIRST);
    expect(again.byModel['diabetes-progression'].carePlans).toEqual({ created: 0, alreadyPresent: 4, revoked: 0, untouched: 0 });
    for (const id of PATIENTS) expect(await carePlansOf(id)).toHaveLength(1);
  });

  it('at a later as-of with changed data, revokes the superseded draft; leaves an activated plan alone; orders by what clinicians accepted', async () => {
    // A clinician activates cp-activate's plan, keeping the referral and cancelling the HbA1c.
    const [accepted] = await carePlansOf('cp-activate');
    const edited: CarePlan = {
      ...accepted,
      status: 'active',
      activity: accepted.activity!.map((a) => (a.detail!.code!.text === 'HbA1c every 3 months' ? { ...a, detail: { ...a.detail!, status: 'cancelled' } } : a)),
    };
    await client.transaction({ resourceType: 'Bundle', type: 'transaction', entry: [{ resource: edited, request: { method: 'PUT', url: `CarePlan/${accepted.id}` } }] });
    // cp-plain's LDL is now 175 mg/dL: a lipid-therapy review applies.
    await server.load([obs('cp-plain-ldl2', 'cp-plain', '18262-6', 175, 'mg/dL', new Date(SECOND.getTime() - 5 * day))] as Parameters<RunningFhirServer['load']>[0]);

    const second = await sync(SECOND);
    expect(second.failed).toBe(0);
    // cp-plain: a different plan; its older draft is revoked in the same transaction
    expect(by(second.results, 'cp-plain').carePlans).toEqual({ created: 1, alreadyPresent: 0, revoked: 1, untouched: 0 });
    const [old, current] = await carePlansOf('cp-plain');
    expect(old.status).toBe('revoked');
    expect(subExtension(old.extension![0], 'supersededBy')?.valueIdentifier?.value).toBe(current.identifier![0].value);
    expect(current.status).toBe('draft');
    // acceptance on this server: the referral was accepted (1 of 1), the HbA1c cancelled (0 of 1): the referral comes first
    // (no evidence yet for the lipid review: 0.5, between the referral's 2/3 and the HbA1c's 1/3)
    expect(activities(current)).toEqual(['Dietitian referral', 'Lipid-lowering therapy review', 'HbA1c every 3 months']);
    expect(current.note!.at(-1)!.text).toMatch(/Dietitian referral accepted 1 of 1; HbA1c every 3 months accepted 0 of 1/);

    // cp-activate: the activated plan is untouched; the referral it holds is not proposed again
    const activatePlans = await carePlansOf('cp-activate');
    expect(activatePlans.find((p) => p.id === accepted.id)).toMatchObject({ status: 'active', meta: { versionId: expect.any(String) } });
    expect(activatePlans.find((p) => p.id === accepted.id)!.meta!.versionId).not.toBe(accepted.meta!.versionId);
    expect(by(second.results, 'cp-activate')).toMatchObject({ carePlans: { untouched: 1, revoked: 0 } });
    expect(by(second.results, 'cp-activate').proposals![0].omitted).toEqual([{ activity: 'Dietitian referral', reason: 'already-planned', evidence: `CarePlan/${accepted.id}` }]);

    // cp-hba1c: its HbA1c result is now older than 3 months: proposed again, the older draft revoked
    expect(by(second.results, 'cp-hba1c').carePlans).toMatchObject({ created: 1, revoked: 1 });
    // cp-referred: the same plan as before (the referral still active): the older draft stands
    expect(by(second.results, 'cp-referred').carePlans).toEqual({ created: 0, alreadyPresent: 1, revoked: 0, untouched: 0 });
    expect(await carePlansOf('cp-referred')).toHaveLength(1);

    // Re-running the earlier as-of never undoes the later proposals.
    const earlier = await sync(FIRST);
    expect(earlier.byModel['diabetes-progression'].carePlans.created + earlier.byModel['diabetes-progression'].carePlans.revoked).toBe(0);
  });

  it('re-reads and re-plans the batch when a clinician edits a draft between our read and our revocation (412)', async () => {
    // cp-referred's referral is completed: a different plan is due, which would revoke its draft ...
    await server.load([
      {
        resourceType: 'ServiceRequest',
        id: 'cp-referred-dietitian',
        status: 'completed',
        intent: 'order',
        code: { coding: [{ system: SCT, code: '103699006' }] },
        subject: { reference: 'Patient/cp-referred' },
        authoredOn: '2025-03-01',
      },
    ] as Parameters<RunningFhirServer['load']>[0]);
    const [draft] = await carePlansOf('cp-referred');
    // ... but a clinician adds a note to that draft after our read, before our write.
    client.beforeRevokingWrite = async () => {
      await new FhirClient({ baseUrl: server.url }).transaction({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [{ resource: { ...draft, note: [...(draft.note ?? []), { text: 'Discussed with the patient; keep for now.' }] }, request: { method: 'PUT', url: `CarePlan/${draft.id}` } }],
      });
    };
    client.refused.length = 0;
    const third = await sync(THIRD);
    expect(client.beforeRevokingWrite).toBeUndefined(); // the edit happened
    expect(client.refused).toEqual([412]); // our revocation was refused once, then re-planned
    expect(third.failed).toBe(0);
    expect(by(third.results, 'cp-referred').carePlans).toEqual({ created: 1, alreadyPresent: 0, revoked: 0, untouched: 1 });
    const plans = await carePlansOf('cp-referred');
    const kept = plans.find((p) => p.id === draft.id)!;
    expect(kept.status).toBe('draft');
    expect(kept.note!.at(-1)!.text).toBe('Discussed with the patient; keep for now.');
    expect(activities(plans.find((p) => p.id !== draft.id)!)).toEqual(['Dietitian referral', 'HbA1c every 3 months']);
    // every other patient of the batch was written in the same (re-planned) transaction
    for (const id of PATIENTS) expect(by(third.results, id)).toMatchObject({ status: 'scored', write: 'created' });
  });
});
