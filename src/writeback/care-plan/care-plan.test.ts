import type { Resource } from '@medplum/fhirtypes';
import type { CarePlan, PlanDefinition } from 'fhir/r4.js';
import { haveSynthea, syntheaFiles, syntheaPatient } from '../../clinical/testing/synthea.js';
import { ensureR4Definitions } from '../../server/definitions.js';
import { validationIssues } from '../../server/repository.js';
import { CAREPLAN_PROPOSAL_EXTENSION_URL } from '../extensions.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../identifiers.js';
import { extensionDefinition, extensionProblems } from '../testing/extension-check.js';
import { applyPlanDefinition, carePlanContentHash, carePlanIdentifierValue, type CarePlanProposal } from './apply.js';
import { buildAssessmentContext } from './context.js';
import { definitionProblems, loadCarePlanDefinitions, type CarePlanDefinitions } from './definitions.js';
import { acceptanceByActivity } from './ranking.js';
import { activeCarePlan, AS_OF, curb65Context, DEVICE, diabetesContext, hba1cResult, options, procedure, serviceRequest } from './testing/fixtures.js';

const errors = (r: unknown) => validationIssues(r as Resource).filter((i) => i.severity === 'error' || i.severity === 'fatal');
const BASE = 'https://fhir-ml-adapter.dev/fhir/ActivityDefinition/';
const activityUrls = (p: CarePlanProposal) => p.proposed.map((a) => a.activityDefinition.split('|')[0].replace(BASE, ''));

let diabetes: CarePlanDefinitions;
let curb65: CarePlanDefinitions;
beforeAll(() => {
  ensureR4Definitions();
  diabetes = loadCarePlanDefinitions('diabetes-progression')!;
  curb65 = loadCarePlanDefinitions('curb65')!;
});
const applyDiabetes = (...args: Parameters<typeof diabetesContext>) => (o = options()) =>
  applyPlanDefinition(diabetes.planDefinitions[0], diabetes.activityDefinitions, diabetesContext(...args), o);

describe('CarePlan definitions (mappings/careplans)', () => {
  it('load for both models; every PlanDefinition and ActivityDefinition is valid R4', () => {
    expect(diabetes.planDefinitions.map((p) => p.url)).toEqual(['https://fhir-ml-adapter.dev/fhir/PlanDefinition/diabetes-progression-care']);
    expect(curb65.planDefinitions.map((p) => p.url)).toEqual(['https://fhir-ml-adapter.dev/fhir/PlanDefinition/curb65-site-of-care']);
    for (const defs of [diabetes, curb65]) {
      for (const r of [...defs.planDefinitions, ...new Set(defs.activityDefinitions.values())]) expect({ id: r.id, errors: errors(r) }).toEqual({ id: r.id, errors: [] });
    }
    expect(loadCarePlanDefinitions('no-such-model')).toBeUndefined();
  });

  it('cites the British Thoracic Society guidance in the CURB-65 definitions', () => {
    const pd = curb65.planDefinitions[0];
    expect(pd.relatedArtifact?.some((a) => a.type === 'citation' && /BTS guidelines for the management of community acquired pneumonia/.test(a.citation ?? ''))).toBe(true);
    for (const ad of new Set(curb65.activityDefinitions.values())) expect(ad.relatedArtifact?.[0].citation).toMatch(/^Lim WS, Baudouin SV/);
  });

  it('reports every problem at once: bad FHIRPath, unknown canonical, uncoded activity, wrong language', () => {
    const pd: PlanDefinition = {
      resourceType: 'PlanDefinition',
      url: 'https://example.org/pd',
      version: '1',
      status: 'active',
      action: [
        { id: 'a', condition: [{ kind: 'applicability', expression: { language: 'text/fhirpath', expression: 'band = = 1' } }], definitionCanonical: 'https://example.org/ad|1' },
        { id: 'b', condition: [{ kind: 'applicability', expression: { language: 'text/cql', expression: 'x' } }], definitionCanonical: 'https://example.org/missing' },
      ],
    };
    const problems = definitionProblems(
      [{ file: 'pd.json', resource: pd }],
      [{ file: 'ad.json', resource: { resourceType: 'ActivityDefinition', url: 'https://example.org/ad', version: '1', status: 'active', kind: 'ServiceRequest', code: { text: 'free text' } } }],
    );
    expect(problems).toEqual([
      'ad.json (ActivityDefinition ?): code needs a SNOMED CT or LOINC coding',
      expect.stringMatching(/^pd.json \(PlanDefinition \?\): action a: condition does not compile: /),
      'pd.json (PlanDefinition ?): action b: condition language must be text/fhirpath',
      'pd.json (PlanDefinition ?): action b: definitionCanonical https://example.org/missing is not an ActivityDefinition of this folder',
    ]);
  });
});

