/**
 * CURB-65 (Lim WS et al., Thorax 2003;58:377-382) as an ONNX graph: the exact published rule,
 * nothing fitted. Input `features` float32 [N,6] = confusion, urea, resp_rate, sbp, dbp, age;
 * outputs `probability` [N,1] (published 30-day mortality for the score) and `score` [N,1].
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { modelCardSchema, type ModelCardInput } from '../../src/models/model-card.js';
import { differingFiles } from './artifacts.js';
import { curb65SafetySections, OOD_EVALUATION_FILE } from './curb65-safety.js';
import { sig, stableJson } from './numfmt.js';
import { buildModel, FLOAT, floatTensor, int64Tensor, intAttr, node, valueInfo } from './onnx-build.js';

export const MODEL_ID = 'curb65';
export const MODEL_VERSION = '1.0.0';
export const FEATURE_IDS = ['confusion', 'urea', 'resp_rate', 'sbp', 'dbp', 'age'] as const;

export const CITATION =
  'Lim WS, van der Eerden MM, Laing R, Boersma WG, Karalus N, Town GI, Lewis SA, Macfarlane JT. Defining community acquired ' +
  'pneumonia severity on presentation to hospital: an international derivation and validation study. Thorax 2003;58(5):377-382. ' +
  'doi:10.1136/thorax.58.5.377';

/** 30-day mortality per CURB-65 score in the derivation cohort (Lim et al. 2003, abstract). */
export const MORTALITY_BY_SCORE = [0.007, 0.032, 0.13, 0.17, 0.415, 0.57] as const;

/** Reference implementation in plain TypeScript (float32 inputs, as the model sees them). */
export function curb65Score(v: readonly number[]): number {
  const [confusion, urea, rr, sbp, dbp, age] = v.map(Math.fround);
  return (
    (confusion >= 0.5 ? 1 : 0) +
    (urea > 7 ? 1 : 0) +
    (rr >= 30 ? 1 : 0) +
    (sbp < 90 || dbp <= 60 ? 1 : 0) +
    (age >= 65 ? 1 : 0)
  );
}

export function buildCurb65Onnx(): Uint8Array {
  const cols = FEATURE_IDS.map((id) => node('Gather', ['features', `idx_${id}`], [id], `col_${id}`, [intAttr('axis', 1)]));
  const cmp = [
    node('GreaterOrEqual', ['confusion', 't_confusion'], ['c_bool'], 'c_confusion'),
    node('Greater', ['urea', 't_urea'], ['u_bool'], 'u_urea_gt_7'),
    node('GreaterOrEqual', ['resp_rate', 't_rr'], ['r_bool'], 'r_rr_ge_30'),
    node('Less', ['sbp', 't_sbp'], ['sbp_bool'], 'b_sbp_lt_90'),
    node('LessOrEqual', ['dbp', 't_dbp'], ['dbp_bool'], 'b_dbp_le_60'),
    node('Or', ['sbp_bool', 'dbp_bool'], ['b_bool'], 'b_or'),
    node('GreaterOrEqual', ['age', 't_age'], ['a_bool'], 'a_age_ge_65'),
  ];
  const casts = ['c', 'u', 'r', 'b', 'a'].map((p) => node('Cast', [`${p}_bool`], [`${p}_pt`], `cast_${p}`, [intAttr('to', FLOAT)]));
  const adds = [
    node('Add', ['c_pt', 'u_pt'], ['s_cu'], 'add_cu'),
    node('Add', ['s_cu', 'r_pt'], ['s_cur'], 'add_cur'),
    node('Add', ['s_cur', 'b_pt'], ['s_curb'], 'add_curb'),
    node('Add', ['s_curb', 'a_pt'], ['score'], 'add_curb65'),
  ];
  const lookup = [
    node('Cast', ['score'], ['score_index'], 'cast_index', [intAttr('to', 7 /* INT64 */)]),
    node('Gather', ['mortality_table', 'score_index'], ['probability'], 'lookup', [intAttr('axis', 0)]),
  ];
  return buildModel({
    graphName: 'curb65',
    docString: `CURB-65 score and published 30-day mortality per score. ${CITATION}`,
    nodes: [...cols, ...cmp, ...casts, ...adds, ...lookup],
    initializers: [
      ...FEATURE_IDS.map((id, k) => int64Tensor(`idx_${id}`, [1], [k])),
      floatTensor('t_confusion', [], [0.5]),
      floatTensor('t_urea', [], [7]),
      floatTensor('t_rr', [], [30]),
      floatTensor('t_sbp', [], [90]),
      floatTensor('t_dbp', [], [60]),
      floatTensor('t_age', [], [65]),
      floatTensor('mortality_table', [MORTALITY_BY_SCORE.length], MORTALITY_BY_SCORE),
    ],
    inputs: [valueInfo('features', FLOAT, ['N', FEATURE_IDS.length])],
    outputs: [valueInfo('probability', FLOAT, ['N', 1]), valueInfo('score', FLOAT, ['N', 1])],
    metadata: [
      ['model_id', MODEL_ID],
      ['model_version', MODEL_VERSION],
      ['feature_ids', FEATURE_IDS.join(',')],
    ],
  });
}

