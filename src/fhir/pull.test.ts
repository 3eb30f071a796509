import type { DiagnosticReport, Observation } from 'fhir/r4.js';
import { AdapterError } from '../core/errors.js';
import { FhirClient } from './client.js';
import { chunkIds, listPatientIds, patientIdOf, pullBatch, searchUrlLength, type PullSpec } from './pull.js';
import { recordingClock, searchset, sendJson, startPeer, type ScriptedPeer } from './testing/scripted-peer.js';

const LOINC = 'http://loinc.org';
const asOf = new Date('2025-01-15T00:00:00.000Z');
const since = new Date('2024-01-15T00:00:00.000Z');

const observation = (id: string, subject?: string): Observation => ({
  resourceType: 'Observation',
  id,
  status: 'final',
  code: { coding: [{ system: LOINC, code: '4548-4' }] },
  ...(subject ? { subject: { reference: subject } } : {}),
});

let peer: ScriptedPeer;
afterEach(async () => {
  await peer?.close();
});

/** A scripted server holding three patients' data, answering the batched searches pullBatch makes. */
async function startServer(): Promise<ScriptedPeer> {
  return startPeer((req, res, { baseUrl }) => {
    const url = new URL(req.url, 'http://peer');
    const path = url.pathname.replace(/^\/fhir\//, '');
    const q = url.searchParams;
    const subjects = (q.get('subject') ?? '').split(',');
    switch (path) {
      case 'Patient': {
        const ids = (q.get('_id') ?? '').split(',').filter((id) => id !== 'p3'); // p3 is not on the server
        return sendJson(res, 200, searchset(ids.map((id) => ({ resourceType: 'Patient', id }))));
      }
      case 'Observation': {
        if (q.get('page') === '2') return sendJson(res, 200, searchset([observation('o3', 'Patient/p1')]));
        if (subjects.includes('Patient/p1')) {
          // A real server would filter these out; a quirky one does not, and nothing must vanish.
          const page1 = [
            observation('o1', 'Patient/p1'),
            observation('o2', 'https://other.example/fhir/Patient/p2'),
            observation('o4'),
            observation('o5', 'Patient/zz'),
            observation('o1', 'Patient/p1'), // repeated across pages
          ];
          return sendJson(res, 200, searchset(page1, `${baseUrl}/Observation?page=2`));
        }
        return sendJson(res, 200, searchset([observation('o6', 'Patient/p3')]));
      }
      case 'DiagnosticReport': {
        if (!subjects.includes('Patient/p1')) return sendJson(res, 200, searchset([]));
        const report: DiagnosticReport = {
          resourceType: 'DiagnosticReport',
          id: 'd1',
          status: 'final',
          code: { text: 'echo' },
          subject: { reference: 'Patient/p1' },
          presentedForm: [
            { contentType: 'text/plain', url: 'Binary/b1' },
            { contentType: 'text/plain', url: 'https://elsewhere.example/fhir/Binary/x' },
            { contentType: 'text/plain', url: `${baseUrl}/Binary/b2` },
            { contentType: 'text/plain', data: 'aGk=' },
          ],
        };
        return sendJson(res, 200, searchset([report]));
      }
      case 'ImagingStudy': {
        const studies = subjects.includes('Patient/p2')
          ? [{ resourceType: 'ImagingStudy', id: 'i1', status: 'available', subject: { reference: 'Patient/p2' } }]
          : [];
        return sendJson(res, 200, searchset(studies));
      }
      case 'Binary/b1':
        return sendJson(res, 200, { resourceType: 'Binary', id: 'b1', contentType: 'text/plain', data: 'aGk=' });
      default:
        return sendJson(res, 404, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] });
    }
  });
}