describe('applyPlanDefinition: diabetes-progression', () => {
  it('proposes HbA1c, dietitian, lipid and blood-pressure review for a high-risk patient with high BMI, LDL and MAP; the CarePlan and Provenance validate', () => {
    const p = applyDiabetes()();
    expect(activityUrls(p)).toEqual(['hba1c-every-3-months', 'dietitian-referral', 'lipid-therapy-review', 'blood-pressure-review']);
    const cp = p.carePlan!;
    expect(cp).toMatchObject({
      resourceType: 'CarePlan',
      status: 'draft',
      intent: 'proposal',
      instantiatesCanonical: ['https://fhir-ml-adapter.dev/fhir/PlanDefinition/diabetes-progression-care|1.0.0'],
      subject: { reference: 'Patient/p1' },
      author: { reference: DEVICE },
      supportingInfo: [{ reference: options().riskAssessmentReference }],
      addresses: [{ reference: 'Condition/dm' }],
      identifier: [{ system: DEFAULT_IDENTIFIER_SYSTEM, value: p.identifier.value }],
      meta: { security: [{ code: 'AIAST' }] },
    });
    expect(cp.activity![0].detail).toMatchObject({
      kind: 'ServiceRequest',
      status: 'not-started',
      instantiatesCanonical: [`${BASE}hba1c-every-3-months|1.0.0`],
      code: { coding: [{ system: 'http://snomed.info/sct', code: '43396009' }, { system: 'http://loinc.org', code: '4548-4' }] },
      scheduledTiming: { repeat: { frequency: 1, period: 3, periodUnit: 'mo' } },
    });
    expect(errors(cp)).toEqual([]);
    expect(errors(p.provenance)).toEqual([]);
    expect(p.provenance).toMatchObject({ policy: [cp.instantiatesCanonical![0]], agent: [{ who: { reference: DEVICE } }], entity: [{ role: 'source', what: { reference: options().riskAssessmentReference } }] });
    expect(extensionProblems(cp.extension![0], extensionDefinition('careplan-proposal'))).toEqual([]);
    expect(p.identifier.value).toBe(carePlanIdentifierValue('diabetes-progression', '1.0.0', 'p1', AS_OF, cp.instantiatesCanonical![0]));
    // deterministic: same inputs, same resources
    expect(applyDiabetes()()).toEqual(p);
  });

  it('acts on observed values only, with their units: a lower band, normal or imputed values propose less', () => {
    expect(activityUrls(applyDiabetes({ band: 'moderate' })())).toEqual(['dietitian-referral', 'lipid-therapy-review', 'blood-pressure-review']);
    const normal = applyDiabetes({}, { bmi: { value: 24, unit: 'kg/m2' }, ldl: { value: 159.9, unit: 'mg/dL' }, map: { value: 106.9, unit: 'mm[Hg]' } })();
    expect(activityUrls(normal)).toEqual(['hba1c-every-3-months']);
    expect(normal.notApplicable).toEqual(['dietitian', 'lipids', 'blood-pressure']);
    // LDL in another unit never triggers the mg/dL threshold
    expect(activityUrls(applyDiabetes({}, { ldl: { value: 171, unit: 'mmol/L' } })())).not.toContain('lipid-therapy-review');
    // an imputed input is absent from the context (buildAssessmentContext)
    const context = buildAssessmentContext({
      prediction: { modelId: 'diabetes-progression', modelVersion: '1.0.0', probability: 0.4, band: 'moderate' },
      asOf: AS_OF,
      row: { columns: ['bmi', 'ldl'], imputed: [false, true], raw: { bmi: 33, ldl: null, sbp: 150, dbp: 95 } },
      units: { bmi: 'kg/m2', ldl: 'mg/dL', sbp: 'mm[Hg]', dbp: 'mm[Hg]' },
    });
    expect(context.features).toEqual({ bmi: { value: 33, unit: 'kg/m2' }, sbp: { value: 150, unit: 'mm[Hg]' }, dbp: { value: 95, unit: 'mm[Hg]' } });
    expect(context.imputed).toEqual(['ldl']);
    expect(activityUrls(applyPlanDefinition(diabetes.planDefinitions[0], diabetes.activityDefinitions, context, options()))).toEqual(['dietitian-referral']);
  });

  it('leaves out what the patient already has and says why, in a note and in the extension', () => {
    const existing = {
      observations: [hba1cResult('a1c-old', '2025-01-15'), hba1cResult('a1c', '2025-05-20')],
      serviceRequests: [serviceRequest('sr-diet', '103699006')],
      carePlans: [activeCarePlan('cp-lipids', '182836005')],
      procedures: [procedure('bp', '46973005', '2025-05-02')],
    };
    const p = applyDiabetes()(options({ existing }));
    expect(p.omitted.map((o) => [o.actionId, o.reason, o.evidence])).toEqual([
      ['hba1c', 'recent-result', 'Observation/a1c'],
      ['dietitian', 'already-requested', 'ServiceRequest/sr-diet'],
      ['lipids', 'already-planned', 'CarePlan/cp-lipids'],
      ['blood-pressure', 'recently-done', 'Procedure/bp'],
    ]);
    expect(p.carePlan).toBeUndefined(); // nothing left to propose
    const some = applyDiabetes()(options({ existing: { observations: [hba1cResult('a1c', '2025-05-20')] } }));
    expect(activityUrls(some)).toEqual(['dietitian-referral', 'lipid-therapy-review', 'blood-pressure-review']);
    expect(some.carePlan!.note![0].text).toBe('Not proposed because the patient already has them: HbA1c every 3 months (a recent result exists: Observation/a1c).');
    const omitted = some.carePlan!.extension![0].extension!.filter((e) => e.url === 'omittedActivity');
    expect(omitted).toHaveLength(1);
    expect(errors(some.carePlan)).toEqual([]);
  });

  it('proposes again when what exists is too old, not active, after as-of or another patient\'s', () => {
    const existing = {
      observations: [hba1cResult('old', '2025-03-29'), hba1cResult('later', '2025-07-01'), hba1cResult('prelim', '2025-06-01', 'preliminary')],
      serviceRequests: [serviceRequest('done', '103699006', 'completed'), { ...serviceRequest('other', '103699006'), subject: { reference: 'Patient/p2' } }],
      carePlans: [activeCarePlan('stopped', '182836005', 'cancelled'), activeCarePlan('draft', '182836005', 'not-started', 'draft')],
      procedures: [procedure('bp-old', '46973005', '2025-03-01')],
    };
    expect(applyDiabetes()(options({ existing })).omitted).toEqual([]);
  });

  it('orders by what clinicians accepted for similar patients (same model and band), never above priority', () => {
    let n = 0;
    const history = (status: CarePlan['status'], keep: string[], band = 'high', supersededBy = false): CarePlan => {
      const base = applyDiabetes({ band: band as 'high' })(options({ patientId: `h${n++}` })).carePlan!;
      return {
        ...base,
        status,
        extension: supersededBy ? [{ ...base.extension![0], extension: [...base.extension![0].extension!, { url: 'supersededBy', valueIdentifier: { value: 'x' } }] }] : base.extension,
        activity: base.activity!.filter((a) => keep.some((k) => a.detail!.instantiatesCanonical![0].includes(k))),
      };
    };
    const past = [
      history('active', ['blood-pressure-review', 'dietitian-referral']),
      history('completed', ['blood-pressure-review']),
      history('revoked', []), // a clinician rejected the whole plan
      history('draft', []), // undecided: no evidence
      history('revoked', [], 'high', true), // revoked by the adapter itself: no evidence
      history('active', ['hba1c-every-3-months'], 'moderate'), // another band: not similar
    ];
    const stats = acceptanceByActivity(past, { modelId: 'diabetes-progression', band: 'high', identifierSystem: DEFAULT_IDENTIFIER_SYSTEM });
    expect(stats.get(`${BASE}blood-pressure-review`)).toEqual({ accepted: 2, decided: 3, score: 0.6 });
    expect(stats.get(`${BASE}hba1c-every-3-months`)).toEqual({ accepted: 0, decided: 3, score: 0.2 });
    const p = applyDiabetes()(options({ history: past }));
    // 0.6, 0.4, then 0.2 twice: ties keep the plan definition's order
    expect(activityUrls(p)).toEqual(['blood-pressure-review', 'dietitian-referral', 'hba1c-every-3-months', 'lipid-therapy-review']);
    expect(p.carePlan!.note!.at(-1)!.text).toBe(
      "Order: priority, then acceptance of this adapter's earlier proposals for high-risk diabetes-progression patients on this server " +
        '(Blood-pressure review accepted 2 of 3; Dietitian referral accepted 1 of 3; HbA1c every 3 months accepted 0 of 3; ' +
        "Lipid-lowering therapy review accepted 0 of 3), then the plan definition's order.",
    );
  });

  it('says so when the acceptance of earlier proposals could not be read, rather than "none decided yet"', () => {
    const p = applyDiabetes()(options({ acceptanceUnavailable: true }));
    expect(activityUrls(p)).toEqual(['hba1c-every-3-months', 'dietitian-referral', 'lipid-therapy-review', 'blood-pressure-review']);
    expect(p.carePlan!.note!.at(-1)!.text).toBe(
      "Order: priority, then the plan definition's order (the acceptance of this adapter's earlier proposals is not used: this server does not search CarePlans across patients).",
    );
    expect(applyDiabetes()(options()).carePlan!.note!.at(-1)!.text).toMatch(/\(none decided yet\)/);
  });
});

