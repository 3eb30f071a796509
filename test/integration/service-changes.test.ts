import type { CapabilityStatement, Condition, Observation, Patient } from 'fhir/r4.js';
import { findChangedPatients, historyUnsupported } from '../../src/fhir/changes.js';
import { FhirClient } from '../../src/fhir/client.js';
import type { RunningFhirServer } from '../../src/server/index.js';
import { seededFhirServer } from './support/service.js';

/**
 * Changed-patient selection against the embedded FHIR server: `_lastUpdated` over Observations,
 * DiagnosticReports, ImagingStudies, Conditions and Patients, all pages, de-duplicated, updates and
 * entered-in-error included; deletions through type history where the server has it.
 */
let fhir: RunningFhirServer;
let client: FhirClient;
let patientIds: string[];

beforeAll(async () => {
  ({ server: fhir, patientIds } = await seededFhirServer(8));
  client = new FhirClient({ baseUrl: fhir.url });
});

afterAll(async () => {
  await fhir?.close();
});

async function read<T>(type: string, id: string): Promise<T> {
  return (await (await fetch(`${fhir.url}/${type}/${id}`)).json()) as T;
}

async function put<T extends { resourceType: string; id?: string }>(resource: T): Promise<void> {
  const res = await fetch(`${fhir.url}/${resource.resourceType}/${resource.id}`, { method: 'PUT', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(resource) });
  if (!res.ok) throw new Error(`PUT ${resource.resourceType}: ${res.status}`);
}

test('updates, entered-in-error, new Conditions and Patient edits since the instant name exactly their patients', async () => {
  const since = new Date();
  await new Promise((r) => setTimeout(r, 10));
  const [a, b, c, d] = patientIds;
  const glucose = await read<Observation>('Observation', `${a}-glu`);
  await put({ ...glucose, valueQuantity: { ...glucose.valueQuantity, value: 199 } });
  await put({ ...glucose, valueQuantity: { ...glucose.valueQuantity, value: 200 } });
  const bmi = await read<Observation>('Observation', `${b}-bmi`);
  await put({ ...bmi, status: 'entered-in-error' });
  const condition: Condition = { resourceType: 'Condition', id: `${c}-dm`, subject: { reference: `Patient/${c}` }, code: { text: 'Type 2 diabetes' } };
  await put(condition);
  const patient = await read<Patient>('Patient', d);
  await put({ ...patient, gender: patient.gender === 'male' ? 'female' : 'male' });
  await put({ resourceType: 'Observation', id: 'no-subject', status: 'final', code: { text: 'x' } } as Observation);

  // Page size 2: the scan follows every page.
  const scan = await findChangedPatients(client, { since, pageSize: 2 });
  expect(scan.patientIds).toEqual([a, b, c, d].sort());
  // A search returns the current version of each resource: the twice-updated glucose counts once.
  expect(scan.byType.Observation).toEqual({ versions: 3, patients: 2 });
  expect(scan.byType.Condition).toEqual({ versions: 1, patients: 1 });
  expect(scan.byType.Patient).toEqual({ versions: 1, patients: 1 });
  expect(scan.byType.DiagnosticReport).toEqual({ versions: 0, patients: 0 });
  expect(scan.unattributed).toBe(1);
  expect(scan.requests).toBeGreaterThan(5);

  const later = await findChangedPatients(client, { since: new Date(), deletions: false });
  expect(later.patientIds).toEqual([]);
  expect(later.deletions).toMatchObject({ checked: false, reason: 'disabled' });
});

test('deleted data: found through type history where the server supports it, otherwise reported as not checked', async () => {
  const capabilities = await client.capabilities();
  const unsupported = historyUnsupported(capabilities, ['Observation']);
  const since = new Date();
  await new Promise((r) => setTimeout(r, 10));
  const victim = patientIds[6];
  const res = await fetch(`${fhir.url}/Observation/${victim}-hdl`, { method: 'DELETE' });
  expect(res.ok).toBe(true);
  const scan = await findChangedPatients(client, { since, capabilities });
  if (unsupported) {
    // The embedded server gains type history in a parallel change; until then this is the fallback path.
    console.warn(`deletion detection not exercised: the embedded server has ${unsupported}`);
    expect(scan.deletions).toEqual({ checked: false, reason: expect.stringMatching(/history-type/), patientIds: [], resources: 0 });
    expect(scan.patientIds).toEqual([]);
    return;
  }
  expect(scan.deletions).toMatchObject({ checked: true, patientIds: [victim], resources: 1 });
  expect(scan.patientIds).toEqual([victim]);
});

test('the CapabilityStatement decides whether deletions can be looked for', () => {
  const cs = (interactions: string[], typeLevel: string[]): CapabilityStatement => ({
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: '2026-01-01',
    kind: 'instance',
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [{ mode: 'server', interaction: interactions.map((code) => ({ code: code as 'batch' })), resource: [{ type: 'Observation', interaction: typeLevel.map((code) => ({ code: code as 'read' })) }] }],
  });
  expect(historyUnsupported(cs(['batch'], ['read', 'history-type']), ['Observation'])).toBeUndefined();
  expect(historyUnsupported(cs([], ['history-type']), ['Observation'])).toBeUndefined();
  expect(historyUnsupported(cs(['batch'], ['read']), ['Observation', 'Condition'])).toBe('no history-type for Observation, Condition');
});
