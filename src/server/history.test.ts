import request from 'supertest';
import { matchesSearchRequest, parseSearchRequest } from '@medplum/core';
import type { Bundle, BundleEntry, OperationOutcome, Resource } from 'fhir/r4.js';
import { createFhirServer, type FhirServer } from './server.js';

const BASE = '/fhir/R4';
const JSON_TYPE = 'application/fhir+json';

/** A clinical resource of `type` for `patient`, valid against R4. */
function clinical(type: string, patient: string, n: number): Resource {
  const subject = { reference: `Patient/${patient}` };
  const code = { coding: [{ system: 'http://loinc.org', code: `c${n}` }] };
  switch (type) {
    case 'Observation':
      return { resourceType: 'Observation', status: 'final', code, subject } as Resource;
    case 'DiagnosticReport':
      return { resourceType: 'DiagnosticReport', status: 'final', code, subject } as Resource;
    case 'ImagingStudy':
      return { resourceType: 'ImagingStudy', status: 'available', subject } as Resource;
    case 'Condition':
      return { resourceType: 'Condition', code, subject } as Resource;
    default:
      throw new Error(type);
  }
}

const TYPES = ['Observation', 'DiagnosticReport', 'ImagingStudy', 'Condition'];
const T0 = Date.parse('2024-03-01T08:00:00.000Z');
const T1 = Date.parse('2024-03-02T08:00:00.000Z');

