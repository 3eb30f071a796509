import request from 'supertest';
import type { Bundle, OperationOutcome, Parameters, Resource } from 'fhir/r4.js';
import type { BulkExportManifest } from './bulk-export.js';
import { createFhirServer, type FhirServer, type FhirServerOptions } from './server.js';

const BASE = '/fhir/R4';
const JSON_TYPE = 'application/fhir+json';
const ASYNC = { prefer: 'respond-async', accept: JSON_TYPE };
const LOINC = 'http://loinc.org';

const patient = (id: string): Resource => ({ resourceType: 'Patient', id });
const observation = (id: string, subject: string, code = '2339-0'): Resource =>
  ({ resourceType: 'Observation', id, status: 'final', code: { coding: [{ system: LOINC, code }] }, subject: { reference: subject } }) as Resource;

/** Two patients with a bit of everything the compartment holds, and resources outside any compartment. */
function population(): Resource[] {
  return [
    patient('p1'),
    patient('p2'),
    patient('p3'),
    observation('o1', 'Patient/p1'),
    observation('o2', 'Patient/p1', '4548-4'),
    observation('o3', 'Patient/p2'),
    observation('o4', 'Patient/p3'),
    observation('o-group', 'Group/g-other'), // subject is not a patient: in no patient's compartment
    { resourceType: 'Condition', id: 'c1', subject: { reference: 'Patient/p1' }, code: { text: 'x' } } as Resource,
    { resourceType: 'DiagnosticReport', id: 'd2', status: 'final', code: { text: 'x' }, subject: { reference: 'Patient/p2' } } as Resource,
    { resourceType: 'ImagingStudy', id: 'i1', status: 'available', subject: { reference: 'Patient/p1' } } as Resource,
    { resourceType: 'Procedure', id: 'pr2', status: 'completed', subject: { reference: 'Patient/p2' } } as Resource,
    { resourceType: 'CarePlan', id: 'cp1', status: 'draft', intent: 'proposal', subject: { reference: 'Patient/p1' } } as Resource,
    { resourceType: 'ServiceRequest', id: 'sr3', status: 'active', intent: 'order', subject: { reference: 'Patient/p3' } } as Resource,
    { resourceType: 'Practitioner', id: 'dr' } as Resource,
    {
      resourceType: 'Group',
      id: 'cohort',
      type: 'person',
      actual: true,
      member: [
        { entity: { reference: 'Patient/p1' } },
        { entity: { reference: 'Patient/p2' }, inactive: true },
        { entity: { reference: 'Patient/p3' } },
        { entity: { reference: 'Practitioner/dr' } },
        { entity: { reference: 'Patient/gone' } },
      ],
    } as Resource,
  ];
}

