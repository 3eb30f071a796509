import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AdapterError } from '../../core/errors.js';
import { loadMapping, parseMapping, validateMappingsDir } from './load.js';
import { inputColumns, lookbackStart, resourceNeeds } from './queries.js';

const DIABETES = 'mappings/diabetes-progression.yaml';
const CURB65 = 'mappings/curb65.yaml';

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    expect(AdapterError.is(e, 'mapping-invalid')).toBe(true);
    return ((e as AdapterError).details?.problems as string[]) ?? [];
  }
  throw new Error('expected a mapping-invalid error');
}

const base = (features: string, top = '') => `id: t\nversion: 1.0.0\nmodel: t\n${top}features:\n${features}`;

describe('repository mappings', () => {
  test('diabetes-progression has the model columns in order', () => {
    const m = loadMapping(DIABETES);
    expect(m.version).toBe('1.1.0');
    expect(m.model).toBe('diabetes-progression');
    expect(inputColumns(m)).toEqual(['age', 'sex=male', 'bmi', 'map', 'tc', 'ldl', 'hdl', 'tc_hdl_ratio', 'ln_tg', 'glucose']);
    const std = m.features.filter((f) => f.input && !f.oneHot);
    for (const f of std) expect(f.transforms.some((t) => typeof t === 'object' && 'standardize' in t)).toBe(true);
  });

  test('diabetes-progression standardisation matches the model card', () => {
    const card = JSON.parse(readFileSync('models/diabetes-progression/model-card.json', 'utf8')) as {
      featureIds: string[];
      preprocessing: { columns: Record<string, { mean: number; std: number } | null> };
    };
    const m = loadMapping(DIABETES);
    expect(inputColumns(m)).toEqual(card.featureIds);
    for (const f of m.features.filter((x) => x.input)) {
      const column = f.oneHot ? `${f.id}=${f.oneHot[0]}` : f.id;
      const std = f.transforms.find((t) => typeof t === 'object' && 'standardize' in t) as { standardize: { mean: number; std: number } } | undefined;
      expect([column, std?.standardize ?? null]).toEqual([column, card.preprocessing.columns[column]]);
    }
  });

  test('curb65 columns, gate and fetch helpers', () => {
    const m = loadMapping(CURB65);
    expect(inputColumns(m)).toEqual(['confusion', 'urea', 'resp_rate', 'sbp', 'dbp', 'age']);
    expect(m.requires).toEqual({ feature: 'pneumonia_on_imaging', reason: 'no-pneumonia-on-chest-imaging' });
    const asOf = new Date('2024-03-10T12:00:00Z');
    expect(lookbackStart(m, asOf)?.toISOString()).toBe('2024-03-07T12:00:00.000Z');
    const needs = resourceNeeds(m, asOf);
    expect(Object.keys(needs).sort()).toEqual(['DiagnosticReport', 'Observation']);
    expect(needs.DiagnosticReport).toEqual({ since: new Date('2024-03-07T12:00:00.000Z') });
  });

  test('the Observation search lists feature and panel codes once; nothing else is fetched', () => {
    const m = loadMapping(DIABETES);
    const asOf = new Date('2024-03-10T12:00:00Z');
    const needs = resourceNeeds(m, asOf);
    expect(Object.keys(needs)).toEqual(['Observation']);
    const codes = needs.Observation!.codes!.map((c) => c.code);
    expect(codes).toEqual(expect.arrayContaining(['39156-5', '29463-7', '8302-2', '8480-6', '8462-4', '85354-9', '55284-4', '2093-3', '14647-2', '15074-8', '2571-8']));
    expect(new Set(codes).size).toBe(codes.length);
    expect(needs.Observation!.since?.toISOString()).toBe('2022-03-10T12:00:00.000Z'); // the longest lookback, P2Y
  });

  test('validateMappingsDir accepts the repository mappings', () => {
    const files = validateMappingsDir('mappings');
    expect(files.map((f) => [path.basename(f.file), f.ok, f.errors, f.id])).toEqual([
      ['curb65.yaml', true, [], 'curb65'],
      ['diabetes-progression.yaml', true, [], 'diabetes-progression'],
    ]);
  });
});

