import { loadMapping } from '../features/index.js';
import { packagePath } from '../core/paths.js';
import { rationale, rationaleFeaturesFromMapping } from './rationale.js';

const diabetes = loadMapping(packagePath('mappings', 'diabetes-progression.yaml'));
const curb65 = loadMapping(packagePath('mappings', 'curb65.yaml'));

describe('rationale', () => {
  it('derives a label and the measured unit for every input column of the shipped mappings', () => {
    expect(rationaleFeaturesFromMapping(diabetes).map((f) => [f.column, f.label, f.unit ?? f.kind])).toEqual([
      ['age', 'age', 'a'],
      ['sex=male', 'sex', 'category'],
      ['bmi', 'body mass index', 'kg/m2'],
      ['map', 'mean arterial pressure', 'mm[Hg]'],
      ['tc', 'total cholesterol', 'mg/dL'],
      ['ldl', 'LDL cholesterol', 'mg/dL'],
      ['hdl', 'HDL cholesterol', 'mg/dL'],
      ['tc_hdl_ratio', 'total / HDL cholesterol', '1'],
      ['ln_tg', 'triglyceride', 'mg/dL'],
      ['glucose', 'glucose', 'mg/dL'],
    ]);
    expect(rationaleFeaturesFromMapping(curb65).map((f) => [f.column, f.label])).toEqual([
      ['confusion', 'confusional state'],
      ['urea', 'serum urea'],
      ['resp_rate', 'respiratory rate'],
      ['sbp', 'systolic blood pressure'],
      ['dbp', 'diastolic blood pressure'],
      ['age', 'age'],
    ]);
  });

  it('writes values in their measured unit: a log-transformed input in mg/dL, not its logarithm', () => {
    const features = rationaleFeaturesFromMapping(diabetes);
    const r = rationale(
      [
        { featureId: 'glucose', contribution: 0.2134 },
        { featureId: 'ln_tg', contribution: 0.41 },
        { featureId: 'bmi', contribution: -0.153 },
        { featureId: 'sex=male', contribution: 0.12 },
        { featureId: 'map', contribution: 0.05 },
        { featureId: 'tc_hdl_ratio', contribution: -0.02 },
      ],
      features,
      { glucose: 182, ln_tg: 250, bmi: 22.4, 'sex=male': 1, map: 101.33333, tc_hdl_ratio: 3.2 },
    );
    expect(r.items.map((i) => i.text)).toEqual([
      'glucose 182 mg/dL raises the risk (+0.21 log-odds)',
      'triglyceride 250 mg/dL raises the risk (+0.41 log-odds)',
      'body mass index 22.4 kg/m² lowers the risk (-0.15 log-odds)',
      'sex male raises the risk (+0.12 log-odds)',
      'mean arterial pressure 101 mmHg raises the risk (+0.05 log-odds)',
      'total / HDL cholesterol 3.2 lowers the risk (-0.02 log-odds)',
    ]);
    expect(r.text.split('; ')).toHaveLength(6);
    // A category the patient is not in says so plainly (a female, or an unknown sex, is "other than male").
    expect(rationale([{ featureId: 'sex=male', contribution: 0.46 }], features, { 'sex=male': 0 }).text).toBe('sex other than male raises the risk (+0.46 log-odds)');
    expect(r.items[1]).toMatchObject({ column: 'ln_tg', value: 250, unit: 'mg/dL', direction: 'raises', imputed: false });
  });

  it('says when an input was imputed, reads findings as present or absent, and lets labels be overridden', () => {
    const features = rationaleFeaturesFromMapping(curb65, { urea: 'urea' });
    const r = rationale(
      [
        { featureId: 'confusion', contribution: 1.5 },
        { featureId: 'urea', contribution: 0.9 },
        { featureId: 'age', contribution: 0.8 },
        { featureId: 'resp_rate', contribution: 0 },
      ],
      features,
      { confusion: 1, urea: 9.2, age: 71, resp_rate: 16 },
      { resp_rate: true },
    );
    expect(r.text).toBe(
      'confusional state present raises the risk (+1.50 log-odds); urea 9.2 mmol/L raises the risk (+0.90 log-odds); age 71 years raises the risk (+0.80 log-odds); respiratory rate not measured (imputed) does not change the risk (+0.00 log-odds)',
    );
  });
});