describe('Bulk Data $export', () => {
  let server: FhirServer;
  const now = Date.parse('2024-05-01T10:00:00.000Z');

  async function start(options: FhirServerOptions = {}): Promise<void> {
    server = createFhirServer({ clock: () => new Date(now), bulkExport: { inProgressPolls: 2, retryAfterSeconds: 3 }, ...options });
    await server.load(population() as never);
  }
  afterEach(() => server.close());

  const path = (url: string) => url.replace(/^https?:\/\/[^/]+/, '');

  /** Kick-off, poll to the manifest (checking the in-progress answers), return manifest and status URL. */
  async function exportOf(url: string, init: { body?: Parameters; headers?: Record<string, string> } = {}): Promise<{ manifest: BulkExportManifest; status: string; polls: number }> {
    const headers = { ...ASYNC, ...init.headers };
    const kick = init.body
      ? await request(server.app).post(`${BASE}${url}`).set(headers).set('content-type', JSON_TYPE).send(JSON.stringify(init.body))
      : await request(server.app).get(`${BASE}${url}`).set(headers);
    expect(kick.status).toBe(202);
    const status = kick.headers['content-location'] as string;
    expect(status).toMatch(/^http:\/\/localhost\/fhir\/R4\/\$export-status\/[0-9a-f-]{36}$/);
    let polls = 0;
    for (;;) {
      const res = await request(server.app).get(path(status)).set(headers);
      if (res.status === 200) {
        expect(res.headers['content-type']).toMatch(/^application\/json/);
        return { manifest: res.body as BulkExportManifest, status, polls };
      }
      expect(res.status).toBe(202);
      expect(res.headers['x-progress']).toMatch(/in progress/);
      expect(res.headers['retry-after']).toBe('3');
      if (++polls > 10) throw new Error('export never finished');
    }
  }

  async function download(url: string, headers: Record<string, string> = {}): Promise<unknown[]> {
    const res = await request(server.app).get(path(url)).set(headers).buffer(true).parse((r, cb) => {
      let text = '';
      r.setEncoding('utf8');
      r.on('data', (c: string) => (text += c));
      r.on('end', () => cb(null, text));
    });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/fhir\+ndjson/);
    const text = res.body as string;
    expect(text.endsWith('\n')).toBe(true);
    return text.trimEnd().split('\n').map((line) => JSON.parse(line));
  }

  /** Every output file, downloaded: type -> ids (each file's lines checked against its manifest entry). */
  async function outputIds(manifest: BulkExportManifest): Promise<Record<string, string[]>> {
    const byType: Record<string, string[]> = {};
    for (const file of manifest.output) {
      const lines = (await download(file.url)) as Resource[];
      expect(lines).toHaveLength(file.count);
      for (const r of lines) {
        expect(r.resourceType).toBe(file.type);
        (byType[file.type] ??= []).push(r.id as string);
      }
    }
    for (const ids of Object.values(byType)) ids.sort();
    return byType;
  }

  test('kick-off needs Prefer: respond-async; unsupported formats, types and parameters are refused by name', async () => {
    await start();
    const plain = await request(server.app).get(`${BASE}/$export`);
    expect(plain.status).toBe(400);
    expect((plain.body as OperationOutcome).issue[0].details?.text).toMatch(/Prefer: respond-async/);
    const refused = async (q: string, pattern: RegExp) => {
      const res = await request(server.app).get(`${BASE}/$export?${q}`).set(ASYNC);
      expect({ q, status: res.status }).toEqual({ q, status: 400 });
      expect((res.body as OperationOutcome).issue.map((i) => i.details?.text).join(' ')).toMatch(pattern);
    };
    await refused('_outputFormat=text/csv', /_outputFormat text\/csv is not supported/);
    await refused('_type=Patient,Nope', /Nope is not an R4 resource type/);
    await refused('_elements=id', /_elements is not supported/);
    await refused('_since=last-week', /_since must be an instant/);
    await refused(`_type=Patient&_typeFilter=${encodeURIComponent('Observation?code=x')}`, /_typeFilter for Observation, which _type does not ask for/);
    await refused(`_typeFilter=${encodeURIComponent('Observation?value-quantity=5')}`, /value-quantity/);
    expect((await request(server.app).get(`${BASE}/Patient/$export?_type=Practitioner`).set(ASYNC)).status).toBe(400);
    expect((await request(server.app).get(`${BASE}/Group/nope/$export`).set(ASYNC)).status).toBe(404);
    expect((await request(server.app).put(`${BASE}/$export`).set(ASYNC)).status).toBe(405);
    // Lenient: what is not supported is dropped, not refused.
    const lenient = await request(server.app).get(`${BASE}/$export?_elements=id&_type=Patient`).set({ ...ASYNC, prefer: 'respond-async, handling=lenient' });
    expect(lenient.status).toBe(202);
  });

  test('system level: in-progress polls, then a manifest whose files hold every resource once; DELETE removes it', async () => {
    await start();
    const { manifest, status, polls } = await exportOf('/$export?_type=Patient,Observation,Practitioner');
    expect(polls).toBe(2);
    expect(manifest.transactionTime).toBe('2024-05-01T10:00:00.000Z');
    expect(manifest.request).toBe('http://localhost/fhir/R4/$export?_type=Patient,Observation,Practitioner');
    expect(manifest.requiresAccessToken).toBe(false);
    expect(manifest.error).toEqual([]);
    expect(manifest.deleted).toBeUndefined();
    expect(manifest.output.map((f) => [f.type, f.count])).toEqual([
      ['Patient', 3],
      ['Observation', 5],
      ['Practitioner', 1],
    ]);
    expect(await outputIds(manifest)).toEqual({ Patient: ['p1', 'p2', 'p3'], Observation: ['o-group', 'o1', 'o2', 'o3', 'o4'], Practitioner: ['dr'] });

    const cancelled = await request(server.app).delete(path(status));
    expect(cancelled.status).toBe(202);
    expect((await request(server.app).get(path(status))).status).toBe(404);
    expect((await request(server.app).get(path(manifest.output[0].url))).status).toBe(404);
    expect((await request(server.app).delete(path(status))).status).toBe(404);
  });

  test('every accepted _outputFormat; all types by default; a type split into files of N resources', async () => {
    await start({ bulkExport: { inProgressPolls: 0, maxResourcesPerFile: 2 } });
    for (const format of ['application/fhir+ndjson', 'application/ndjson', 'ndjson']) {
      const { manifest, polls } = await exportOf(`/$export?_outputFormat=${encodeURIComponent(format)}`);
      expect(polls).toBe(0);
      const observationFiles = manifest.output.filter((f) => f.type === 'Observation');
      expect(observationFiles.map((f) => f.count)).toEqual([2, 2, 1]);
      expect(new Set(observationFiles.map((f) => f.url)).size).toBe(3);
      expect(new Set(manifest.output.map((f) => f.type))).toEqual(
        new Set(['Patient', 'Observation', 'Condition', 'DiagnosticReport', 'ImagingStudy', 'Procedure', 'CarePlan', 'ServiceRequest', 'Practitioner', 'Group']),
      );
      expect((await outputIds(manifest)).Observation).toEqual(['o-group', 'o1', 'o2', 'o3', 'o4']);
    }
  });

  test('Patient level: every patient\'s compartment, narrowed by _type, _typeFilter and the patient parameter', async () => {
    await start();
    const all = await outputIds((await exportOf('/Patient/$export')).manifest);
    expect(all).toEqual({
      Patient: ['p1', 'p2', 'p3'],
      Observation: ['o1', 'o2', 'o3', 'o4'], // not o-group: its subject is no patient
      Condition: ['c1'],
      DiagnosticReport: ['d2'],
      ImagingStudy: ['i1'],
      Procedure: ['pr2'],
      CarePlan: ['cp1'],
      ServiceRequest: ['sr3'],
      Group: ['cohort'], // the R4 Patient compartment holds the Groups a patient is a member of
    });
    const filtered = await outputIds(
      (await exportOf(`/Patient/$export?_type=Observation,Condition&_typeFilter=${encodeURIComponent(`Observation?code=${LOINC}|4548-4`)},${encodeURIComponent(`Observation?patient=p3`)}`)).manifest,
    );
    expect(filtered).toEqual({ Observation: ['o2', 'o4'], Condition: ['c1'] });

    const body: Parameters = {
      resourceType: 'Parameters',
      parameter: [
        { name: 'patient', valueReference: { reference: 'Patient/p2' } },
        { name: '_type', valueString: 'Patient,Observation,Procedure' },
      ],
    };
    expect(await outputIds((await exportOf('/Patient/$export', { body })).manifest)).toEqual({ Patient: ['p2'], Observation: ['o3'], Procedure: ['pr2'] });
    expect((await request(server.app).get(`${BASE}/$export?patient=Patient/p1`).set(ASYNC)).status).toBe(400);
  });

  test('Group level: the active members\' compartments; members that are not exportable patients go to the error file', async () => {
    await start();
    const { manifest } = await exportOf('/Group/cohort/$export?_type=Patient,Observation,ServiceRequest,DiagnosticReport');
    expect(await outputIds(manifest)).toEqual({ Patient: ['p1', 'p3'], Observation: ['o1', 'o2', 'o4'], ServiceRequest: ['sr3'] });
    expect(manifest.error).toHaveLength(1);
    expect(manifest.error[0]).toMatchObject({ type: 'OperationOutcome', count: 2 });
    const errors = (await download(manifest.error[0].url)) as OperationOutcome[];
    expect(errors.map((e) => e.issue[0].details?.text)).toEqual([
      'Group member Practitioner/dr is not a Patient on this server: not exported',
      'Group member Patient/gone does not exist on this server',
    ]);
  });

  test('_since: only what changed after it, deletions in the deleted file; transactionTime misses no later write', async () => {
    await start({ bulkExport: { inProgressPolls: 0 } });
    // The clock stands still: a write in the same millisecond as the export must still count as later.
    const first = (await exportOf('/Patient/$export?_type=Observation,Condition')).manifest;
    const since = first.transactionTime;
    await server.repo.updateResource(observation('o1', 'Patient/p1', '1111-1') as never);
    await server.repo.deleteResource('Observation', 'o3');
    await server.repo.deleteResource('Observation', 'o-group'); // outside every compartment
    await server.repo.deleteResource('Condition', 'c1');
    await server.repo.createResource({ resourceType: 'Condition', id: 'c1', subject: { reference: 'Patient/p1' }, code: { text: 'back' } } as never); // re-created

    const { manifest } = await exportOf(`/Patient/$export?_type=Observation,Condition&_since=${since}`);
    expect(manifest.transactionTime > since).toBe(true);
    expect(await outputIds(manifest)).toEqual({ Observation: ['o1'], Condition: ['c1'] });
    expect(manifest.deleted).toHaveLength(1);
    expect(manifest.deleted?.[0]).toMatchObject({ type: 'Bundle', count: 1 });
    const [deleted] = (await download(manifest.deleted![0].url)) as Bundle[];
    expect(deleted).toMatchObject({ resourceType: 'Bundle', type: 'transaction', entry: [{ request: { method: 'DELETE', url: 'Observation/o3' } }] });

    // System level sees the deletion outside the compartments too.
    const system = (await exportOf(`/$export?_type=Observation&_since=${since}`)).manifest;
    const urls = ((await download(system.deleted![0].url)) as Bundle[]).map((b) => b.entry?.[0].request?.url).sort();
    expect(urls).toEqual(['Observation/o-group', 'Observation/o3']);
    // A type with nothing left is still covered by a system-level export without _type.
    await server.repo.deleteResource('Practitioner', 'dr');
    const gone = (await exportOf(`/$export?_since=${system.transactionTime}`)).manifest;
    expect(gone.output).toEqual([]);
    expect(((await download(gone.deleted![0].url)) as Bundle[]).map((b) => b.entry?.[0].request?.url)).toEqual(['Practitioner/dr']);
    // Nothing changed since the last export: empty output, no deleted key.
    const none = (await exportOf(`/$export?_since=${gone.transactionTime}`)).manifest;
    expect(none.output).toEqual([]);
    expect(none.deleted).toBeUndefined();
  });
});