const spec: PullSpec = {
  observationCodes: [
    { system: LOINC, code: '4548-4' },
    { system: LOINC, code: '2345-7' },
  ],
  observationSince: since,
  reports: { since, categories: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0074', code: 'CUS' }] },
  imaging: {},
};

describe('pullBatch', () => {
  it('issues one search per resource type per chunk, with every code, and groups by patient', async () => {
    peer = await startServer();
    const client = new FhirClient({ baseUrl: peer.baseUrl, clock: recordingClock() });
    const result = await pullBatch(client, ['p1', 'p2', 'p3', 'p1'], spec, asOf, { maxIdsPerRequest: 2 });

    const searches = peer.requests.map((r) => new URL(r.url, 'http://peer'));
    const byType = (type: string) => searches.filter((u) => u.pathname === `/fhir/${type}` && !u.searchParams.has('page'));
    expect(byType('Patient').map((u) => u.searchParams.get('_id'))).toEqual(['p1,p2', 'p3']);

    const observationSearches = byType('Observation');
    expect(observationSearches.map((u) => u.searchParams.get('subject'))).toEqual(['Patient/p1,Patient/p2', 'Patient/p3']);
    for (const u of observationSearches) {
      expect(u.searchParams.get('code')).toBe(`${LOINC}|4548-4,${LOINC}|2345-7`);
      expect(u.searchParams.getAll('date')).toEqual(['ge2024-01-15T00:00:00.000Z', 'le2025-01-15T00:00:00.000Z']);
      expect(u.searchParams.get('_count')).toBe('1000');
    }
    expect(byType('DiagnosticReport').map((u) => [u.searchParams.getAll('date'), u.searchParams.get('category')])).toEqual([
      [['ge2024-01-15T00:00:00.000Z', 'le2025-01-15T00:00:00.000Z'], 'http://terminology.hl7.org/CodeSystem/v2-0074|CUS'],
      [['ge2024-01-15T00:00:00.000Z', 'le2025-01-15T00:00:00.000Z'], 'http://terminology.hl7.org/CodeSystem/v2-0074|CUS'],
    ]);
    expect(byType('ImagingStudy').map((u) => u.searchParams.getAll('started'))).toEqual([
      ['le2025-01-15T00:00:00.000Z'],
      ['le2025-01-15T00:00:00.000Z'],
    ]);
    // Only same-server Binaries are read; the one elsewhere is never requested.
    expect(searches.filter((u) => u.pathname.includes('/Binary/')).map((u) => u.pathname).sort()).toEqual([
      '/fhir/Binary/b1',
      '/fhir/Binary/b2',
    ]);

    expect([...result.records.keys()].sort()).toEqual(['p1', 'p2']);
    const p1 = result.records.get('p1')!;
    const p2 = result.records.get('p2')!;
    expect(p1.observations.map((o) => o.id)).toEqual(['o1', 'o3']);
    expect(p2.observations.map((o) => o.id)).toEqual(['o2']);
    expect(p1.diagnosticReports.map((d) => d.id)).toEqual(['d1']);
    expect(p2.imagingStudies.map((i) => i.id)).toEqual(['i1']);
    expect([...(p1.binaries?.keys() ?? [])]).toEqual(['Binary/b1']);
    expect(result.missingBinaries).toEqual(['Binary/b2']);
    expect(result.missingPatients).toEqual(['p3']);
    expect(result.unattributed).toEqual([
      { reference: 'Observation/o4', reason: 'no-subject', detail: 'missing-subject' },
      { reference: 'Observation/o5', reason: 'no-subject', detail: 'outside-batch' },
      { reference: 'Observation/o6', reason: 'no-subject', detail: 'patient-not-found' },
    ]);

    // Counts reconcile: every unique Observation fetched is either in a record or unattributed.
    const placed = [...result.records.values()].reduce((n, r) => n + r.observations.length, 0);
    const unattributedObservations = result.unattributed.filter((u) => u.reference.startsWith('Observation/')).length;
    expect(result.fetched.Observation).toBe(6);
    expect(placed + unattributedObservations).toBe(result.fetched.Observation);
    expect(result.fetched).toMatchObject({ Patient: 2, DiagnosticReport: 1, ImagingStudy: 1, Binary: 1 });
    // 2 Patient + 3 Observation pages + 2 DiagnosticReport + 2 ImagingStudy + 1 Binary returned.
    expect(result.requests).toBe(10);
  });

  it('skips searches the spec does not ask for', async () => {
    peer = await startServer();
    const client = new FhirClient({ baseUrl: peer.baseUrl });
    await pullBatch(client, ['p1'], { observationCodes: [] }, asOf);
    expect(peer.requests.map((r) => r.url)).toEqual(['/fhir/Patient?_id=p1&_count=1000']);
  });

  it('rejects invalid patient ids without echoing them', async () => {
    const client = new FhirClient({ baseUrl: 'http://127.0.0.1:9/fhir' });
    const err = await pullBatch(client, ['ok', 'a,b', 'x y'], spec, asOf).then(
      () => new Error('expected a rejection'),
      (e: unknown) => e as Error,
    );
    expect(AdapterError.is(err, 'input-invalid')).toBe(true);
    expect(err.message).toContain('2 patient id(s)');
    expect(err.message).not.toContain('a,b');
  });
});

describe('chunkIds', () => {
  it('shrinks chunks below maxIds to keep URLs within budget', () => {
    const ids = Array.from({ length: 10 }, (_, i) => `patient-${String(i).padStart(50, '0')}`);
    const length = (chunk: string[]) => 100 + chunk.join(',').length;
    const chunks = chunkIds(ids, 50, 400, length);
    expect(chunks.flat()).toEqual(ids);
    expect(chunks.every((c) => length(c) <= 400)).toBe(true);
    expect(chunks.map((c) => c.length)).toEqual([5, 5]); // 5 ids of 58 chars + 4 commas + 100 = 394
    expect(chunkIds(ids, 3, 10_000, length).map((c) => c.length)).toEqual([3, 3, 3, 1]);
  });

  it('measures search URLs exactly as URLSearchParams builds them', () => {
    const fixed = { code: 'http://loinc.org|2345-7,urn:oid:1.2|a\\,b', date: ['ge2024-01-01T00:00:00.000Z', 'le2025-01-01T00:00:00.000Z'], _count: '1000', empty: [] };
    const ids = ['p1', 'A-b.9', 'x'.repeat(64), '0'];
    for (const [key, value, params] of [
      ['subject', (id: string) => `Patient/${id}`, fixed],
      ['_id', (id: string) => id, { _count: '50' }],
      ['patient', (id: string) => `Patient/${id} é&=`, {}],
    ] as const) {
      const measure = searchUrlLength('http://h:1/fhir/R4', 'Observation', params, key, value);
      for (let k = 1; k <= ids.length; k++) {
        const chunk = ids.slice(0, k);
        const query = new URLSearchParams();
        for (const [name, v] of Object.entries({ [key]: chunk.map(value).join(','), ...params })) for (const x of Array.isArray(v) ? v : [v]) query.append(name, x);
        expect(measure(chunk)).toBe(`http://h:1/fhir/R4/Observation?${query}`.length);
      }
    }
  });

  it('refuses when a single id cannot fit', () => {
    expect(() => chunkIds(['a'], 50, 10, () => 11)).toThrow(/exceeds 10 characters/);
  });
});

describe('patientIdOf', () => {
  it.each([
    ['Patient/p1', 'p1'],
    ['https://ehr.example/fhir/Patient/p1', 'p1'],
    ['Patient/p1/_history/3', 'p1'],
    ['Group/g1', undefined],
    ['urn:uuid:1234', undefined],
  ])('%s → %s', (reference, id) => {
    expect(patientIdOf({ reference })).toBe(id);
  });
});

describe('listPatientIds', () => {
  it('streams ids page by page with _elements=id', async () => {
    peer = await startPeer((req, res) => {
      if (req.url.includes('page=2')) return sendJson(res, 200, searchset([{ resourceType: 'Patient', id: 'c' }]));
      sendJson(res, 200, searchset([{ resourceType: 'Patient', id: 'a' }, { resourceType: 'Patient', id: 'b' }], 'Patient?page=2'));
    });
    const client = new FhirClient({ baseUrl: peer.baseUrl });
    const pages: string[][] = [];
    for await (const ids of listPatientIds(client, 2)) pages.push(ids);
    expect(pages).toEqual([['a', 'b'], ['c']]);
    expect(peer.requests[0].url).toBe('/fhir/Patient?_elements=id&_count=2');
  });
});
