import type { CarePlan, Observation, Patient, Procedure, Resource, ServiceRequest } from 'fhir/r4.js';
import { startFhirServer, type RunningFhirServer } from '../server/index.js';
import { OBSERVATION_CATEGORY_SYSTEM, perPatientCareReader } from './care-pull-per-patient.js';
import { pullCareContext, type CarePullResult, type CarePullSpec } from './care-pull.js';
import { FhirClient, type SearchPage, type SearchParams } from './client.js';

const SCT = 'http://snomed.info/sct';
const LOINC = 'http://loinc.org';
const asOf = new Date('2025-06-30T00:00:00Z');
const since = new Date('2025-03-30T00:00:00Z');
const LOCAL_CATEGORY = { system: 'https://hospital.example/observation-category', code: 'point-of-care' };

/** Records every search the reader starts (`searches`) and every page it gets (`sent`: one request each). */
class ObservedClient extends FhirClient {
  readonly searches: { type: string; params: SearchParams }[] = [];
  readonly sent: { type: string; params: SearchParams }[] = [];
  override async *search<T extends Resource>(resourceType: string, params: SearchParams = {}): AsyncGenerator<SearchPage<T>, void, undefined> {
    this.searches.push({ type: resourceType, params });
    for await (const page of super.search<T>(resourceType, params)) {
      this.sent.push({ type: resourceType, params });
      yield page;
    }
  }
}

const subject = (p: string) => ({ reference: `Patient/${p}` });
const patient = (id: string): Patient => ({ resourceType: 'Patient', id });
const carePlan = (id: string, p: string): CarePlan => ({ resourceType: 'CarePlan', id, status: 'active', intent: 'plan', subject: subject(p) });
const request = (id: string, p: string, code: string, status: ServiceRequest['status'] = 'active'): ServiceRequest => ({
  resourceType: 'ServiceRequest',
  id,
  status,
  intent: 'order',
  code: { coding: [{ system: SCT, code }] },
  subject: subject(p),
});
const procedure = (id: string, p: string, code: string): Procedure => ({ resourceType: 'Procedure', id, status: 'completed', code: { coding: [{ system: SCT, code }] }, subject: subject(p), performedDateTime: '2025-05-01' });
const result = (id: string, p: string, effective: string, category?: { system: string; code: string }): Observation => ({
  resourceType: 'Observation',
  id,
  status: 'final',
  ...(category ? { category: [{ coding: [category] }] } : {}),
  code: { coding: [{ system: LOINC, code: '4548-4' }] },
  subject: subject(p),
  effectiveDateTime: effective,
  valueQuantity: { value: 7.1, unit: '%', system: 'http://unitsofmeasure.org', code: '%' },
});
const laboratory = { system: OBSERVATION_CATEGORY_SYSTEM, code: 'laboratory' };

const DATA: Resource[] = [
  ...['p1', 'p2', 'p3', 'p4', 'p5', 'p9'].map(patient),
  carePlan('cp-p1', 'p1'),
  carePlan('cp-p1-b', 'p1'),
  carePlan('cp-p5', 'p5'),
  carePlan('cp-p9', 'p9'),
  request('sr-p1', 'p1', '103699006'),
  request('sr-p2-draft', 'p2', '103699006', 'draft'),
  request('sr-p9', 'p9', '103699006'),
  procedure('pr-p2', 'p2', '46973005'),
  procedure('pr-p2-other', 'p2', '73761001'),
  result('o-p1-lab', 'p1', '2025-05-20', laboratory),
  result('o-p1-old', 'p1', '2024-12-01', laboratory),
  result('o-p3-none', 'p3', '2025-06-01'),
  result('o-p4-local', 'p4', '2025-06-10', LOCAL_CATEGORY),
  result('o-p9', 'p9', '2025-06-10', laboratory),
];

const spec: CarePullSpec = {
  carePlanPatients: ['p1', 'p2', 'p3', 'p4', 'p5'],
  activityPatients: ['p1', 'p2', 'p3', 'p4'],
  activityCodes: [
    { system: SCT, code: '43396009' },
    { system: LOINC, code: '4548-4' },
    { system: SCT, code: '103699006' },
    { system: SCT, code: '46973005' },
  ],
  resultsSince: since,
};

/** Records as ids per patient and list: what the server assigns (meta) differs between servers. */
function ids(care: CarePullResult): Record<string, Record<string, string[]>> {
  const out: Record<string, Record<string, string[]>> = {};
  for (const [p, r] of [...care.byPatient].sort(([a], [b]) => a.localeCompare(b))) {
    out[p] = Object.fromEntries(Object.entries(r).map(([list, resources]) => [list, (resources as Resource[]).map((x) => x.id!)]));
  }
  return out;
}
const withoutMeta = (care: CarePullResult) => JSON.parse(JSON.stringify([...care.byPatient], (k, v) => (k === 'meta' ? undefined : v)));

let plain: RunningFhirServer;
let singlePatient: RunningFhirServer;
let categoryRequired: RunningFhirServer;
let reference: CarePullResult;
beforeAll(async () => {
  [plain, singlePatient, categoryRequired] = await Promise.all([
    startFhirServer({ port: 0 }),
    startFhirServer({ port: 0, requireSinglePatient: true }),
    startFhirServer({ port: 0, requireSinglePatient: true, requireObservationCategory: true }),
  ]);
  // The server speaks medplum's resource types; the shapes are the same R4 JSON.
  for (const s of [plain, singlePatient, categoryRequired]) await s.load(DATA as Parameters<RunningFhirServer['load']>[0]);
  reference = await pullCareContext(new FhirClient({ baseUrl: plain.url }), spec, asOf);
});
afterAll(async () => {
  await Promise.all([plain, singlePatient, categoryRequired].map((s) => s?.close()));
});

