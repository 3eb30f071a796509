import type { Resource } from '@medplum/fhirtypes';
import type { CarePlan } from 'fhir/r4.js';
import { ensureR4Definitions } from '../../server/definitions.js';
import { validationIssues } from '../../server/repository.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../identifiers.js';
import { applyPlanDefinition, type CarePlanProposal } from './apply.js';
import { loadCarePlanDefinitions, type CarePlanDefinitions } from './definitions.js';
import { planCarePlanWrite, proposalState } from './write-plan.js';
import { AS_OF, DEVICE, diabetesContext, options } from './testing/fixtures.js';

const errors = (r: unknown) => validationIssues(r as Resource).filter((i) => i.severity === 'error' || i.severity === 'fatal');
let defs: CarePlanDefinitions;
beforeAll(() => {
  ensureR4Definitions();
  defs = loadCarePlanDefinitions('diabetes-progression')!;
});

/** A proposal at an as-of, for a band and BMI (BMI decides whether the dietitian is proposed). */
function proposal(asOf: Date, bmi = 32, band: 'high' | 'low' = 'high'): CarePlanProposal {
  const context = diabetesContext({ asOf: asOf.toISOString(), band }, { bmi: { value: bmi, unit: 'kg/m2' }, ldl: { value: 100, unit: 'mg/dL' }, map: { value: 90, unit: 'mm[Hg]' } });
  return applyPlanDefinition(defs.planDefinitions[0], defs.activityDefinitions, context, options({ asOf }));
}
/** The proposal's CarePlan as the server stores it. */
const stored = (p: CarePlanProposal, id: string, versionId = 'v1', edit: Partial<CarePlan> = {}): CarePlan => ({
  ...p.carePlan!,
  id,
  meta: { versionId, lastUpdated: '2025-01-01T00:00:00Z', security: p.carePlan!.meta!.security },
  supportingInfo: [{ reference: 'RiskAssessment/ra1' }],
  ...edit,
});
const write = (p: CarePlanProposal, onServer: CarePlan[]) =>
  planCarePlanWrite({ proposal: p, patientId: 'p1', onServer, identifierSystem: DEFAULT_IDENTIFIER_SYSTEM, deviceReference: DEVICE, recorded: new Date('2025-07-01T02:00:00Z') });

const EARLIER = new Date('2025-03-31T00:00:00Z');