describe('invalid mappings', () => {
  test('every problem at once, each naming the file and the field', () => {
    const file = 'fixtures/features/invalid-mapping.yaml';
    const problems = problemsOf(() => loadMapping(file));
    const expected = [
      `${file}: version: must be a semantic version such as 1.0.0`,
      `${file}: features[2].unit: "mg/dl/" is not a valid UCUM unit`,
      `${file}: features[5].lookbak: unknown key`,
      `${file}: features[5].id: duplicate feature id "age" (also features[0])`,
      `${file}: requires.feature: unknown feature "nowhere"`,
      `${file}: features[1].source.codes[0].unit: "mmol/L" cannot be converted to the feature unit "mg/dL" (mass <-> substance needs molarMass)`,
      `${file}: features[1].missing.strategy: mean needs a standardize transform (its mean) or a value`,
      `${file}: features[4].source.of[1]: unknown feature "ghost"`,
      `${file}: features[3].source.of: derived features form a cycle: loop_a -> loop_b -> loop_a`,
    ];
    for (const e of expected) expect(problems).toContain(e);
    // semantic checks run on the features that passed the schema (chol's bad unit is reported once)
    expect(problems.every((p) => p.startsWith(`${file}: `))).toBe(true);
  });

  test('the error message lists the problems too', () => {
    expect(() => parseMapping(base('  - id: a\n    source: { kind: patient-age }\n    unit: yr/\n    missing: { strategy: required }\n'), 'x.yaml')).toThrow(
      /x\.yaml: features\[0\]\.unit: "yr\/" is not a valid UCUM unit/,
    );
  });

  test('YAML syntax errors name the file', () => {
    const problems = problemsOf(() => parseMapping('id: [unclosed\n', 'bad.yaml'));
    expect(problems[0]).toMatch(/^bad\.yaml: \(root\): YAML: /);
  });

  test('semantic checks', () => {
    const cases: [string, string][] = [
      // lookback required for observation sources
      [base('  - id: x\n    source: { kind: observation, codes: [{ system: s, code: c }] }\n    unit: mg\n    missing: { strategy: required }\n'), 'features[0].lookback: is required for observation sources'],
      // log transform needs a positive plausible minimum
      [base('  - id: x\n    source: { kind: observation, codes: [{ system: s, code: c }] }\n    unit: mg\n    lookback: P1Y\n    missing: { strategy: required }\n    transforms: [log]\n'), 'features[0].transforms[0]: log needs plausible.min > 0 so every value it gets is positive'],
      // constant needs a value
      [base('  - id: x\n    source: { kind: patient-age }\n    missing: { strategy: constant }\n'), 'features[0].missing.value: is required with strategy constant'],
      // missing policy required on input features that can be missing
      [base('  - id: x\n    source: { kind: patient-age }\n'), 'features[0].missing: is required for input features that can be missing (strategy mean, constant or required)'],
      // non-input feature nobody uses
      [base('  - id: x\n    input: false\n    source: { kind: patient-age }\n  - id: y\n    source: { kind: patient-age }\n    missing: { strategy: required }\n'), 'features[0].input: feature "x" is not an input and no derived feature or requires uses it'],
      // arity
      [base('  - id: x\n    source: { kind: patient-age }\n    missing: { strategy: required }\n  - id: y\n    source: { kind: derived, op: ratio, of: [x] }\n    missing: { strategy: required }\n'), 'features[1].source.of: ratio takes 2 features, got 1'],
      // unknown source kind
      [base('  - id: x\n    source: { kind: lab }\n'), 'features[0].source.kind: Invalid discriminator value. Expected \'patient-age\' | \'patient-sex\' | \'observation\' | \'derived\' | \'report-finding\' | \'imaging\''],
      // minObservedFeatures larger than the inputs
      [base('  - id: x\n    source: { kind: patient-age }\n    missing: { strategy: required }\n', 'minObservedFeatures: 3\n'), 'minObservedFeatures: 3 is more than the 1 input features'],
      // bad FHIRPath
      [base('  - id: x\n    source: { kind: observation, codes: [{ system: s, code: c }], valuePath: "value.(" }\n    unit: mg\n    lookback: P1Y\n    missing: { strategy: required }\n'), 'features[0].source.valuePath: is not a valid FHIRPath expression'],
    ];
    for (const [text, msg] of cases) {
      const problems = problemsOf(() => parseMapping(text, 'm.yaml'));
      expect(problems.some((p) => p.startsWith(`m.yaml: ${msg}`))).toBe(true);
    }
  });

  test('one-hot and indicator columns', () => {
    const m = parseMapping(
      base(
        '  - id: sex\n    source: { kind: patient-sex }\n    oneHot: [male, female]\n' +
          '  - id: bmi\n    source: { kind: observation, codes: [{ system: s, code: c }] }\n    unit: kg/m2\n    lookback: P1Y\n    missing: { strategy: constant, value: 25, indicator: true }\n' +
          '  - id: age\n    source: { kind: patient-age }\n    missing: { strategy: required }\n',
      ),
      'm.yaml',
    );
    expect(inputColumns(m)).toEqual(['sex=male', 'sex=female', 'bmi', 'bmi__missing', 'age']);
  });

  test('validateMappingsDir reports per file; refuses a directory without mappings', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mappings-'));
    writeFileSync(path.join(dir, 'a.yaml'), readFileSync(DIABETES, 'utf8'));
    writeFileSync(path.join(dir, 'b.yaml'), readFileSync(DIABETES, 'utf8'));
    writeFileSync(path.join(dir, 'c.yaml'), base('  - id: x\n    source: { kind: patient-age }\n    unit: mg/dl/\n    colour: red\n'));
    const files = validateMappingsDir(dir);
    expect(files.map((f) => f.ok)).toEqual([true, false, false]);
    expect(files[1].errors[0]).toMatch(/b\.yaml: id: mapping id "diabetes-progression" is also used by .*a\.yaml/);
    expect(files[2].errors.length).toBeGreaterThanOrEqual(2);
    expect(files[2].errors.some((p) => p.includes('c.yaml: features[0].unit'))).toBe(true);
    const empty = mkdtempSync(path.join(tmpdir(), 'mappings-empty-'));
    expect(() => validateMappingsDir(empty)).toThrow(/no mapping files/);
  });
});