describe('applyPlanDefinition: curb65 (BTS site of care)', () => {
  const apply = (score: number, history: CarePlan[] = []) =>
    applyPlanDefinition(curb65.planDefinitions[0], curb65.activityDefinitions, curb65Context(score), options({ addresses: [], history }));
  it('score 0-1 home, 2 short stay or supervised outpatient, 3 hospital, 4-5 hospital and ICU assessment', () => {
    expect([0, 1, 2, 3, 4, 5].map((s) => activityUrls(apply(s)))).toEqual([
      ['pneumonia-home-treatment'],
      ['pneumonia-home-treatment'],
      ['pneumonia-short-stay-or-supervised-outpatient'],
      ['pneumonia-hospital-care'],
      ['pneumonia-hospital-care', 'pneumonia-icu-assessment'],
      ['pneumonia-hospital-care', 'pneumonia-icu-assessment'],
    ]);
    const cp = apply(5).carePlan!;
    expect(cp.addresses).toBeUndefined();
    expect(errors(cp)).toEqual([]);
  });

  it('an urgent action stays above a routine one whatever the acceptance', () => {
    const p = apply(4);
    expect(p.proposed.map((a) => a.priority)).toEqual(['urgent', 'urgent']);
  });
});

describe('content hash', () => {
  it('ignores id, meta and the rewritten RiskAssessment reference, and changes with any edit', () => {
    const cp = applyDiabetes()().carePlan!;
    const stored = cp.extension!.find((e) => e.url === CAREPLAN_PROPOSAL_EXTENSION_URL)!.extension!.find((e) => e.url === 'contentHash')!.valueString;
    const fromServer = { ...cp, id: 'x1', meta: { versionId: '1', lastUpdated: '2025-07-01T00:00:00Z', security: cp.meta!.security }, supportingInfo: [{ reference: 'RiskAssessment/9' }] };
    expect(carePlanContentHash(fromServer)).toBe(stored);
    expect(carePlanContentHash({ ...fromServer, note: [...fromServer.note!, { text: 'Discussed with patient' }] })).not.toBe(stored);
    expect(carePlanContentHash({ ...fromServer, activity: fromServer.activity!.slice(1) })).not.toBe(stored);
    expect(carePlanContentHash({ ...fromServer, period: { start: '2025-07-02' } })).not.toBe(stored);
  });
});

