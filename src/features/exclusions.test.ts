import { codeKey, hasCode } from './exclusions.js';

describe('hasCode', () => {
  /** The rule as a string match on `system|code`. */
  const byKey = (concept: { coding?: { system?: string; code?: string }[] } | undefined, keys: ReadonlySet<string>) =>
    !!concept?.coding?.some((c) => keys.has(codeKey(c)));

  it('matches exactly as the `system|code` key does, ambiguous bars and odd values included', () => {
    const keySets = [
      new Set(['http://loinc.org|2345-7', 'http://loinc.org|2339-0']),
      new Set(['a|b|c', '|x', 'y|', '|', 'nobar']),
      new Set<string>(),
    ];
    const codings: { system?: string; code?: string }[] = [
      { system: 'http://loinc.org', code: '2345-7' },
      { system: 'http://loinc.org', code: '2345' },
      { system: 'http://snomed.info/sct', code: '2345-7' },
      { system: 'a|b', code: 'c' },
      { system: 'a', code: 'b|c' },
      { code: 'x' },
      { system: 'y' },
      {},
      { system: 'nobar' },
      { system: 5 as unknown as string, code: '2345-7' },
    ];
    for (const keys of keySets) {
      for (const c of codings) {
        expect(hasCode({ coding: [c] }, keys)).toBe(byKey({ coding: [c] }, keys));
        expect(hasCode({ coding: [{ system: 'z', code: 'z' }, c] }, keys)).toBe(byKey({ coding: [{ system: 'z', code: 'z' }, c] }, keys));
      }
      expect(hasCode(undefined, keys)).toBe(false);
      expect(hasCode({}, keys)).toBe(false);
      expect(hasCode({ coding: [] }, keys)).toBe(false);
    }
  });

  it('sees keys added to a set after it was first used', () => {
    const keys = new Set(['http://loinc.org|1']);
    expect(hasCode({ coding: [{ system: 'http://loinc.org', code: '2' }] }, keys)).toBe(false);
    keys.add('http://loinc.org|2');
    expect(hasCode({ coding: [{ system: 'http://loinc.org', code: '2' }] }, keys)).toBe(true);
  });
});
