import type { Bundle, CarePlan, Observation, Patient, RiskAssessment } from 'fhir/r4.js';
import { createApp, type App } from '../../src/app.js';
import { startService, type RunningService } from '../../src/api/service.js';
import { FhirClient } from '../../src/fhir/client.js';
import { createSyncExecutor } from '../../src/jobs/sync-executor.js';
import { PatientScoreStore } from '../../src/db/patient-scores.js';
import { RunStore, type OutcomeRow, type RunRow } from '../../src/db/runs.js';
import type { RunningFhirServer } from '../../src/server/index.js';
import { API_KEY, API_KEY_SHA256, allRiskAssessments, createTestDatabase, seededFhirServer, serviceConfig, testApp, waitFor, type TestDatabase } from './support/service.js';

/**
 * Incremental runs write a new RiskAssessment only where a patient's inputs changed: the change scan
 * selects every patient with new, updated, entered-in-error or deleted data, the batch step scores them,
 * and the input hash (vector, imputations, resources used, model version) decides per patient whether a
 * new RiskAssessment is due. On the machine's PostgreSQL, against the embedded FHIR server (which has
 * type history, so deletions are found).
 */
const PATIENTS = 10;
let database: TestDatabase;
let fhir: RunningFhirServer;
let ids: string[];
let app: App;
let service: RunningService;
let runs: RunStore;

async function read<T>(type: string, id: string): Promise<T> {
  return (await (await fetch(`${fhir.url}/${type}/${id}`)).json()) as T;
}

async function put<T extends { resourceType: string; id?: string }>(resource: T): Promise<void> {
  const res = await fetch(`${fhir.url}/${resource.resourceType}/${resource.id}`, { method: 'PUT', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(resource) });
  if (!res.ok) throw new Error(`PUT ${resource.resourceType}: ${res.status}`);
}

async function remove(type: string, id: string): Promise<void> {
  const res = await fetch(`${fhir.url}/${type}/${id}`, { method: 'DELETE' });
  if (!res.ok) throw new Error(`DELETE ${type}: ${res.status}`);
}

const hoursAgo = (h: number) => new Date(Date.now() - h * 3_600_000).toISOString();

