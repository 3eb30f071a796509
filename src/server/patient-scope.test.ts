import request from 'supertest';
import type { Bundle, OperationOutcome } from 'fhir/r4.js';
import { SINGLE_PATIENT_REQUIRED, CATEGORY_REQUIRED } from './patient-scope.js';
import { createFhirServer, type FhirServer } from './server.js';

const BASE = '/fhir/R4';

describe('vendor-style search rules', () => {
  let server: FhirServer;
  afterEach(() => server.close());

  async function start(options: { requireSinglePatient?: boolean; requireObservationCategory?: boolean }): Promise<void> {
    server = createFhirServer(options);
    await server.load([
      { resourceType: 'Patient', id: 'p1' },
      { resourceType: 'Patient', id: 'p2' },
      {
        resourceType: 'Observation',
        id: 'o1',
        status: 'final',
        category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }],
        code: { text: 'x' },
        subject: { reference: 'Patient/p1' },
      },
      { resourceType: 'Condition', id: 'c2', code: { text: 'x' }, subject: { reference: 'Patient/p2' } },
      { resourceType: 'RiskAssessment', id: 'r1', status: 'final', subject: { reference: 'Patient/p1' }, identifier: [{ system: 'urn:x', value: 'h1' }] },
    ] as never);
  }

  const search = (q: string) => request(server.app).get(`${BASE}/${q}`);

  test('without the option, multi-patient and patient-less searches are answered', async () => {
    await start({});
    expect((await search('Observation?patient=p1,p2')).status).toBe(200);
    expect((await search('Observation')).status).toBe(200);
  });

  test('requireSinglePatient: one patient per clinical search, or 400 with an OperationOutcome that says so', async () => {
    await start({ requireSinglePatient: true });
    for (const q of [
      'Observation?patient=p1,p2',
      'Observation?patient=p1&patient=p2',
      'Observation?subject=Patient/p1&patient=p2',
      'Observation',
      'Observation?code=x',
      'DiagnosticReport?_lastUpdated=ge2020-01-01',
      'ImagingStudy?patient=p1,p2',
      'Condition?subject=Group/g1',
      'Procedure?patient:missing=true',
      'ServiceRequest?subject=p1,p2',
      'CarePlan?identifier=urn:x|1',
    ]) {
      const res = await search(q);
      expect({ q, status: res.status }).toEqual({ q, status: 400 });
      const issue = (res.body as OperationOutcome).issue[0];
      expect(issue.details?.coding?.[0]).toEqual(SINGLE_PATIENT_REQUIRED);
      expect(issue.details?.text).toMatch(/requires a single patient/);
    }
    for (const q of ['Observation?patient=p1', 'Observation?subject=Patient/p1&_count=5', 'Observation?subject:Patient=p1', 'Condition?patient=Patient/p2', 'CarePlan?patient=p1']) {
      expect({ q, status: (await search(q)).status }).toEqual({ q, status: 200 });
    }
    expect(((await search('Observation?patient=p1')).body as Bundle).total).toBe(1);
    // POST _search is held to the same rule; other types (Patient, RiskAssessment) are not restricted.
    expect((await request(server.app).post(`${BASE}/Observation/_search`).type('form').send({ patient: 'p1,p2' })).status).toBe(400);
    expect((await search('Patient')).status).toBe(200);
    expect((await search('RiskAssessment?identifier=urn:x|h1')).status).toBe(200);
    // Writes that search internally (conditional create) are not searches: unaffected.
    const tx = await request(server.app)
      .post(BASE)
      .set('content-type', 'application/fhir+json')
      .send(
        JSON.stringify({
          resourceType: 'Bundle',
          type: 'transaction',
          entry: [
            {
              resource: { resourceType: 'CarePlan', status: 'draft', intent: 'proposal', subject: { reference: 'Patient/p1' }, identifier: [{ system: 'urn:x', value: 'cp' }] },
              request: { method: 'POST', url: 'CarePlan', ifNoneExist: 'identifier=urn:x|cp' },
            },
          ],
        }),
      );
    expect(tx.status).toBe(200);
  });

  test('requireObservationCategory: Observation searches name a category', async () => {
    await start({ requireSinglePatient: true, requireObservationCategory: true });
    const refused = await search('Observation?patient=p1');
    expect(refused.status).toBe(400);
    expect((refused.body as OperationOutcome).issue[0].details?.coding?.[0]).toEqual(CATEGORY_REQUIRED);
    const ok = await search('Observation?patient=p1&category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory');
    expect(ok.status).toBe(200);
    expect((ok.body as Bundle).total).toBe(1);
    expect((await search('Condition?patient=p2')).status).toBe(200);
  });
});