describe('perPatientCareReader', () => {
  it('reads what the multi-patient read reads on an ordinary server, one patient per request', async () => {
    expect(ids(reference)).toEqual({
      p1: { carePlans: ['cp-p1', 'cp-p1-b'], serviceRequests: ['sr-p1'], procedures: [], observations: ['o-p1-lab'] },
      p2: { carePlans: [], serviceRequests: [], procedures: ['pr-p2'], observations: [] },
      p3: { carePlans: [], serviceRequests: [], procedures: [], observations: ['o-p3-none'] },
      p4: { carePlans: [], serviceRequests: [], procedures: [], observations: ['o-p4-local'] },
      p5: { carePlans: ['cp-p5'], serviceRequests: [], procedures: [], observations: [] },
    });
    // The same read is refused on the single-patient server: this is the server the per-patient reader is for.
    await expect(pullCareContext(new FhirClient({ baseUrl: singlePatient.url }), spec, asOf)).rejects.toMatchObject({ status: 400 });

    const client = new ObservedClient({ baseUrl: singlePatient.url });
    const care = await perPatientCareReader(client, asOf, { patientConcurrency: 2 })(spec);
    expect(withoutMeta(care)).toEqual(withoutMeta(reference));
    for (const { params } of client.sent) {
      expect(Object.keys(params).filter((k) => k === 'patient' || k === 'subject')).toEqual(['patient']);
      expect(params.patient).toMatch(/^p\d$/);
    }
    // One request per patient per search type (one page each): CarePlans of 5, three activity searches of 4.
    expect(care.requests).toBe(5 + 3 * 4);
    expect(client.sent).toHaveLength(care.requests);
    const perType = (type: string) => client.sent.filter((p) => p.type === type).map((p) => p.params.patient).sort();
    expect(perType('CarePlan')).toEqual(['p1', 'p2', 'p3', 'p4', 'p5']);
    for (const type of ['ServiceRequest', 'Procedure', 'Observation']) expect(perType(type)).toEqual(['p1', 'p2', 'p3', 'p4']);
  });

  it('sends the multi-patient read\'s parameters and pages the same way: one request per page', async () => {
    const client = new ObservedClient({ baseUrl: singlePatient.url });
    const care = await perPatientCareReader(client, asOf, { pageSize: 1 })(spec);
    expect(withoutMeta(care)).toEqual(withoutMeta(reference));
    // p1 has two CarePlans: two pages; every other search one page (one resource, or none).
    expect(client.sent.filter((p) => p.type === 'CarePlan' && p.params.patient === 'p1')).toHaveLength(2);
    expect(care.requests).toBe(5 + 3 * 4 + 1);
    expect(client.sent).toHaveLength(care.requests);
    const observation = client.sent.find((p) => p.type === 'Observation')!.params;
    expect(observation).toEqual({ patient: expect.any(String), code: `${SCT}|43396009,${LOINC}|4548-4,${SCT}|103699006,${SCT}|46973005`, date: [`ge${since.toISOString()}`, `le${asOf.toISOString()}`], _count: '1' });
  });

  it('on a server requiring a category, searches results within the observation categories and the mapping\'s, from then on at once', async () => {
    const client = new ObservedClient({ baseUrl: categoryRequired.url });
    const read = perPatientCareReader(client, asOf, { patientConcurrency: 1, categories: [LOCAL_CATEGORY] });
    const first = await read(spec);
    // Filed under a standard category or the mapping's: found; filed under none: not found.
    expect(ids(first).p1.observations).toEqual(['o-p1-lab']);
    expect(ids(first).p4.observations).toEqual(['o-p4-local']);
    expect(first.byPatient.get('p3')).toBeUndefined();
    const { p3: _p3, ...rest } = ids(reference);
    expect(ids(first)).toEqual(rest);

    const observations = () => client.sent.filter((p) => p.type === 'Observation').map((p) => p.params);
    expect(observations()).toHaveLength(4);
    for (const params of observations()) {
      expect(params.category).toBe(
        [...['social-history', 'vital-signs', 'imaging', 'laboratory', 'procedure', 'survey', 'exam', 'therapy', 'activity'].map((c) => `${OBSERVATION_CATEGORY_SYSTEM}|${c}`), `${LOCAL_CATEGORY.system}|${LOCAL_CATEGORY.code}`].join(','),
      );
    }
    // One search without a category was refused (the first patient's; one patient at a time), and asked
    // again with them; it returned no page, so it is not among the requests.
    const uncategorised = () => client.searches.filter((s) => s.type === 'Observation' && s.params.category === undefined);
    expect(uncategorised()).toHaveLength(1);
    expect(first.requests).toBe(5 + 3 * 4);

    // The next read asks with the categories at once.
    const second = await read({ ...spec, carePlanPatients: ['p1'], activityPatients: ['p1'] });
    expect(ids(second)).toEqual({ p1: ids(reference).p1 });
    expect(second.requests).toBe(4);
    expect(uncategorised()).toHaveLength(1);
  });

  it('fails the read on the first failure and takes no further patient', async () => {
    const client = new ObservedClient({ baseUrl: `${singlePatient.url}/no-such-base` });
    await expect(perPatientCareReader(client, asOf, { patientConcurrency: 1 })(spec)).rejects.toMatchObject({ status: 404 });
    expect(new Set(client.searches.map((s) => s.params.patient))).toEqual(new Set(['p1']));
  });
});
