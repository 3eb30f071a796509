import type { Resource } from '@medplum/fhirtypes';
import type { CarePlan, RiskAssessment } from 'fhir/r4.js';
import { validationIssues } from '../server/repository.js';
import { carePlanNarrative, riskAssessmentNarrative } from './narrative.js';

const ra: RiskAssessment = {
  resourceType: 'RiskAssessment',
  status: 'preliminary',
  subject: { reference: 'Patient/p1' },
  occurrenceDateTime: '2025-06-30T00:00:00.000Z',
  code: { text: 'Diabetes progression risk assessment' },
  performer: { reference: 'Device/d1', display: 'diabetes-progression 1.0.0' },
  prediction: [
    {
      outcome: { text: 'Progression > 140 at 1 year' },
      probabilityDecimal: 0.7345679,
      qualitativeRisk: { coding: [{ code: 'high' }] },
      whenPeriod: { start: '2025-06-30T00:00:00.000Z', end: '2026-06-30T00:00:00.000Z' },
      rationale: 'glucose 182 mg/dL raises the risk (+0.21 log-odds) <script>alert(1)</script> & more',
    },
  ],
  note: [{ text: '2 of 10 inputs imputed (hdl, ldl).' }],
};

describe('narratives of written resources', () => {
  it('a RiskAssessment says its risk, window, rationale, notes and status, every text escaped, as valid R4 XHTML', () => {
    const text = riskAssessmentNarrative(ra);
    expect(text.status).toBe('generated');
    expect(text.div).toMatch(/^<div xmlns="http:\/\/www\.w3\.org\/1999\/xhtml">/);
    expect(text.div).toContain('<b>Diabetes progression risk assessment</b>: high risk (73.5 %), from 2025-06-30 to 2026-06-30.');
    expect(text.div).toContain('<p>Outcome: Progression &gt; 140 at 1 year</p>');
    expect(text.div).toContain('&lt;script&gt;alert(1)&lt;/script&gt; &amp; more');
    expect(text.div).not.toContain('<script>');
    expect(text.div).toContain('2 of 10 inputs imputed (hdl, ldl).');
    expect(text.div).toContain('Status preliminary, as of 2025-06-30, computed by the model diabetes-progression 1.0.0.');
    expect(validationIssues({ ...ra, text } as unknown as Resource).filter((i) => i.severity === 'error')).toEqual([]);
  });

  it('a CarePlan proposal lists its activities and notes', () => {
    const carePlan: CarePlan = {
      resourceType: 'CarePlan',
      status: 'revoked',
      intent: 'proposal',
      title: 'Diabetes follow-up',
      subject: { reference: 'Patient/p1' },
      description: 'Proposed by the diabetes-progression 1.0.0 model for a high risk.',
      activity: [
        { detail: { status: 'not-started', code: { coding: [{ system: 'http://loinc.org', code: '4548-4', display: 'Hemoglobin A1c' }] }, description: 'every 3 months' } },
        { detail: { status: 'not-started', code: { text: 'Dietitian referral' } } },
      ],
      note: [{ text: 'Not proposed because the patient already has them: lipid panel (result within 12 months).' }],
    };
    const text = carePlanNarrative(carePlan);
    expect(text.div).toContain('<b>Diabetes follow-up</b> (revoked proposal)');
    expect(text.div).toContain('<ul><li>Hemoglobin A1c: every 3 months (not-started)</li><li>Dietitian referral (not-started)</li></ul>');
    expect(text.div).toContain('Not proposed because the patient already has them');
    expect(validationIssues({ ...carePlan, text } as unknown as Resource).filter((i) => i.severity === 'error')).toEqual([]);
  });
});