describe('_lastUpdated search and type-level history with deletions', () => {
  let server: FhirServer;
  let now = T0;
  beforeEach(() => {
    now = T0;
    server = createFhirServer({ clock: () => new Date(now), maxPageSize: 50, defaultPageSize: 10 });
  });
  afterEach(() => server.close());

  const put = (type: string, id: string, body: object) =>
    request(server.app).put(`${BASE}/${type}/${id}`).set('content-type', JSON_TYPE).send(JSON.stringify({ ...body, resourceType: type, id }));
  const get = (path: string) => request(server.app).get(`${BASE}${path}`);

  /** Every entry of a search or history, following next links (the server's own URLs). */
  async function all(path: string): Promise<BundleEntry[]> {
    const entries: BundleEntry[] = [];
    let url: string | undefined = `${BASE}${path}`;
    while (url) {
      const res = await request(server.app).get(url.replace(/^https?:\/\/[^/]+/, ''));
      expect(res.status).toBe(200);
      entries.push(...((res.body as Bundle).entry ?? []));
      url = (res.body as Bundle).link?.find((l) => l.relation === 'next')?.url;
    }
    return entries;
  }

  /** Three patients with one resource of each type at T0; at T1 p1 and p2 change, one Observation is deleted. */
  async function scenario(): Promise<Record<string, string[]>> {
    const changed: Record<string, string[]> = {};
    for (const p of ['p1', 'p2', 'p3']) expect((await put('Patient', p, { gender: 'female' })).status).toBe(201);
    for (const type of TYPES) {
      for (const [i, p] of ['p1', 'p2', 'p3'].entries()) expect((await put(type, `${type}-${p}`, clinical(type, p, i))).status).toBe(201);
    }
    now = T1;
    for (const type of TYPES) {
      changed[type] = [`${type}-p1`, `${type}-new-p2`];
      expect((await put(type, `${type}-p1`, clinical(type, 'p1', 9))).status).toBe(200); // update
      expect((await put(type, `${type}-new-p2`, clinical(type, 'p2', 8))).status).toBe(201); // create
    }
    expect((await put('Patient', 'p2', { gender: 'male' })).status).toBe(200);
    changed.Patient = ['p2'];
    expect((await request(server.app).delete(`${BASE}/Observation/Observation-p3`)).status).toBe(200);
    return changed;
  }

  test('ge/gt/le on Observation, DiagnosticReport, ImagingStudy, Condition and Patient, with patient lists and _count paging', async () => {
    const changed = await scenario();
    const since = new Date(T1).toISOString();
    for (const type of TYPES) {
      const ids = async (q: string) => (await all(`/${type}?${q}`)).map((e) => e.resource?.id).sort();
      expect(await ids(`_lastUpdated=ge${since}&patient=p1,p2,p3&_count=1`)).toEqual(changed[type].sort());
      expect(await ids(`_lastUpdated=ge${since}&patient=Patient/p2&_count=1`)).toEqual([`${type}-new-p2`]);
      expect(await ids(`_lastUpdated=gt${since}&patient=p1,p2,p3`)).toEqual([]);
      const before = TYPES.includes(type) ? ['p2', 'p3'].map((p) => `${type}-${p}`).filter((id) => id !== 'Observation-p3') : [];
      expect(await ids(`_lastUpdated=le2024-03-01T23:59:59Z&patient=p1,p2,p3&_count=1`)).toEqual(before.sort());
      // Day precision and a time-zone offset (medplum's date semantics).
      expect(await ids(`_lastUpdated=ge2024-03-02&patient=p1,p2,p3`)).toEqual(changed[type].sort());
      expect(await ids(`_lastUpdated=${encodeURIComponent('ge2024-03-02T09:00:00+01:00')}&patient=p1,p2,p3`)).toEqual(changed[type].sort());
    }
    const patients = (await all(`/Patient?_lastUpdated=ge${since}&_count=1`)).map((e) => e.resource?.id);
    expect(patients).toEqual(changed.Patient);
  });

  test('the _lastUpdated shortcut answers exactly what medplum\'s matcher answers', async () => {
    const stamps = ['2024-01-01T00:00:00.000Z', '2024-01-01T00:00:00.500Z', '2024-01-01T23:59:59.999Z', '2024-01-02T00:00:00.000Z', '2024-02-15T12:00:00.000Z'];
    for (const [i, stamp] of stamps.entries()) {
      now = Date.parse(stamp);
      await put('Observation', `o${i}`, clinical('Observation', 'p1', i));
    }
    const stored = await server.repo.searchResources({ resourceType: 'Observation' });
    const filters = [
      'ge2024-01-01T00:00:00.500Z', 'gt2024-01-01T00:00:00.500Z', 'le2024-01-01T00:00:00.500Z', 'lt2024-01-01T00:00:00.500Z',
      'eq2024-01-01', '2024-01-01', 'ne2024-01-01', 'ge2024-01-02', 'gt2024-01-01', 'le2024-01', 'lt2024-02-15T12:00:00Z',
      'sa2024-01-01', 'eb2024-01-02', 'ap2024-01-01', 'ge2024-01-01T01:00:00+01:00',
    ];
    for (const f of filters) {
      const search = parseSearchRequest(`Observation?_lastUpdated=${encodeURIComponent(f)}`);
      const expected = stored.filter((r) => matchesSearchRequest(r, search)).map((r) => r.id).sort();
      const actual = (await server.repo.searchResources(search)).map((r) => r.id).sort();
      expect({ f, ids: actual }).toEqual({ f, ids: expected });
    }
  });

  test('meta.lastUpdated and meta.versionId are the server\'s, whatever the client sends', async () => {
    const res = await request(server.app)
      .post(`${BASE}/Patient`)
      .set('content-type', JSON_TYPE)
      .send(JSON.stringify({ resourceType: 'Patient', meta: { versionId: 'mine', lastUpdated: '1999-01-01T00:00:00Z' } }));
    expect(res.status).toBe(201);
    expect(res.body.meta.lastUpdated).toBe(new Date(T0).toISOString());
    expect(res.body.meta.versionId).not.toBe('mine');
    // The clock going back does not move lastUpdated back (windows would miss the write).
    now = T0 - 60_000;
    const later = await put('Patient', res.body.id as string, { gender: 'other' });
    expect(later.body.meta.lastUpdated).toBe(new Date(T0).toISOString());
  });

  test('GET [base]/Observation/_history?_since= lists changes newest first, deletions included, paged', async () => {
    await scenario();
    const since = new Date(T1).toISOString();
    const entries = await all(`/Observation/_history?_since=${since}&_count=2`);
    expect(entries.map((e) => `${e.request?.method} ${e.request?.url}`)).toEqual([
      'DELETE Observation/Observation-p3',
      'POST Observation',
      'PUT Observation/Observation-p1',
    ]);
    const deletion = entries[0];
    expect(deletion.resource).toBeUndefined();
    expect(deletion.response?.lastModified).toBe(since);
    expect(deletion.fullUrl).toMatch(/\/fhir\/R4\/Observation\/Observation-p3$/);
    expect(entries[1].resource?.id).toBe('Observation-new-p2');
    expect(entries[1].response?.status).toBe('201 Created');
    expect(entries[2].response?.etag).toBe(`W/"${entries[2].resource?.meta?.versionId}"`);

    const first = (await get(`/Observation/_history?_since=${since}&_count=2`)).body as Bundle;
    expect(first.type).toBe('history');
    expect(first.total).toBe(3);
    expect(first.link?.find((l) => l.relation === 'next')?.url).toContain('_since=2024-03-02T08:00:00.000Z');

    // Without _since: every version since the start (3 creates + 1 update + 1 create + 1 delete).
    expect(((await get('/Observation/_history')).body as Bundle).total).toBe(6);
    // System level: every type.
    const system = await all(`/_history?_since=${since}`);
    expect(new Set(system.map((e) => e.fullUrl?.split('/').slice(-2)[0]))).toEqual(new Set([...TYPES, 'Patient']));
    // Instant history of a live resource still works (medplum's route).
    expect(((await get('/Observation/Observation-p1/_history')).body as Bundle).entry).toHaveLength(2);
  });

  test('history refuses what it cannot answer, and a rolled-back transaction leaves no trace in it', async () => {
    expect((await get('/Observation/_history?_since=yesterday')).status).toBe(400);
    const at = await get('/Observation/_history?_at=2024-01-01');
    expect(at.status).toBe(400);
    expect((at.body as OperationOutcome).issue[0].code).toBe('not-supported');
    expect((await get('/Nope/_history')).status).toBe(404);

    await put('Patient', 'keep', {});
    const failed = await request(server.app)
      .post(BASE)
      .set('content-type', JSON_TYPE)
      .send(
        JSON.stringify({
          resourceType: 'Bundle',
          type: 'transaction',
          entry: [
            { resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } },
            { request: { method: 'DELETE', url: 'Patient/keep' } },
            { resource: { resourceType: 'Patient', id: 'keep' }, request: { method: 'PUT', url: 'Patient/keep', ifMatch: 'W/"nope"' } },
          ],
        }),
      );
    expect(failed.status).toBeGreaterThanOrEqual(400);
    const history = (await get('/_history')).body as Bundle;
    // Only the first write of Patient/keep (a create by PUT: its first version) is left.
    expect(history.entry?.map((e) => `${e.request?.method} ${e.fullUrl?.split('/').slice(-2).join('/')}`)).toEqual(['POST Patient/keep']);
    expect(history.entry?.[0].response?.status).toBe('201 Created');
  });
});