const synthea = haveSynthea();
(synthea ? describe : describe.skip)('behaviour-aware proposals on Synthea records', () => {
  it('an HbA1c within 3 months of as-of is not proposed again; one older than that is', () => {
    const DAY = 86_400_000;
    // a patient with an HbA1c followed by none for 120 days
    const found = syntheaFiles()
      .flatMap((f) => syntheaPatient(f) ?? [])
      .map((p) => {
        const a1c = p.byType('Observation').filter((o) => o.code.coding?.some((c) => c.code === '4548-4'));
        const times = a1c.map((o) => Date.parse(o.effectiveDateTime!)).sort((x, y) => x - y);
        const i = times.findIndex((t, k) => times[k + 1] === undefined || times[k + 1] - t > 120 * DAY);
        return i < 0 ? undefined : { p, at: times[i], a1c };
      })
      .find((x) => x !== undefined)!;
    expect(found).toBeDefined();
    const { p, at } = found;
    const existing = { observations: p.byType('Observation'), procedures: p.byType('Procedure'), carePlans: p.byType('CarePlan') };
    const apply = (asOf: Date) =>
      applyPlanDefinition(diabetes.planDefinitions[0], diabetes.activityDefinitions, diabetesContext({ asOf: asOf.toISOString() }), options({ patientId: p.patient.id!, asOf, existing }));
    const soon = apply(new Date(at + 30 * DAY));
    const hba1c = soon.omitted.find((o) => o.actionId === 'hba1c')!;
    expect(hba1c.reason).toBe('recent-result');
    expect(p.byType('Observation').find((o) => `Observation/${o.id}` === hba1c.evidence)!.code.coding![0].code).toBe('4548-4');
    expect(activityUrls(soon)).not.toContain('hba1c-every-3-months');
    const later = apply(new Date(at + 120 * DAY));
    expect(later.omitted.find((o) => o.actionId === 'hba1c')).toBeUndefined();
    expect(activityUrls(later)).toContain('hba1c-every-3-months');
    expect(errors(later.carePlan)).toEqual([]);
  });
});