/** Golden vectors: every score 0..5 and every threshold boundary. */
export const GOLDEN_INPUTS: { note: string; input: number[] }[] = [
  { note: 'score 0: no criterion', input: [0, 5, 16, 120, 80, 40] },
  { note: 'score 0: boundaries not met (urea = 7, rr = 29, sbp = 90, dbp = 61, age = 64)', input: [0, 7, 29, 90, 61, 64] },
  { note: 'score 1: age = 65 exactly', input: [0, 5, 16, 120, 80, 65] },
  { note: 'score 1: dbp = 60 exactly', input: [0, 5, 16, 120, 60, 40] },
  { note: 'score 2: rr = 30 exactly + urea 7.1', input: [0, 7.1, 30, 120, 80, 40] },
  { note: 'score 3: confusion + sbp 89 + age 80', input: [1, 5, 16, 89, 70, 80] },
  { note: 'score 4: confusion + urea 12 + rr 32 + age 70', input: [1, 12, 32, 110, 70, 70] },
  { note: 'score 5: every criterion', input: [1, 15, 35, 85, 50, 90] },
];

export function buildCurb65Artifacts(): { onnx: Uint8Array; card: string; oodOnnx: Uint8Array; oodEvaluation: string } {
  const onnx = buildCurb65Onnx();
  const safety = curb65SafetySections({ modelId: MODEL_ID, modelVersion: MODEL_VERSION, featureIds: FEATURE_IDS });
  const card: ModelCardInput = {
    id: MODEL_ID,
    version: MODEL_VERSION,
    name: 'CURB-65 pneumonia severity score',
    description:
      'CURB-65 score (one point each for Confusion, Urea > 7 mmol/L, Respiratory rate >= 30/min, low Blood pressure ' +
      '(systolic < 90 or diastolic <= 60 mm[Hg]) and age >= 65 years) and the 30-day mortality the derivation study ' +
      'published for that score. A published clinical rule encoded as an ONNX graph; nothing is fitted here.',
    sha256: createHash('sha256').update(onnx).digest('hex'),
    onnx: {
      file: 'model.onnx',
      opset: 13,
      input: { name: 'features', elemType: 'float32', shape: ['N', FEATURE_IDS.length] },
      output: { name: 'probability', elemType: 'float32', shape: ['N', 1] },
      additionalOutputs: [{ name: 'score', elemType: 'float32', shape: ['N', 1] }],
    },
    featureIds: [...FEATURE_IDS],
    outcome: {
      coding: [{ system: 'http://snomed.info/sct', code: '419099009', display: 'Dead' }],
      text: 'Death from any cause within 30 days of hospital presentation with community-acquired pneumonia',
    },
    horizon: { value: 30, unit: 'd' },
    riskBands: [
      { code: 'low', min: 0, description: 'score 0-1 (0.7%, 3.2%)' },
      { code: 'moderate', min: 0.1, description: 'score 2 (13%)' },
      { code: 'high', min: 0.15, description: 'score 3-5 (17%, 41.5%, 57%)' },
    ],
    preprocessing: {
      description:
        'No standardisation: columns enter in their clinical units. confusion is 0/1 (>= 0.5 counts as present); urea mmol/L; ' +
        'resp_rate /min; sbp and dbp mm[Hg]; age years. Missing values are the mapping\'s job: the runner rejects non-finite inputs, ' +
        'because a NaN comparison would silently score 0. Inputs are float32, so values within float32 rounding of a threshold ' +
        'count as the threshold.',
      columns: Object.fromEntries(FEATURE_IDS.map((id) => [id, null])),
    },
    trainingData: {
      citation: CITATION,
      source:
        'Published rule. Derivation: 80% of 1068 adults hospitalised with community-acquired pneumonia in three prospective ' +
        'studies (UK, New Zealand, the Netherlands); validation on the remaining 20%.',
      n: 1068,
      split: 'derivation 80% / validation 20% (as published); nothing is fitted in this repository',
      outcomeDefinition: '30-day all-cause mortality',
    },
    evaluation: {
      kind: 'published-rule',
      description:
        'Not fitted or evaluated here. Probabilities are the derivation-cohort 30-day mortality per score as reported in the ' +
        'abstract of Lim et al. 2003 (0.7%, 3.2%, 13%, 17%, 41.5%, 57%). One text extraction of the abstract reads "score 2, 3%"; ' +
        '13% is the value secondary sources cite and the only one that keeps mortality rising with the score, but we could not ' +
        'see the paper\'s own table to confirm it. Another widely cited set (0.7, 2.1, 9.2, 14.5, 40, 57%) is not the ' +
        'derivation-cohort figure set of the abstract; we did not use it.',
      table: MORTALITY_BY_SCORE.map((p, score) => ({
        score,
        probability: p,
        source: 'Lim et al., Thorax 2003;58:377-382, derivation cohort, 30-day mortality (abstract)',
      })),
    },
    intendedUse:
      'Severity assessment of adults presenting to hospital with community-acquired pneumonia, to support (not replace) the ' +
      'decision on site of care. The score, not the probability, is what guidelines act on.',
    ...safety.sections,
    limitations: [
      'Derived in 2003 in three countries; mortality per score varies between populations and eras.',
      'Only for community-acquired pneumonia confirmed by the clinician; the mapping gates on it.',
      'Confusion is taken as a coded 0/1 finding; the original used a mental test score <= 8 or new disorientation.',
      'Few patients have scores 4-5, so their probabilities are imprecise.',
      'Occlusion explanations of a step function are coarse: a column contributes only when it crosses its threshold.',
    ],
    goldenVectors: GOLDEN_INPUTS.map((g) => {
      const s = curb65Score(g.input);
      return { ...g, expected: { probability: [sig(Math.fround(MORTALITY_BY_SCORE[s]), 7)], score: [s] } };
    }),
    explanation: {
      method:
        'Occlusion: each column is replaced by a normal value (no confusion, urea 5 mmol/L, rr 16/min, sbp 120, dbp 80, age 40) ' +
        'and the change in logit of the published mortality is the contribution.',
      baseline: [0, 5, 16, 120, 80, 40],
    },
  };
  modelCardSchema.parse(card);
  return { onnx, card: stableJson(card), oodOnnx: safety.oodOnnx, oodEvaluation: safety.oodEvaluationJson };
}

export function curb65Paths(root: string) {
  return {
    onnx: join(root, 'models', MODEL_ID, 'model.onnx'),
    card: join(root, 'models', MODEL_ID, 'model-card.json'),
    ood: join(root, 'models', MODEL_ID, 'ood.onnx'),
    oodEvaluation: join(root, OOD_EVALUATION_FILE),
  };
}

export function checkCurb65Artifacts(root: string): string[] {
  const p = curb65Paths(root);
  const built = buildCurb65Artifacts();
  return differingFiles([
    [p.onnx, built.onnx],
    [p.card, built.card],
    [p.ood, built.oodOnnx],
    [p.oodEvaluation, built.oodEvaluation],
  ]);
}
