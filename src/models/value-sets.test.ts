import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ValueSet } from 'fhir/r4.js';
import { ensureR4Definitions } from '../server/definitions.js';
import { validationIssues } from '../server/repository.js';
import { codeMatches, loadValueSets, valueSetCodes } from './value-sets.js';

const vs = (compose: ValueSet['compose'], url = 'https://example.org/vs'): ValueSet => ({ resourceType: 'ValueSet', url, status: 'active', compose });

describe('value sets in the repository', () => {
  beforeAll(() => ensureR4Definitions());

  it('loads mappings/valuesets, each a valid R4 ValueSet, by url and url|version', () => {
    const sets = loadValueSets();
    const dm = sets.get('https://fhir-ml-adapter.dev/fhir/ValueSet/diabetes-mellitus')!;
    expect(sets.get('https://fhir-ml-adapter.dev/fhir/ValueSet/diabetes-mellitus|1.0.0')).toBe(dm);
    expect(validationIssues(dm as never).filter((i) => i.severity === 'error')).toEqual([]);
    const codes = valueSetCodes(dm);
    expect(codes.some((c) => c.code === '44054006')).toBe(true);
    expect(codes.some((c) => c.code === '15777000')).toBe(false); // prediabetes is not diabetes
  });

  it('matches ICD-10 descendants lexically, never across systems', () => {
    const e11 = { system: 'http://hl7.org/fhir/sid/icd-10-cm', code: 'E11', descendants: true };
    expect(codeMatches({ system: e11.system, code: 'E11.9' }, e11)).toBe(true);
    expect(codeMatches({ system: e11.system, code: 'E10.9' }, e11)).toBe(false);
    expect(codeMatches({ system: 'http://hl7.org/fhir/sid/icd-10', code: 'E11.9' }, e11)).toBe(false);
    expect(codeMatches({ system: 'http://snomed.info/sct', code: '44054006' }, { system: 'http://snomed.info/sct', code: '4405400' })).toBe(false);
  });

  it('refuses what it cannot expand without a terminology server, naming the element', () => {
    expect(() => valueSetCodes(vs({ include: [{ system: 'http://snomed.info/sct', filter: [{ property: 'concept', op: 'is-a', value: '73211009' }] }] }))).toThrow(
      /compose.include\[0\].filter\[0\]: is-a on http:\/\/snomed.info\/sct needs a terminology server/,
    );
    const icd = 'http://hl7.org/fhir/sid/icd-10';
    expect(() => valueSetCodes(vs({ include: [{ system: icd, filter: [{ property: 'concept', op: 'is-a', value: 'E10' }, { property: 'concept', op: 'is-a', value: 'E11' }] }] }))).toThrow(
      /each filter in its own include/,
    );
    expect(() => valueSetCodes(vs({ include: [{ valueSet: ['https://example.org/other'] }] }))).toThrow(/imported value sets are not supported/);
    expect(valueSetCodes(vs({ include: [{ system: icd, concept: [{ code: 'A' }, { code: 'B' }] }], exclude: [{ system: icd, concept: [{ code: 'B' }] }] }))).toEqual([
      { system: icd, code: 'A', display: undefined },
    ]);
  });

  it('refuses a folder with a duplicate url or a file that is not a ValueSet', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fhir-ml-vs-'));
    try {
      const one = vs({ include: [{ system: 'http://snomed.info/sct', concept: [{ code: '1' }] }] });
      await writeFile(join(dir, 'a.json'), JSON.stringify(one));
      await writeFile(join(dir, 'b.json'), JSON.stringify(one));
      expect(() => loadValueSets(dir)).toThrow(/b.json: value set https:\/\/example.org\/vs is defined twice/);
      await writeFile(join(dir, 'b.json'), JSON.stringify({ resourceType: 'Patient' }));
      expect(() => loadValueSets(dir)).toThrow(/b.json: not a ValueSet with a url/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