async function runNow(body: Record<string, unknown> = {}): Promise<{ run: RunRow; outcomes: Map<string, OutcomeRow> }> {
  const response = await fetch(`${service.url}/sources/test/runs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(response.status).toBe(202);
  const { run } = (await response.json()) as { run: RunRow };
  const done = await waitFor(`run ${run.id}`, async () => {
    const r = await runs.get(run.id);
    return r?.state === 'succeeded' || r?.state === 'failed' ? r : undefined;
  });
  const { items } = await runs.outcomes(run.id, { limit: 1000 });
  return { run: done, outcomes: new Map(items.map((o) => [o.patientId, o])) };
}

async function assessmentsByPatient(): Promise<Map<string, RiskAssessment[]>> {
  const out = new Map<string, RiskAssessment[]>();
  for (const ra of await allRiskAssessments(fhir.url)) {
    const id = ra.subject.reference!.split('/')[1];
    out.set(id, [...(out.get(id) ?? []), ra]);
  }
  return out;
}

async function carePlansByPatient(): Promise<Map<string, CarePlan[]>> {
  const out = new Map<string, CarePlan[]>();
  let url: string | undefined = `${fhir.url}/CarePlan?_count=1000`;
  while (url) {
    const bundle = (await (await fetch(url)).json()) as Bundle;
    for (const e of bundle.entry ?? []) {
      const plan = e.resource as CarePlan;
      const id = plan.subject.reference!.split('/')[1];
      out.set(id, [...(out.get(id) ?? []), plan]);
    }
    url = bundle.link?.find((l) => l.relation === 'next')?.url;
  }
  return out;
}

function newAssessments(before: Map<string, RiskAssessment[]>, after: Map<string, RiskAssessment[]>): Map<string, RiskAssessment[]> {
  const out = new Map<string, RiskAssessment[]>();
  for (const [id, list] of after) {
    const known = new Set((before.get(id) ?? []).map((ra) => ra.id));
    const fresh = list.filter((ra) => !known.has(ra.id));
    if (fresh.length) out.set(id, fresh);
  }
  return out;
}

beforeAll(async () => {
  database = await createTestDatabase('incremental');
  ({ server: fhir, patientIds: ids } = await seededFhirServer(PATIENTS));
  // Patient 8 has a second glucose with the same value, a day older than the one a score uses.
  const glucose = await read<Observation>('Observation', `${ids[7]}-glu`);
  const earlier = new Date(new Date(glucose.effectiveDateTime!).getTime() - 86_400_000).toISOString();
  await put<Observation>({ ...glucose, id: `${ids[7]}-glu-copy`, effectiveDateTime: earlier, issued: earlier });
  app = testApp();
  service = await startService({
    config: serviceConfig(fhir.url, { databaseUrl: database.url, apiKeySha256: API_KEY_SHA256 }),
    app,
    listen: { port: 0 },
  });
  runs = new RunStore(service.db);
  const first = await runNow();
  expect(first.run).toMatchObject({ state: 'succeeded', mode: 'full', patientsTotal: PATIENTS });
  expect([...first.outcomes.values()].every((o) => o.status === 'scored' && o.write === 'created')).toBe(true);
  // The service writes what `fhir-ml sync` writes: CarePlan proposals citing their RiskAssessment.
  const plans = [...(await carePlansByPatient()).values()].flat();
  expect(plans.length).toBeGreaterThan(0);
  expect(plans.every((c) => c.status === 'draft' && c.intent === 'proposal' && c.supportingInfo?.some((r) => r.reference?.includes('RiskAssessment/')))).toBe(true);
});

afterAll(async () => {
  await service?.stop({ graceSeconds: 1 });
  await app?.close();
  await fhir?.close();
  await database?.drop();
});

test('an incremental run over five changed patients, two of whose changes leave the inputs as they were, writes exactly three RiskAssessments', async () => {
  await new Promise((r) => setTimeout(r, 20));
  const [p0, p1, p2, p3, p4] = ids;
  // Inputs change: a newer glucose (a little higher); an updated BMI; an HDL entered in error (now imputed).
  const glucose = await read<Observation>('Observation', `${p0}-glu`);
  await put<Observation>({
    resourceType: 'Observation',
    id: `${p0}-glu-new`,
    status: 'final',
    code: glucose.code,
    subject: { reference: `Patient/${p0}` },
    effectiveDateTime: hoursAgo(2),
    valueQuantity: { ...glucose.valueQuantity, value: glucose.valueQuantity!.value! + 6 },
  });
  const bmi = await read<Observation>('Observation', `${p1}-bmi`);
  await put({ ...bmi, valueQuantity: { ...bmi.valueQuantity, value: bmi.valueQuantity!.value! + 3 } });
  await put({ ...(await read<Observation>('Observation', `${p2}-hdl`)), status: 'entered-in-error' });
  // Inputs stay: a heart rate (no feature reads it); a new phone number.
  await put<Observation>({
    resourceType: 'Observation',
    id: `${p3}-hr`,
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }] },
    subject: { reference: `Patient/${p3}` },
    effectiveDateTime: hoursAgo(2),
    valueQuantity: { value: 72, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  });
  const patient = await read<Patient>('Patient', p4);
  await put({ ...patient, telecom: [{ system: 'phone', value: '+49 30 1234567' }] });

  const before = await assessmentsByPatient();
  const plansBefore = await carePlansByPatient();
  const { run, outcomes } = await runNow();
  expect(run).toMatchObject({ state: 'succeeded', mode: 'incremental', patientsTotal: 5 });
  expect(run.selection).toMatchObject({ changed: 5, stale: 0, total: 5 });
  expect([...outcomes.keys()].sort()).toEqual([p0, p1, p2, p3, p4].sort());
  for (const id of [p0, p1, p2]) expect(outcomes.get(id)).toMatchObject({ status: 'scored', write: 'created' });
  for (const id of [p3, p4]) expect(outcomes.get(id)).toMatchObject({ status: 'unchanged', reason: 'inputs-unchanged' });

  const written = newAssessments(before, await assessmentsByPatient());
  expect([...written.keys()].sort()).toEqual([p0, p1, p2].sort());
  expect([...written.values()].flat()).toHaveLength(3);
  expect(written.get(p0)![0].basis?.map((b) => b.reference)).toContain(`Observation/${p0}-glu-new`);
  expect(written.get(p2)![0].basis?.map((b) => b.reference)).not.toContain(`Observation/${p2}-hdl`);
  // No new CarePlan proposal for an unchanged patient either.
  const plansAfter = await carePlansByPatient();
  for (const id of [p3, p4]) expect((plansAfter.get(id) ?? []).length).toBe((plansBefore.get(id) ?? []).length);

  // Every evaluated patient's hash is kept, the unchanged ones' too (now at this run's as-of).
  const scores = await new PatientScoreStore(service.db).get('test', 'diabetes-progression', ids);
  expect([...scores.values()].every((s) => /^[0-9a-f]{64}$/.test(s.inputHash ?? ''))).toBe(true);
  expect(scores.get(p3)!.lastAsOf.toISOString()).toBe(run.asOf);
  expect(await runs.counts(run.id)).toMatchObject({ outcomes: { 'diabetes-progression': { scored: 3, unchanged: 2 } } });

  // The drill-down of an unchanged patient shows the RiskAssessment it still has, from the earlier run.
  const unchanged = outcomes.get(p4)!;
  const detail = (await (await fetch(`${service.url}/outcomes/${unchanged.id}`, { headers: { authorization: `Bearer ${API_KEY}` } })).json()) as {
    detail: { riskAssessment?: RiskAssessment; riskAssessmentFrom?: string };
  };
  expect(detail.detail.riskAssessmentFrom).toBe('earlier');
  expect(detail.detail.riskAssessment?.id).toBe(before.get(p4)![0].id);
});

test('deleted data leads to a new score when it changed the inputs, including the resources used; a deletion the score never used does not', async () => {
  await new Promise((r) => setTimeout(r, 20));
  const [, , , p3, , p5, , p7] = ids;
  // The glucose the last score of patient 6 used: gone, so glucose is imputed now.
  await remove('Observation', `${p5}-glu`);
  // Patient 8's glucose: gone, but the older copy gives the same value. The vector is the same, the
  // resources behind it are not: the new RiskAssessment cites the copy, never the deleted one.
  await remove('Observation', `${p7}-glu`);
  // The heart rate no score used.
  await remove('Observation', `${p3}-hr`);

  const before = await assessmentsByPatient();
  const { run, outcomes } = await runNow();
  expect(run).toMatchObject({ state: 'succeeded', mode: 'incremental' });
  expect(run.selection).toMatchObject({ deletions: 'history', deleted: 3, changed: 3, total: 3 });
  expect(outcomes.get(p5)).toMatchObject({ status: 'scored', write: 'created' });
  expect(outcomes.get(p7)).toMatchObject({ status: 'scored', write: 'created' });
  expect(outcomes.get(p3)).toMatchObject({ status: 'unchanged' });
  // Same vector for patient 8: the same probability as its last score.
  const previous7 = before.get(p7)!.at(-1)!;
  expect(outcomes.get(p7)!.probability).toBeCloseTo(previous7.prediction![0].probabilityDecimal!, 6);

  const written = newAssessments(before, await assessmentsByPatient());
  expect([...written.keys()].sort()).toEqual([p5, p7].sort());
  const basis7 = written.get(p7)![0].basis!.map((b) => b.reference);
  expect(basis7).toContain(`Observation/${p7}-glu-copy`);
  expect(basis7).not.toContain(`Observation/${p7}-glu`);
});

test('a full run re-evaluates everyone and still writes nothing for unchanged inputs', async () => {
  const before = await assessmentsByPatient();
  const { run, outcomes } = await runNow({ full: true });
  expect(run).toMatchObject({ state: 'succeeded', mode: 'full', patientsTotal: PATIENTS });
  expect([...outcomes.values()].every((o) => o.status === 'unchanged')).toBe(true);
  expect(newAssessments(before, await assessmentsByPatient()).size).toBe(0);
});

test('with sync.shadow set, the executor writes the RiskAssessments preliminary and proposes no CarePlan', async () => {
  const shadowApp = createApp({ env: { FHIR_ML_LOG_LEVEL: 'silent', FHIR_ML_SHADOW: 'true' } });
  try {
    const client = new FhirClient({ baseUrl: fhir.url });
    const execute = createSyncExecutor({ app: shadowApp, clientFor: () => client, scores: new PatientScoreStore(service.db) });
    // Patients the service proposed CarePlans for: a run at a new as-of would propose again.
    const plansBefore = await carePlansByPatient();
    const proposedFor = ids.filter((id) => plansBefore.has(id)).slice(0, 2);
    expect(proposedFor.length).toBeGreaterThan(0);
    const asOf = new Date();
    const report = await execute({ runId: '00000000-0000-4000-8000-00000000beef', batchSeq: 0, sourceId: 'shadow', patientIds: proposedFor, modelIds: ['diabetes-progression'], asOf });
    expect(report.outcomes.map((o) => [o.patientId, o.status, o.write])).toEqual(proposedFor.map((id) => [id, 'scored', 'created']));
    expect(report.requests).toBeGreaterThan(0);
    const written = (await allRiskAssessments(fhir.url)).filter((ra) => ra.occurrenceDateTime === asOf.toISOString());
    expect(written.map((ra) => ra.status)).toEqual(proposedFor.map(() => 'preliminary'));
    const plansAfter = await carePlansByPatient();
    for (const id of proposedFor) expect(plansAfter.get(id)!.length).toBe(plansBefore.get(id)!.length);
  } finally {
    await shadowApp.close();
  }
});
