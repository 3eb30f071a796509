import { existsSync, readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { packagePath } from '../core/paths.js';
import { inputColumns } from '../features/index.js';
import { mappingSchema, type Mapping } from '../features/mapping/schema.js';
import { checkMappingAgainstCard, checkModelAgainstMapping } from './mapping-check.js';
import { modelCardSchema } from './model-card.js';

const card = modelCardSchema.parse(JSON.parse(readFileSync(packagePath('models', 'diabetes-progression', 'model-card.json'), 'utf8')));

function std(id: string) {
  const s = card.preprocessing.columns[id]!;
  return [{ standardize: { mean: s.mean, std: s.std } }];
}
const obs = (code: string) => ({ kind: 'observation' as const, codes: [{ system: 'http://loinc.org', code }] });

/** A mapping shaped like mappings/diabetes-progression.yaml (codes are placeholders). */
function diabetesMapping(): Mapping {
  return mappingSchema.parse({
    id: 'diabetes-progression',
    version: '1.0.0',
    model: 'diabetes-progression',
    features: [
      { id: 'age', source: { kind: 'patient-age' }, transforms: std('age') },
      { id: 'sex', source: { kind: 'patient-sex' }, oneHot: ['male'] },
      { id: 'bmi', source: obs('39156-5'), lookback: 'P2Y', transforms: std('bmi') },
      { id: 'sbp', source: obs('8480-6'), lookback: 'P2Y', input: false },
      { id: 'dbp', source: obs('8462-4'), lookback: 'P2Y', input: false },
      { id: 'map', source: { kind: 'derived', op: 'mean-arterial-pressure', of: ['sbp', 'dbp'] }, transforms: std('map') },
      { id: 'tc', source: obs('2093-3'), lookback: 'P2Y', transforms: std('tc') },
      { id: 'ldl', source: obs('13457-7'), lookback: 'P2Y', transforms: std('ldl') },
      { id: 'hdl', source: obs('2085-9'), lookback: 'P2Y', transforms: std('hdl') },
      { id: 'tc_hdl_ratio', source: { kind: 'derived', op: 'ratio', of: ['tc', 'hdl'] }, transforms: std('tc_hdl_ratio') },
      { id: 'ln_tg', source: obs('2571-8'), lookback: 'P2Y', transforms: ['log', ...std('ln_tg')] },
      { id: 'glucose', source: obs('2345-7'), lookback: 'P2Y', transforms: std('glucose') },
    ],
  });
}

describe('model / mapping agreement', () => {
  it('expands mapping columns (one-hot, indicators, non-inputs)', () => {
    const m = diabetesMapping();
    expect(inputColumns(m)).toEqual(card.featureIds);
    m.features[11].missing = { strategy: 'mean', indicator: true };
    expect(inputColumns(m).slice(-2)).toEqual(['glucose', 'glucose__missing']);
  });

  it('accepts a matching mapping', () => {
    expect(() => checkMappingAgainstCard(card, diabetesMapping())).not.toThrow();
    expect(() => checkModelAgainstMapping({ card }, [...card.featureIds])).not.toThrow();
  });

  it('names missing, extra and out-of-order columns', () => {
    const cols = card.featureIds.filter((c) => c !== 'tc_hdl_ratio').concat('glucose__missing');
    expect(() => checkModelAgainstMapping({ card }, cols, 'm1')).toThrow(
      /model diabetes-progression and mapping m1 disagree on input columns: missing from mapping: tc_hdl_ratio; not expected by model: glucose__missing/,
    );
    const swapped = [...card.featureIds];
    [swapped[4], swapped[5]] = [swapped[5], swapped[4]];
    try {
      checkModelAgainstMapping({ card }, swapped);
      throw new Error('no throw');
    } catch (err) {
      expect(err).toMatchObject({ code: 'model-mismatch' });
      expect((err as Error).message).toMatch(/order differs at position 4: model expects tc, mapping has ldl/);
    }
  });

  it('detects standardisation that differs from the card', () => {
    const m = diabetesMapping();
    m.features[0].transforms = [{ standardize: { mean: 50, std: 13.194 } }];
    m.features[1].transforms = [{ standardize: { mean: 0.5, std: 0.5 } }];
    expect(() => checkMappingAgainstCard(card, m)).toThrow(/age: mapping standardize mean 50 .*; sex=male: mapping standardizes it, card does not/);
  });

  const committed = packagePath('mappings', 'diabetes-progression.yaml');
  (existsSync(committed) ? it : it.skip)('the committed mapping matches the model card', () => {
    const mapping = mappingSchema.parse(parse(readFileSync(committed, 'utf8')));
    checkMappingAgainstCard(card, mapping);
  });
});
