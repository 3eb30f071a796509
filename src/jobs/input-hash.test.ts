import { decideWrite, inputHash, type ScoredInputs } from './input-hash.js';

const base: ScoredInputs = {
  modelId: 'diabetes-progression',
  modelVersion: '1.0.0',
  mappingVersion: '1.0.0',
  columns: ['age', 'bmi', 'glucose'],
  values: Float32Array.from([0.5, 1.25, -0.3]),
  imputed: [false, false, true],
};

test('the same inputs give the same hash; any change of value, imputation, column, model or mapping version changes it', () => {
  const h = inputHash(base);
  expect(h).toMatch(/^[0-9a-f]{64}$/);
  expect(inputHash({ ...base, values: [0.5, 1.25, -0.3] })).toBe(h); // doubles that are the same float32
  expect(inputHash({ ...base, values: Float32Array.from([0.5, 1.25, -0.31]) })).not.toBe(h);
  expect(inputHash({ ...base, imputed: [false, false, false] })).not.toBe(h);
  expect(inputHash({ ...base, columns: ['age', 'bmi', 'hba1c'] })).not.toBe(h);
  expect(inputHash({ ...base, modelVersion: '1.0.1' })).not.toBe(h);
  expect(inputHash({ ...base, mappingVersion: '1.1.0' })).not.toBe(h);
  // A shadow score is not the live one: going live writes a final RiskAssessment for unchanged inputs.
  expect(inputHash({ ...base, shadow: true })).not.toBe(h);
  expect(inputHash({ ...base, shadow: false })).toBe(h);
});

test('the resources a score used are part of its inputs: the same value from another resource is a change, their order is not', () => {
  const h = inputHash({ ...base, basis: ['Observation/glu-1', 'Observation/bmi-1'] });
  expect(inputHash({ ...base, basis: ['Observation/bmi-1', 'Observation/glu-1', 'Observation/glu-1'] })).toBe(h);
  // The glucose the last score used was deleted; an older one with the same value is used now.
  expect(inputHash({ ...base, basis: ['Observation/glu-0', 'Observation/bmi-1'] })).not.toBe(h);
  expect(inputHash({ ...base, basis: [] })).toBe(inputHash(base));
});

test('a vector whose parts disagree in length is refused', () => {
  expect(() => inputHash({ ...base, imputed: [false] })).toThrow(/3 columns, 3 values, 1 imputed/);
});

test('a new RiskAssessment is written unless the inputs and the model version are the ones last written', () => {
  const current = { modelVersion: '1.0.0', inputHash: inputHash(base) };
  expect(decideWrite(undefined, current)).toEqual({ write: true, reason: 'first-score' });
  expect(decideWrite({ modelVersion: '0.9.0', inputHash: current.inputHash }, current)).toEqual({ write: true, reason: 'model-version-changed' });
  expect(decideWrite({ modelVersion: '1.0.0', inputHash: null }, current)).toEqual({ write: true, reason: 'no-hash-recorded' });
  // A deleted or entered-in-error value changes the vector (it is gone, or imputed now): a new score.
  const afterDeletion = inputHash({ ...base, values: Float32Array.from([0.5, 0, -0.3]), imputed: [false, true, true] });
  expect(decideWrite({ modelVersion: '1.0.0', inputHash: current.inputHash }, { modelVersion: '1.0.0', inputHash: afterDeletion })).toEqual({ write: true, reason: 'inputs-changed' });
  expect(decideWrite({ modelVersion: '1.0.0', inputHash: current.inputHash }, current)).toEqual({ write: false, reason: 'unchanged' });
});
