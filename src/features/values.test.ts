import fhirpath from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4';
import { soleValueQuantity } from './values.js';

describe('soleValueQuantity', () => {
  const byPath = {
    Observation: fhirpath.compile('value', r4, { resolveInternalTypes: false }),
    component: fhirpath.compile({ base: 'Observation.component', expression: 'value' }, r4, { resolveInternalTypes: false }),
  };
  const quantities: unknown[] = [{}, { value: 1 }, { value: 1, extension: [] }, { id: 'x' }, { value: '1' }, { value: null }, { value: 1, comparator: '<', code: 'mg/dL' }];

  it('is exactly the Quantity FHIRPath `value` gives when valueQuantity is the only value', () => {
    for (const q of quantities) {
      for (const [base, node] of [
        ['Observation', { resourceType: 'Observation', status: 'final', code: {}, valueQuantity: q }],
        ['component', { code: {}, valueQuantity: q }],
      ] as const) {
        const res = byPath[base](node) as { data: unknown }[];
        expect(res).toHaveLength(1);
        expect(fhirpath.types(res)).toEqual(['FHIR.Quantity']);
        expect(soleValueQuantity(node)).toBe(res[0].data);
      }
    }
  });

  it('leaves every other shape to FHIRPath', () => {
    const q = { value: 1 };
    for (const node of [
      { valueString: 'x' },
      { valueQuantity: q, valueString: 'x' },
      { valueQuantity: q, _valueQuantity: { id: 'a' } },
      { valueQuantity: [q] },
      { valueQuantity: null },
      { valueQuantity: 'x' },
      { value: 1 },
      {},
    ]) {
      expect(soleValueQuantity(node)).toBeUndefined();
    }
  });
});
