import type { Resource } from '@medplum/fhirtypes';
import { ensureR4Definitions } from '../server/definitions.js';
import { validationIssues } from '../server/repository.js';
import type { Prediction } from '../core/types.js';
import { assessmentIdentifierValue, DEFAULT_IDENTIFIER_SYSTEM, stableUuid } from './identifiers.js';
import { buildTransactionBundle, planAssessment } from './plan.js';
import { lookbackStart } from '../core/time.js';
import { buildDevice, buildRiskAssessment, type WritebackModel } from './resources.js';

const model: WritebackModel = {
  id: 'diabetes-progression',
  version: '1.0.0',
  name: 'Diabetes progression',
  outcome: { coding: [{ system: 'http://snomed.info/sct', code: '73211009', display: 'Diabetes mellitus' }], text: 'Progression > 140 at 1 year' },
  horizon: { value: 1, unit: 'a' },
};
const asOf = new Date('2025-06-30T00:00:00Z');
const prediction: Prediction = {
  patientId: 'p1',
  modelId: model.id,
  modelVersion: model.version,
  probability: 0.73456789,
  band: 'high',
  explanation: [{ featureId: 'glucose', contribution: 0.8 }, { featureId: 'bmi', contribution: -0.2 }],
};

function plan() {
  return planAssessment(
    {
      model,
      prediction,
      patientId: 'p1',
      asOf,
      basis: ['Observation/o1', 'Observation/o2'],
      deviceReference: 'Device/d1',
      identifierSystem: DEFAULT_IDENTIFIER_SYSTEM,
    },
    new Date('2025-07-01T02:00:00Z'),
  );
}

describe('write plan', () => {
  beforeAll(() => ensureR4Definitions());

  it('builds a RiskAssessment with the conventions of DESIGN.md', () => {
    const ra = plan().riskAssessment;
    expect(ra.status).toBe('final');
    expect(ra.subject.reference).toBe('Patient/p1');
    expect(ra.occurrenceDateTime).toBe(asOf.toISOString());
    expect(ra.method?.coding?.[0]).toMatchObject({ code: model.id, version: model.version });
    expect(ra.performer?.reference).toBe('Device/d1');
    expect(ra.basis?.map((b) => b.reference)).toEqual(['Observation/o1', 'Observation/o2']);
    const p = ra.prediction![0];
    expect(p.probabilityDecimal).toBeCloseTo(0.7345679, 7);
    expect(p.qualitativeRisk?.coding?.[0]).toMatchObject({ system: 'http://terminology.hl7.org/CodeSystem/risk-probability', code: 'high' });
    expect(p.whenPeriod).toEqual({ start: '2025-06-30T00:00:00.000Z', end: '2026-06-30T00:00:00.000Z' });
    expect(p.rationale).toContain('glucose +0.800');
    expect(ra.meta?.security?.[0].code).toBe('AIAST');
  });

  it('gives the same identifier for the same model, version, patient and as-of, and another otherwise', () => {
    const a = assessmentIdentifierValue('m', '1.0.0', 'p1', asOf);
    expect(assessmentIdentifierValue('m', '1.0.0', 'p1', new Date(asOf.getTime()))).toBe(a);
    expect(assessmentIdentifierValue('m', '1.0.1', 'p1', asOf)).not.toBe(a);
    expect(assessmentIdentifierValue('m', '1.0.0', 'p2', asOf)).not.toBe(a);
    expect(assessmentIdentifierValue('m', '1.0.0', 'p1', new Date(asOf.getTime() + 1))).not.toBe(a);
    expect(stableUuid('x')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('puts each assessment and its Provenance in one transaction, the assessment as a conditional create', () => {
    const p = plan();
    const bundle = buildTransactionBundle([p]);
    expect(bundle.type).toBe('transaction');
    expect(bundle.entry).toHaveLength(2);
    expect(bundle.entry![0].request).toEqual({
      method: 'POST',
      url: 'RiskAssessment',
      ifNoneExist: `identifier=${DEFAULT_IDENTIFIER_SYSTEM}|${p.identifier.value}`,
    });
    expect(bundle.entry![1].request).toEqual({ method: 'PUT', url: `Provenance/ra-${p.identifier.value}` });
    const prov = bundle.entry![1].resource as fhir4.Provenance;
    expect(prov.target[0].reference).toBe(bundle.entry![0].fullUrl);
    expect(prov.agent[0].who?.reference).toBe('Device/d1');
    // The model is the author of the assessment's content (as for CarePlan proposals and in HL7 AI
    // Transparency on FHIR), not an "assembler", which by definition authors none of it.
    expect(prov.agent[0].type?.coding).toEqual([{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'author', display: 'Author' }]);
    expect(prov.entity?.map((e) => e.what.reference)).toEqual(['Observation/o1', 'Observation/o2']);
  });

  it('validates every written resource against the R4 base StructureDefinitions', () => {
    const p = plan();
    for (const resource of [p.riskAssessment, { ...p.provenance, target: [{ reference: 'RiskAssessment/x' }] }, buildDevice(model, DEFAULT_IDENTIFIER_SYSTEM)]) {
      expect(validationIssues(resource as unknown as Resource).filter((i) => i.severity === 'error')).toEqual([]);
    }
    // The validator is live: a RiskAssessment without its required subject fails.
    const { subject: _subject, ...noSubject } = p.riskAssessment;
    expect(validationIssues(noSubject as unknown as Resource).length).toBeGreaterThan(0);
  });

  it('ends the horizon by the same month-end rule the lookback windows use', () => {
    const whenEnd = (horizon: WritebackModel['horizon'], at: Date) =>
      buildRiskAssessment({ model: { ...model, horizon }, prediction, patientId: 'p1', asOf: at, basis: [], deviceReference: 'Device/d1', identifierSystem: DEFAULT_IDENTIFIER_SYSTEM })
        .prediction![0].whenPeriod!.end;
    expect(whenEnd({ value: 30, unit: 'd' }, asOf)).toBe('2025-07-30T00:00:00.000Z');
    expect(whenEnd({ value: 6, unit: 'mo' }, asOf)).toBe('2025-12-30T00:00:00.000Z');
    // 31 January + 1 month is the end of February (clamped), not 2 or 3 March; a P1M lookback from
    // that end reaches back to the 29th, as core/time's one rule says for both.
    const end = whenEnd({ value: 1, unit: 'mo' }, new Date('2024-01-31T08:00:00Z'));
    expect(end).toBe('2024-02-29T08:00:00.000Z');
    expect(lookbackStart('P1M', new Date(end!)).toISOString()).toBe('2024-01-29T08:00:00.000Z');
    expect(() => whenEnd({ value: 1, unit: 'fortnight' }, asOf)).toThrow(/unsupported time unit/);
  });
});
