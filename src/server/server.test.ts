import request from 'supertest';
import { parseSearchRequest } from '@medplum/core';
import { MemoryRepository } from '@medplum/fhir-router';
import type { Bundle, CapabilityStatement, Observation, OperationOutcome, Patient } from 'fhir/r4.js';
import { createFhirServer, type FhirServer } from './server.js';

const BASE = '/fhir/R4';
const JSON_TYPE = 'application/fhir+json';

function obs(subject: string, code: string, date = '2020-01-01', extra: Partial<Observation> = {}): Observation {
  return {
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code }] },
    subject: { reference: subject },
    effectiveDateTime: date,
    ...extra,
  };
}

describe('embedded FHIR server', () => {
  let server: FhirServer;
  beforeEach(() => {
    server = createFhirServer({ maxPageSize: 50, defaultPageSize: 20 });
  });
  afterEach(() => server.close());

  const post = (path: string, body: unknown) => request(server.app).post(`${BASE}${path}`).set('content-type', JSON_TYPE).send(JSON.stringify(body));
  const get = (path: string) => request(server.app).get(`${BASE}${path}`);

  async function createPatient(id?: string): Promise<string> {
    if (id) {
      const res = await request(server.app).put(`${BASE}/Patient/${id}`).set('content-type', JSON_TYPE).send(JSON.stringify({ resourceType: 'Patient', id }));
      expect(res.status).toBe(201);
      return id;
    }
    const res = await post('/Patient', { resourceType: 'Patient', name: [{ family: 'Test' }] });
    expect(res.status).toBe(201);
    return res.body.id as string;
  }

  test('serves an R4 CapabilityStatement listing types, interactions and supported search params', async () => {
    const res = await get('/metadata');
    expect(res.status).toBe(200);
    const cs = res.body as CapabilityStatement;
    expect(cs.resourceType).toBe('CapabilityStatement');
    expect(cs.fhirVersion).toBe('4.0.1');
    const rest = cs.rest?.[0];
    expect(rest?.interaction?.map((i) => i.code)).toEqual(expect.arrayContaining(['transaction', 'batch']));
    const observation = rest?.resource?.find((r) => r.type === 'Observation');
    expect(observation?.interaction?.map((i) => i.code)).toEqual(expect.arrayContaining(['read', 'vread', 'create', 'update', 'delete', 'search-type']));
    const params = observation?.searchParam?.map((p) => p.name) ?? [];
    expect(params).toEqual(expect.arrayContaining(['subject', 'patient', 'code', 'date', '_id']));
    // The in-memory matcher cannot evaluate quantity parameters: not advertised.
    expect(params).not.toContain('value-quantity');
    expect(rest?.resource?.some((r) => r.type === 'Project')).toBe(false); // plain R4, no medplum types
  });

  test('create, read, vread, update, history, delete', async () => {
    const created = await post('/Patient', { resourceType: 'Patient', id: 'client-chosen', gender: 'female' });
    expect(created.status).toBe(201);
    expect(created.body.id).not.toBe('client-chosen'); // server assigns ids on create
    expect(created.headers.location).toMatch(new RegExp(`/fhir/R4/Patient/${created.body.id}/_history/`));
    const id = created.body.id as string;
    const v1 = created.body.meta.versionId as string;

    expect((await get(`/Patient/${id}`)).body.gender).toBe('female');
    const updated = await request(server.app)
      .put(`${BASE}/Patient/${id}`)
      .set('content-type', JSON_TYPE)
      .send(JSON.stringify({ resourceType: 'Patient', id, gender: 'male' }));
    expect(updated.status).toBe(200);
    expect((await get(`/Patient/${id}/_history/${v1}`)).body.gender).toBe('female');
    const history = (await get(`/Patient/${id}/_history`)).body as Bundle;
    expect(history.entry?.map((e) => (e.resource as Patient).gender)).toEqual(['male', 'female']);
    // History order is stable across reads (medplum's MemoryRepository reversed it in place per call).
    expect(((await get(`/Patient/${id}/_history`)).body as Bundle).entry?.map((e) => (e.resource as Patient).gender)).toEqual(['male', 'female']);

    expect((await request(server.app).delete(`${BASE}/Patient/${id}`)).status).toBe(200);
    expect((await get(`/Patient/${id}`)).status).toBe(404);
    const unknown = await get('/NotAType/1');
    expect(unknown.status).toBe(404);
    expect(unknown.body.resourceType).toBe('OperationOutcome');
  });

  test('rejects an invalid resource with an OperationOutcome naming path and problem', async () => {
    const res = await post('/Observation', { resourceType: 'Observation', code: { text: 'x' }, bogus: 1 });
    expect(res.status).toBe(400);
    const oo = res.body as OperationOutcome;
    expect(oo.resourceType).toBe('OperationOutcome');
    const texts = oo.issue.map((i) => `${i.expression?.[0]}: ${i.details?.text}`);
    expect(texts).toEqual(expect.arrayContaining([expect.stringMatching(/Observation\.status: Missing required property/), expect.stringMatching(/Observation\.bogus: Invalid additional property/)]));
    expect(((await get('/Observation')).body as Bundle).total).toBe(0);

    const bad = await request(server.app).post(`${BASE}/Patient`).set('content-type', JSON_TYPE).send('{not json');
    expect(bad.status).toBe(400);
    expect(bad.body.resourceType).toBe('OperationOutcome');
  });

  test('paging: following next links yields every resource exactly once, with total and links', async () => {
    const pid = await createPatient();
    const created = new Set<string>();
    for (let i = 0; i < 47; i++) created.add((await post('/Observation', obs(`Patient/${pid}`, '2339-0'))).body.id);
    const seen: string[] = [];
    let url: string | undefined = `${BASE}/Observation?subject=Patient/${pid}&_count=10`;
    let pages = 0;
    while (url) {
      const res = await request(server.app).get(url.replace(/^https?:\/\/[^/]+/, ''));
      expect(res.status).toBe(200);
      const bundle = res.body as Bundle;
      expect(bundle.total).toBe(47);
      expect(bundle.link?.find((l) => l.relation === 'self')?.url).toContain('_count=10');
      if (pages > 0) expect(bundle.link?.some((l) => l.relation === 'previous')).toBe(true);
      for (const e of bundle.entry ?? []) {
        seen.push(e.resource!.id!);
        expect(e.fullUrl).toMatch(new RegExp(`/fhir/R4/Observation/${e.resource!.id}$`));
      }
      url = bundle.link?.find((l) => l.relation === 'next')?.url;
      pages++;
    }
    expect(pages).toBe(5);
    expect(seen).toHaveLength(47);
    expect(new Set(seen)).toEqual(created);

    // _count is capped at maxPageSize (50); absent, the default page size (20) applies.
    expect(((await get(`/Observation?_count=500`)).body as Bundle).entry).toHaveLength(47);
    const capped = (await get(`/Observation?_count=500`)).body as Bundle;
    expect(capped.link?.[0].url).toContain('_count=50');
    expect(((await get(`/Observation`)).body as Bundle).entry).toHaveLength(20);
    const count = (await get(`/Observation?_summary=count`)).body as Bundle;
    expect(count.total).toBe(47);
    expect(count.entry).toBeUndefined();
    expect((await get('/Observation?_count=abc')).status).toBe(400);
  });

  test('comma-separated OR for subject, code and _id; patient=<id> is normalised to Patient/<id>', async () => {
    const [a, b, c] = [await createPatient('a'), await createPatient('b'), await createPatient('c')];
    const ids: Record<string, string> = {};
    for (const [p, code] of [[a, '1'], [a, '2'], [b, '1'], [b, '3'], [c, '1']] as const) {
      ids[`${p}-${code}`] = (await post('/Observation', obs(`Patient/${p}`, code))).body.id;
    }
    const search = async (q: string) => (((await get(`/Observation?${q}`)).body as Bundle).entry ?? []).map((e) => e.resource!.id).sort();

    expect(await search('subject=Patient/a,Patient/b')).toEqual([ids['a-1'], ids['a-2'], ids['b-1'], ids['b-3']].sort());
    expect(await search('subject=Patient/a,Patient/b&code=http://loinc.org|1,http://loinc.org|3')).toEqual([ids['a-1'], ids['b-1'], ids['b-3']].sort());
    expect(await search('code=http://loinc.org|2,http://loinc.org|3')).toEqual([ids['a-2'], ids['b-3']].sort());
    expect(await search('code=2')).toEqual([ids['a-2']]); // code without system, answered by the matcher
    expect(await search(`_id=${ids['a-1']},${ids['c-1']}`)).toEqual([ids['a-1'], ids['c-1']].sort());
    expect(await search('patient=a')).toEqual([ids['a-1'], ids['a-2']].sort());
    expect(await search('patient=a,c')).toEqual([ids['a-1'], ids['a-2'], ids['c-1']].sort());
    expect(await search('subject=b')).toEqual([ids['b-1'], ids['b-3']].sort()); // bare id: every target type
    expect(await search('subject:Patient=c')).toEqual([ids['c-1']]);
    expect(await search('patient=http://127.0.0.1/fhir/R4/Patient/a')).toEqual([]); // another server's base is kept
    const selfLink = ((await get('/Observation?patient=a')).body as Bundle).link?.[0].url;
    expect(selfLink).toContain('patient=Patient/a');
  });

  test('POST _search with a form body', async () => {
    const pid = await createPatient();
    await post('/Observation', obs(`Patient/${pid}`, '1'));
    await post('/Observation', obs(`Patient/${pid}`, '2'));
    const res = await request(server.app).post(`${BASE}/Observation/_search`).type('form').send({ patient: pid, code: 'http://loinc.org|2' });
    expect(res.status).toBe(200);
    expect((res.body as Bundle).total).toBe(1);
  });

  test('date search and refusal of searches the matcher cannot answer', async () => {
    const pid = await createPatient();
    await post('/Observation', obs(`Patient/${pid}`, '1', '2019-06-01'));
    await post('/Observation', obs(`Patient/${pid}`, '1', '2024-06-01'));
    expect(((await get(`/Observation?patient=${pid}&date=le2024-01-01`)).body as Bundle).total).toBe(1);
    expect(((await get(`/Observation?patient=${pid}&date=gt2024-01-01`)).body as Bundle).total).toBe(1);
    for (const q of ['value-quantity=5', 'unknown-param=1', 'subject.name=x', '_include=Observation:subject', 'code:below=x']) {
      const res = await get(`/Observation?${q}`);
      expect(res.status).toBe(400);
      expect((res.body as OperationOutcome).issue[0].code).toBe('not-supported');
    }
    const lenient = await get(`/Observation?patient=${pid}&unknown-param=1`).set('prefer', 'handling=lenient');
    expect(lenient.status).toBe(200);
    expect((lenient.body as Bundle).total).toBe(2);
    expect((lenient.body as Bundle).link?.[0].url).not.toContain('unknown-param');
  });

  test('the index answers exactly what medplum MemoryRepository answers', async () => {
    const plain = new MemoryRepository();
    const codes = ['1', '2', '3', '4'];
    const resources: Observation[] = [];
    for (let i = 0; i < 200; i++) {
      const o = obs(`Patient/p${i % 13}`, codes[i % 4], `20${10 + (i % 15)}-0${1 + (i % 9)}-01`, { id: `o${i}` });
      if (i % 7 === 0) o.code.coding!.push({ system: 'http://snomed.info/sct', code: 'X' });
      if (i % 11 === 0) o.code.coding![0].code = o.code.coding![0].code!.toUpperCase() + 'a';
      resources.push(o);
    }
    await server.load(resources as never);
    for (const r of resources) await plain.createResource(r as never);
    const queries = [
      'subject=Patient/p1,Patient/p2,Patient/p12&code=http://loinc.org|1,http://loinc.org|3&date=le2020-01-01',
      'patient=Patient/p3&code=http://snomed.info/sct|x',
      'code=http://LOINC.org|2',
      'subject=Patient/p4&code=1',
      'subject=Patient/p5&date=ge2015-01-01',
      '_id=o1,o2,o300&subject=Patient/p1',
      'code=http://loinc.org|1a',
    ];
    for (const q of queries) {
      const expected = (await plain.search(parseSearchRequest(`Observation?${q}`))).entry?.map((e) => e.resource!.id).sort() ?? [];
      const actual = (await server.repo.search(parseSearchRequest(`Observation?${q}`))).entry?.map((e) => e.resource!.id).sort() ?? [];
      expect({ q, ids: actual }).toEqual({ q, ids: expected });
    }
  });

  test('identifier and other token/reference indexes answer exactly what medplum answers, after updates, deletes and rollbacks too', async () => {
    const plain = new MemoryRepository();
    const SYS = 'https://fhir-ml-adapter.dev/fhir/identifier';
    const resources: Record<string, unknown>[] = [];
    for (let i = 0; i < 60; i++) {
      const identifier: Record<string, unknown>[] = [{ system: SYS, value: `h${i % 40}` }];
      if (i % 5 === 0) identifier.push({ system: 'urn:other', value: `H${i}`, type: { text: 'MRN' } });
      if (i % 9 === 0) identifier.push({ value: `h${i}` }); // no system: only `|h..` or `h..` match it
      resources.push({
        resourceType: 'RiskAssessment',
        id: `ra${i}`,
        status: 'final',
        identifier,
        subject: { reference: `Patient/p${i % 7}` },
        ...(i % 4 === 0 ? { method: { coding: [{ system: 'urn:m', code: `M${i % 3}` }], text: 'urn:m|m1' } } : {}),
      });
      resources.push({
        resourceType: 'Provenance',
        id: `pv${i}`,
        target: [{ reference: `RiskAssessment/ra${i}` }, ...(i % 3 === 0 ? [{ reference: `Patient/p${i % 7}` }] : [])],
        recorded: '2024-01-01T00:00:00Z',
        agent: [{ who: { reference: 'Device/d1' } }],
      });
    }
    for (let i = 0; i < 20; i++) {
      resources.push({
        resourceType: 'Patient',
        id: `p${i}`,
        identifier: [{ system: 'urn:mrn', value: `MRN${i % 15}` }],
        telecom: i % 2 ? [{ system: 'phone', value: `+1-555-${i}` }] : [{ system: 'email', value: `P${i}@Example.org` }],
        ...(i % 3 ? { generalPractitioner: [{ reference: `Practitioner/x${i % 2}` }] } : {}),
      });
    }
    await server.load(resources as never);
    for (const r of resources) await plain.createResource(r as never);

    const queries = [
      `RiskAssessment?identifier=${SYS}|h3`,
      `RiskAssessment?identifier=${SYS.toUpperCase()}|H3,${SYS}|h7,${SYS}|nope`,
      `RiskAssessment?identifier=urn:other|h10`,
      'RiskAssessment?identifier=|h9',
      'RiskAssessment?identifier=h9',
      `RiskAssessment?identifier=${SYS}|`,
      'RiskAssessment?identifier=MRN',
      `RiskAssessment?identifier=${SYS}|h1&subject=Patient/p1`,
      `RiskAssessment?identifier=${SYS}|h1&patient=Patient/p6`,
      'RiskAssessment?method=urn:m|m1',
      'RiskAssessment?method=urn:m|m1&method=urn:m|M2',
      'RiskAssessment?status=final',
      'RiskAssessment?status=urn:x|final',
      'Provenance?target=RiskAssessment/ra5,Patient/p3',
      'Provenance?patient=Patient/p3',
      'Patient?identifier=urn:mrn|mrn3',
      'Patient?telecom=phone|+1-555-3',
      'Patient?telecom=email|p4@example.org',
      'Patient?general-practitioner=Practitioner/x1&identifier=urn:mrn|MRN1',
      'Patient?_id=p1,p2&identifier=urn:mrn|MRN1',
    ];
    const compare = async (label: string): Promise<void> => {
      for (const q of queries) {
        const expected = (await plain.search(parseSearchRequest(q))).entry?.map((e) => e.resource!.id).sort() ?? [];
        const actual = (await server.repo.search(parseSearchRequest(q))).entry?.map((e) => e.resource!.id).sort() ?? [];
        expect({ label, q, ids: actual }).toEqual({ label, q, ids: expected });
      }
    };
    await compare('loaded');

    // The identifier searches are answered from the index, not by scanning the type.
    const candidates = (q: string) =>
      (server.repo as unknown as { candidatesFromIndex(r: unknown, all: Map<string, unknown>): { candidates: unknown[] } | undefined }).candidatesFromIndex(
        parseSearchRequest(q),
        new Map(),
      );
    expect(candidates(`RiskAssessment?identifier=${SYS}|h3`)).toBeDefined();
    expect(candidates('Patient?identifier=urn:mrn|mrn3')).toBeDefined();

    // Updates move index keys, deletes drop them.
    const changed = { ...(resources[6] as object), identifier: [{ system: SYS, value: 'h7' }] }; // ra3: h3 -> h7
    await server.repo.updateResource(changed as never);
    await plain.updateResource(changed as never);
    await server.repo.deleteResource('RiskAssessment', 'ra7');
    await plain.deleteResource('RiskAssessment', 'ra7');
    await server.repo.deleteResource('Patient', 'p3');
    await plain.deleteResource('Patient', 'p3');
    await compare('after update/delete');

    // A rolled-back transaction leaves the index as it was.
    const res = await post('', {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: { resourceType: 'RiskAssessment', status: 'final', subject: { reference: 'Patient/p1' }, identifier: [{ system: SYS, value: 'h3' }] }, request: { method: 'POST', url: 'RiskAssessment', ifNoneExist: `identifier=${SYS}|h3x` } },
        { resource: { ...(resources[2] as object), identifier: [{ system: SYS, value: 'h3' }] }, request: { method: 'PUT', url: 'RiskAssessment/ra1' } },
        { resource: { resourceType: 'Patient', id: 'p1' }, request: { method: 'PUT', url: 'Patient/p1', ifMatch: 'W/"nope"' } },
      ],
    });
    expect(res.status).toBeGreaterThanOrEqual(400);
    await compare('after rollback');
  });

  describe('transactions', () => {
    test('urn:uuid fullUrls are rewritten to the created ids', async () => {
      const bundle: Bundle = {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { fullUrl: 'urn:uuid:11111111-1111-4111-8111-111111111111', resource: { resourceType: 'Patient', gender: 'male' }, request: { method: 'POST', url: 'Patient' } },
          {
            fullUrl: 'urn:uuid:22222222-2222-4222-8222-222222222222',
            resource: obs('urn:uuid:11111111-1111-4111-8111-111111111111', '1'),
            request: { method: 'POST', url: 'Observation' },
          },
        ],
      };
      const res = await post('', bundle);
      expect(res.status).toBe(200);
      const response = res.body as Bundle;
      expect(response.type).toBe('transaction-response');
      expect(response.entry?.map((e) => e.response?.status)).toEqual(['201', '201']);
      const patientId = response.entry![0].resource!.id!;
      expect(response.entry![0].response?.location).toMatch(new RegExp(`^Patient/${patientId}/_history/`));
      const stored = (await get(`/Observation/${response.entry![1].resource!.id}`)).body as Observation;
      expect(stored.subject?.reference).toBe(`Patient/${patientId}`);
      expect(((await get(`/Observation?patient=${patientId}`)).body as Bundle).total).toBe(1);
    });

    test('conditional create (ifNoneExist) twice creates one resource; the second answers 200 with its location', async () => {
      const ra = (id: string) => ({
        resourceType: 'Patient',
        identifier: [{ system: 'https://example.org/ids', value: id }],
      });
      const tx = (n: number): Bundle => ({
        resourceType: 'Bundle',
        type: 'transaction',
        // More than 8 conditional entries: medplum's own transaction mode refuses this size.
        entry: Array.from({ length: n }, (_, i) => ({
          fullUrl: `urn:uuid:00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
          resource: ra(`v${i}`) as Patient,
          request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=https://example.org/ids|v${i}` },
        })),
      });
      const first = await post('', tx(12));
      expect(first.status).toBe(200);
      expect((first.body as Bundle).entry?.every((e) => e.response?.status === '201')).toBe(true);
      const second = await post('', tx(12));
      expect(second.status).toBe(200);
      const entries = (second.body as Bundle).entry ?? [];
      expect(entries.map((e) => e.response?.status)).toEqual(Array(12).fill('200'));
      expect(entries[0].response?.location).toContain(`Patient/${(first.body as Bundle).entry![0].resource!.id}`);
      expect(((await get('/Patient?identifier=https://example.org/ids|v3')).body as Bundle).total).toBe(1);
      expect(server.repo.count('Patient')).toBe(12);
    });

    test('a transaction with an invalid entry writes nothing and names the entry and path', async () => {
      const res = await post('', {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } },
          { resource: { resourceType: 'Observation', code: { text: 'no status' } }, request: { method: 'POST', url: 'Observation' } },
        ],
      });
      expect(res.status).toBe(400);
      const oo = res.body as OperationOutcome;
      expect(oo.issue[0].expression?.[0]).toBe('Bundle.entry[1].resource.status');
      expect(oo.issue[0].details?.text).toMatch(/Missing required property/);
      expect(server.repo.count('Patient')).toBe(0);
      expect(server.repo.count('Observation')).toBe(0);
    });

    test('a transaction failing midway is rolled back (created deleted, updated restored)', async () => {
      await createPatient('keep');
      const before = (await get('/Patient/keep')).body as Patient;
      const res = await post('', {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { resource: { resourceType: 'Patient', gender: 'female' }, request: { method: 'POST', url: 'Patient' } },
          { resource: { resourceType: 'Patient', id: 'keep', gender: 'other' }, request: { method: 'PUT', url: 'Patient/keep' } },
          // Valid resource, but the write fails: If-Match names a version that does not exist.
          { resource: { resourceType: 'Patient', id: 'keep', gender: 'male' }, request: { method: 'PUT', url: 'Patient/keep', ifMatch: 'W/"nope"' } },
        ],
      });
      expect(res.status).toBeGreaterThanOrEqual(400);
      const oo = res.body as OperationOutcome;
      expect(oo.issue[0].diagnostics).toMatch(/rolled back: Bundle\.entry\[2\]/);
      expect(server.repo.count('Patient')).toBe(1);
      const after = (await get('/Patient/keep')).body as Patient;
      expect(after).toEqual(before);
      const history = (await get('/Patient/keep/_history')).body as Bundle;
      expect(history.entry).toHaveLength(1);
    });

    test('batch entries succeed or fail independently', async () => {
      const res = await post('', {
        resourceType: 'Bundle',
        type: 'batch',
        entry: [
          { resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } },
          { resource: { resourceType: 'Observation' }, request: { method: 'POST', url: 'Observation' } },
        ],
      });
      expect(res.status).toBe(200);
      expect((res.body as Bundle).entry?.map((e) => e.response?.status)).toEqual(['201', '400']);
      expect(server.repo.count('Patient')).toBe(1);
    });
  });

  describe('what the writeback and population work need', () => {
    const SYS = 'https://fhir-ml-adapter.dev/fhir/identifier';
    const carePlan = (value: string, extra: Record<string, unknown> = {}) => ({
      resourceType: 'CarePlan',
      status: 'draft',
      intent: 'proposal',
      subject: { reference: 'Patient/p1' },
      identifier: [{ system: SYS, value }],
      ...extra,
    });
    const put = (path: string, body: unknown) => request(server.app).put(`${BASE}${path}`).set('content-type', JSON_TYPE).send(JSON.stringify(body));

    test('a Group with member.entity is stored as sent and found by member, type and actual', async () => {
      await createPatient('p1');
      await createPatient('p2');
      const group = { resourceType: 'Group', id: 'cohort', type: 'person', actual: true, member: [{ entity: { reference: 'Patient/p1' } }, { entity: { reference: 'Patient/p2' }, inactive: true }] };
      expect((await put('/Group/cohort', group)).status).toBe(201);
      const stored = (await get('/Group/cohort')).body;
      expect(stored.member).toEqual(group.member);
      const ids = async (q: string) => (((await get(`/Group?${q}`)).body as Bundle).entry ?? []).map((e) => e.resource!.id);
      expect(await ids('member=Patient/p1')).toEqual(['cohort']);
      expect(await ids('member=p2')).toEqual(['cohort']);
      expect(await ids('member=Patient/p3')).toEqual([]);
      expect(await ids('type=person&actual=true')).toEqual(['cohort']);
      // A Group without the required type/actual is refused like any invalid resource.
      expect((await post('/Group', { resourceType: 'Group', member: [{ entity: { reference: 'Patient/p1' } }] })).status).toBe(400);
    });

    test('CarePlan conditional create in a transaction and by If-None-Exist, as for RiskAssessment', async () => {
      await createPatient('p1');
      const tx = (): Bundle => ({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { fullUrl: 'urn:uuid:44444444-4444-4444-8444-444444444444', resource: carePlan('h1') as never, request: { method: 'POST', url: 'CarePlan', ifNoneExist: `identifier=${SYS}|h1` } },
          {
            resource: { resourceType: 'RiskAssessment', status: 'final', subject: { reference: 'Patient/p1' }, identifier: [{ system: SYS, value: 'r1' }] } as never,
            request: { method: 'POST', url: 'RiskAssessment', ifNoneExist: `identifier=${SYS}|r1` },
          },
        ],
      });
      const first = await post('', tx());
      expect((first.body as Bundle).entry?.map((e) => e.response?.status)).toEqual(['201', '201']);
      const second = await post('', tx());
      expect((second.body as Bundle).entry?.map((e) => e.response?.status)).toEqual(['200', '200']);
      expect((second.body as Bundle).entry?.[0].resource?.id).toBe((first.body as Bundle).entry?.[0].resource?.id);
      const header = await request(server.app).post(`${BASE}/CarePlan`).set('content-type', JSON_TYPE).set('if-none-exist', `identifier=${SYS}|h1`).send(JSON.stringify(carePlan('h1')));
      expect(header.status).toBe(200);
      expect(server.repo.count('CarePlan')).toBe(1);
      expect(((await get(`/CarePlan?identifier=${SYS}|h1`)).body as Bundle).total).toBe(1);
    });

    test('PUT of a CarePlan or RiskAssessment under an id makes a new version each time', async () => {
      await createPatient('p1');
      for (const [type, body] of [
        ['CarePlan', carePlan('v')],
        ['RiskAssessment', { resourceType: 'RiskAssessment', status: 'preliminary', subject: { reference: 'Patient/p1' } }],
      ] as const) {
        const v1 = await put(`/${type}/x1`, { ...body, id: 'x1' });
        expect(v1.status).toBe(201);
        const v2 = await put(`/${type}/x1`, { ...body, id: 'x1', status: type === 'CarePlan' ? 'revoked' : 'final' });
        expect(v2.status).toBe(200);
        expect(v2.body.meta.versionId).not.toBe(v1.body.meta.versionId);
        expect(v2.headers.etag).toBe(`W/"${v2.body.meta.versionId}"`);
        const history = (await get(`/${type}/x1/_history`)).body as Bundle;
        expect(history.entry?.map((e) => e.resource?.meta?.versionId)).toEqual([v2.body.meta.versionId, v1.body.meta.versionId]);
        expect((await get(`/${type}/x1/_history/${v1.body.meta.versionId}`)).body.status).toBe(body.status);
      }
    });

    test('conditional update PUT CarePlan?identifier=: creates, then updates the match; two matches are refused', async () => {
      await createPatient('p1');
      const created = await put(`/CarePlan?identifier=${SYS}|c1`, carePlan('c1'));
      expect(created.status).toBe(201);
      const updated = await put(`/CarePlan?identifier=${SYS}|c1`, carePlan('c1', { status: 'revoked' }));
      expect(updated.status).toBe(200);
      expect(updated.body.id).toBe(created.body.id);
      expect(updated.body.status).toBe('revoked');
      expect(updated.body.meta.versionId).not.toBe(created.body.meta.versionId);
      // In a transaction too.
      const tx = await post('', {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [{ resource: carePlan('c1', { status: 'draft' }), request: { method: 'PUT', url: `CarePlan?identifier=${SYS}|c1` } }],
      });
      expect(tx.status).toBe(200);
      expect((tx.body as Bundle).entry?.[0].response?.status).toBe('200');
      expect(server.repo.count('CarePlan')).toBe(1);
      await post('/CarePlan', carePlan('c1'));
      const ambiguous = await put(`/CarePlan?identifier=${SYS}|c1`, carePlan('c1'));
      expect(ambiguous.status).toBe(412);
    });
  });

  test('GET /Binary/:id returns FHIR JSON, or the raw content when asked for it', async () => {
    const created = await post('/Binary', { resourceType: 'Binary', contentType: 'text/plain', data: Buffer.from('hello').toString('base64') });
    expect(created.status).toBe(201);
    const json = await get(`/Binary/${created.body.id}`);
    expect(json.body.resourceType).toBe('Binary');
    const raw = await get(`/Binary/${created.body.id}`).set('accept', 'text/plain');
    expect(raw.text).toBe('hello');
  });
});
