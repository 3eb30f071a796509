import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Resource } from '@medplum/fhirtypes';
import type { StructureDefinition } from 'fhir/r4.js';
import type { Prediction } from '../core/types.js';
import type { Applicability } from '../models/applicability.js';
import { ensureR4Definitions } from '../server/definitions.js';
import { validationIssues } from '../server/repository.js';
import { APPLICABILITY_EXTENSION_URL, applicabilityExtension, EXTENSION_DEFINITIONS_DIR, withApplicability } from './extensions.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from './identifiers.js';
import { planAssessment } from './plan.js';
import { extensionDefinition, extensionProblems } from './testing/extension-check.js';

const errors = (r: unknown) => validationIssues(r as Resource).filter((i) => i.severity === 'error' || i.severity === 'fatal');

const applicability: Applicability = {
  inputs: 10,
  imputed: ['ldl', 'hdl', 'tc_hdl_ratio'],
  outOfRange: [{ featureId: 'glucose', side: 'above', value: 8.0357, min: -2.989362, max: 2.879022, measured: { value: 182, min: 58, max: 124, unit: 'mg/dL' } }],
  rangesAssessed: true,
  ood: { assessed: true, error: 0.4213, threshold: 1.033366, flagged: false },
  decision: 'score-preliminary',
  triggers: [{ reason: 'input-out-of-range', action: 'score-preliminary', detail: 'glucose' }],
  text: 'Applicability: 3 of 10 inputs imputed (ldl, hdl, tc_hdl_ratio); ... Policy: written as preliminary (input-out-of-range).',
};

function riskAssessment() {
  const prediction: Prediction = { patientId: 'p1', modelId: 'diabetes-progression', modelVersion: '1.0.0', probability: 0.71, band: 'high' };
  return planAssessment(
    {
      model: { id: 'diabetes-progression', version: '1.0.0', outcome: { coding: [{ system: 'http://snomed.info/sct', code: '73211009' }] }, horizon: { value: 1, unit: 'a' } },
      prediction,
      patientId: 'p1',
      asOf: new Date('2025-06-30T00:00:00Z'),
      basis: ['Observation/o1'],
      deviceReference: 'Device/d1',
      identifierSystem: DEFAULT_IDENTIFIER_SYSTEM,
    },
    new Date('2025-07-01T00:00:00Z'),
  ).riskAssessment;
}

describe('extensions of the adapter', () => {
  beforeAll(() => ensureR4Definitions());

  it('each StructureDefinition in mappings/extensions is a valid R4 resource under the adapter base URL', () => {
    const files = readdirSync(EXTENSION_DEFINITIONS_DIR).filter((f) => f.endsWith('.json'));
    expect(files.sort()).toEqual(['activity-satisfied-within.json', 'careplan-proposal.json', 'prediction-applicability.json']);
    for (const f of files) {
      const sd = JSON.parse(readFileSync(join(EXTENSION_DEFINITIONS_DIR, f), 'utf8')) as StructureDefinition;
      expect(errors(sd)).toEqual([]);
      expect(sd.url).toBe(`https://fhir-ml-adapter.dev/fhir/StructureDefinition/${f.replace('.json', '')}`);
      expect(sd.differential?.element.find((e) => e.id === 'Extension.url')?.fixedUri).toBe(sd.url);
    }
  });

  it('the applicability extension conforms to its definition', () => {
    const sd = extensionDefinition('prediction-applicability');
    expect(extensionProblems(applicabilityExtension(applicability), sd)).toEqual([]);
    const noOod = applicabilityExtension({ ...applicability, outOfRange: [], imputed: [], ood: { assessed: false } });
    expect(extensionProblems(noOod, sd)).toEqual([]);
    // the check can fail
    const bad = applicabilityExtension(applicability);
    bad.extension!.push({ url: 'colour', valueString: 'red' }, { url: 'decision', valueCode: 'score' });
    expect(extensionProblems(bad, sd)).toEqual(['Extension: decision at most 1', 'Extension: sub-extension colour is not defined (slicing is closed)']);
  });

  it('withApplicability puts the extension on the prediction, the sentence in a note, and the status the policy decides; the result validates', () => {
    const ra = withApplicability(riskAssessment(), applicability);
    expect(ra.status).toBe('preliminary');
    expect(ra.note).toEqual([{ text: applicability.text }]);
    const ext = ra.prediction![0].extension!.find((e) => e.url === APPLICABILITY_EXTENSION_URL)!;
    expect(ext.extension!.filter((e) => e.url === 'imputedInput').map((e) => e.valueString)).toEqual(['ldl', 'hdl', 'tc_hdl_ratio']);
    const oor = ext.extension!.find((e) => e.url === 'outOfRangeInput')!;
    expect(oor.extension!.find((e) => e.url === 'measured')!.valueQuantity).toEqual({ value: 182, unit: 'mg/dL', system: 'http://unitsofmeasure.org', code: 'mg/dL' });
    expect(errors(ra)).toEqual([]);
    // applying twice replaces, never duplicates, the extension
    expect(withApplicability(ra, { ...applicability, decision: 'score' }).prediction![0].extension!.filter((e) => e.url === APPLICABILITY_EXTENSION_URL)).toHaveLength(1);
    expect(withApplicability(riskAssessment(), { ...applicability, decision: 'score' }).status).toBe('final');
  });

  it('refuses to annotate a score the policy skips', () => {
    expect(() => withApplicability(riskAssessment(), { ...applicability, decision: 'skip', skipReason: 'out-of-distribution' })).toThrow(/must not be written/);
  });
});