describe('planCarePlanWrite', () => {
  it('writes a new proposal as a conditional create on its identifier, with its Provenance under a deterministic id', () => {
    const p = proposal(AS_OF);
    const plan = write(p, []);
    expect(plan).toMatchObject({ created: true, revoked: [], untouched: [] });
    expect(plan.entries.map((e) => e.request)).toEqual([
      { method: 'POST', url: 'CarePlan', ifNoneExist: `identifier=${DEFAULT_IDENTIFIER_SYSTEM}|${p.identifier.value}` },
      { method: 'PUT', url: `Provenance/cp-${p.identifier.value}` },
    ]);
    expect(plan.entries[1].resource).toMatchObject({ resourceType: 'Provenance', target: [{ reference: plan.entries[0].fullUrl }] });
    for (const e of plan.entries) expect(errors(e.resource)).toEqual([]);
  });

  it('writes nothing on a re-run of the same as-of', () => {
    const p = proposal(AS_OF);
    expect(write(p, [stored(p, 'cp1')])).toEqual({ entries: [], created: false, notCreated: 'already-written', revoked: [], untouched: [] });
  });

  it('revokes the older untouched draft for a different plan in the same transaction, with If-Match on its version', () => {
    const older = proposal(EARLIER, 25); // no dietitian then
    const newer = proposal(AS_OF, 32);
    const plan = write(newer, [stored(older, 'old', 'v7')]);
    expect(plan).toMatchObject({ created: true, revoked: [{ id: 'old', versionId: 'v7' }], untouched: [] });
    const put = plan.entries.find((e) => e.request?.url === 'CarePlan/old')!;
    expect(put.request).toEqual({ method: 'PUT', url: 'CarePlan/old', ifMatch: 'W/"v7"' });
    const revoked = put.resource as CarePlan;
    expect(revoked.status).toBe('revoked');
    expect(revoked.meta).toEqual({ security: [expect.objectContaining({ code: 'AIAST' })] });
    expect(revoked.extension![0].extension!.find((e) => e.url === 'supersededBy')!.valueIdentifier).toEqual(newer.identifier);
    expect(revoked.note!.at(-1)!.text).toBe(`Revoked by fhir-ml-adapter: superseded by proposal ${newer.identifier.value}.`);
    const provenance = plan.entries.find((e) => e.resource?.resourceType === 'Provenance' && e.request?.url.startsWith('Provenance/cpr-'))!;
    expect(provenance.resource).toMatchObject({ target: [{ reference: 'CarePlan/old' }], entity: [{ role: 'revision', what: { reference: 'CarePlan/old/_history/v7' } }] });
    for (const e of plan.entries) expect(errors(e.resource)).toEqual([]);
  });

  it('keeps the older draft and writes nothing new when the newer run proposes the same activities', () => {
    const plan = write(proposal(AS_OF), [stored(proposal(EARLIER), 'old')]);
    expect(plan).toEqual({ entries: [], created: false, notCreated: 'same-plan-already-proposed', revoked: [], untouched: [] });
  });

  it('never touches a plan a clinician activated, completed, edited or re-authored, nor one without a version', () => {
    const older = proposal(EARLIER, 25);
    const onServer = [
      stored(older, 'activated', 'v2', { status: 'active' }),
      stored(older, 'completed', 'v3', { status: 'completed' }),
      stored(older, 'noted', 'v2', { note: [...older.carePlan!.note!, { text: 'Patient prefers March' }] }),
      stored(older, 'reassigned', 'v2', { author: { reference: 'Practitioner/dr' } }),
      { ...stored(older, 'unversioned'), meta: {} },
    ];
    const plan = write(proposal(AS_OF, 32), onServer);
    expect(plan.revoked).toEqual([]);
    expect(plan.untouched).toEqual([
      { id: 'activated', why: 'not-draft' },
      { id: 'completed', why: 'not-draft' },
      { id: 'noted', why: 'edited' },
      { id: 'reassigned', why: 'author-changed' },
      { id: 'unversioned', why: 'no-version' },
    ]);
    expect(plan.created).toBe(true);
    expect(plan.entries.every((e) => e.request?.method === 'POST' || e.request?.url.startsWith('Provenance/cp-'))).toBe(true);
  });

  it('ignores CarePlans that are not this adapter\'s, and does nothing when a newer proposal exists', () => {
    const clinicians: CarePlan = { resourceType: 'CarePlan', id: 'mine', status: 'draft', intent: 'plan', subject: { reference: 'Patient/p1' }, meta: { versionId: '1' } };
    expect(write(proposal(AS_OF), [clinicians])).toMatchObject({ created: true, untouched: [], revoked: [] });
    expect(proposalState(clinicians, { identifierSystem: DEFAULT_IDENTIFIER_SYSTEM, deviceReference: DEVICE })).toEqual({ revocable: false, why: 'not-adapter' });
    const later = proposal(new Date('2025-09-30T00:00:00Z'), 25);
    expect(write(proposal(AS_OF), [stored(later, 'later')])).toEqual({ entries: [], created: false, notCreated: 'newer-proposal-exists', revoked: [], untouched: [] });
  });

  it('revokes the older draft when the newer run proposes nothing', () => {
    const nothing = proposal(AS_OF, 22, 'low');
    expect(nothing.carePlan).toBeUndefined();
    const plan = write(nothing, [stored(proposal(EARLIER), 'old', 'v1')]);
    expect(plan).toMatchObject({ created: false, notCreated: 'nothing-to-propose', revoked: [{ id: 'old', versionId: 'v1' }] });
    expect((plan.entries[0].resource as CarePlan).note!.at(-1)!.text).toBe('Revoked by fhir-ml-adapter: a newer assessment proposes nothing.');
  });
});
