/**
 * The safety sections of the curb65 card: intended population, applicability policy and the
 * out-of-distribution autoencoder. CURB-65 is a published rule: this repository has no patient rows, so
 * the autoencoder is trained on SYNTHETIC rows drawn from stated distributions (below). Only the cohort
 * size (1068) and mean age (64) come from Lim et al. 2003 (abstract); the age spread comes from another
 * CAP cohort of the same era; every other distribution is an assumption of this repository, written in
 * the card. Pure functions of the seeds.
 */
import type { ModelCardInput } from '../../src/models/model-card.js';
import { buildOod } from './ood.js';
import { mulberry32, shuffle } from './prng.js';

export const SYNTHETIC_SEED = 20030501;
export const SPLIT_SEED = 20030502;
export const SHIFT_SEED = 20030503;
export const OOD_SEED = 20030504;
export const OOD_EVALUATION_FILE = 'fixtures/ood/curb65-evaluation.json';
/** BUN (urea nitrogen) mg/dL per urea mmol/L: 28.0134 g/mol / 10, as in the mapping. */
const BUN_MG_DL_PER_UREA_MMOL_L = 2.80134;
const N_ROWS = 1068;
const HELD_OUT_FRACTION = 0.2;

const round = (v: number, k = 0) => Math.round(v * 10 ** k) / 10 ** k;

/** Standard normal draws (Box-Muller) from a uniform source. */
function normal(rand: () => number): () => number {
  return () => {
    const u = 1 - rand(); // (0, 1]
    const v = rand();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
}

/** Draws until the value lies in [lo, hi] (truncated distribution). */
function truncated(draw: () => number, lo: number, hi: number): number {
  for (let i = 0; i < 1000; i++) {
    const v = draw();
    if (v >= lo && v <= hi) return v;
  }
  throw new Error('truncated draw did not land in range');
}

export const SYNTHETIC_DISTRIBUTIONS =
  `${N_ROWS} synthetic rows (the size of the Lim et al. 2003 cohort), columns drawn independently: ` +
  'confusion Bernoulli(0.12) [assumed]; urea mmol/L log-normal with median 6.0 and log-sd 0.55, truncated to 1.5-40, 1 decimal [assumed]; ' +
  'respiratory rate /min normal(22, 6) truncated to 10-50, whole numbers [assumed]; systolic mm[Hg] normal(128, 22) truncated to 60-220, ' +
  'whole numbers [assumed]; diastolic mm[Hg] normal(72, 13) truncated to 30-130 and at least 10 below systolic, whole numbers [assumed]; ' +
  'age years normal(64, 17.1) truncated to 18-100, whole numbers [mean 64 from Lim et al. 2003 (abstract); SD 17.1 from the CAP cohort of ' +
  'Ewig et al., Thorax 2004;59:421-427, as Lim et al. report no spread in the abstract]. ' +
  `mulberry32 seed ${SYNTHETIC_SEED}; rows drawn one after another, columns in the order listed; ` +
  `held-out ${HELD_OUT_FRACTION * 100}% by a seeded shuffle (seed ${SPLIT_SEED}), mirroring the study's 80/20 derivation/validation split.`;

/** The synthetic rows in model column order: confusion, urea, resp_rate, sbp, dbp, age. */
export function syntheticCurb65Rows(): number[][] {
  const rand = mulberry32(SYNTHETIC_SEED);
  const z = normal(rand);
  const rows: number[][] = [];
  for (let i = 0; i < N_ROWS; i++) {
    const confusion = rand() < 0.12 ? 1 : 0;
    const urea = round(truncated(() => 6.0 * Math.exp(0.55 * z()), 1.5, 40), 1);
    const rr = round(truncated(() => 22 + 6 * z(), 10, 50));
    const sbp = round(truncated(() => 128 + 22 * z(), 60, 220));
    const dbp = round(truncated(() => 72 + 13 * z(), 30, Math.min(130, sbp - 10)));
    const age = round(truncated(() => 64 + 17.1 * z(), 18, 100));
    rows.push([confusion, urea, rr, sbp, dbp, age]);
  }
  return rows;
}

export function curb65SafetySections(input: { modelId: string; modelVersion: string; featureIds: readonly string[] }): {
  sections: Pick<ModelCardInput, 'intendedPopulation' | 'applicabilityPolicy' | 'ood'>;
  oodOnnx: Uint8Array;
  oodEvaluationJson: string;
} {
  const rows = syntheticCurb65Rows();
  const order = shuffle(
    rows.map((_, i) => i),
    mulberry32(SPLIT_SEED),
  );
  const nHeldOut = Math.round(rows.length * HELD_OUT_FRACTION);
  const heldOut = order.slice(0, nHeldOut).sort((a, b) => a - b);
  const train = order.slice(nHeldOut).sort((a, b) => a - b);

  const rand = mulberry32(SHIFT_SEED);
  const uniform = (lo: number, hi: number) => lo + (hi - lo) * rand();
  const children = heldOut.map((i) => {
    const [confusion] = rows[i];
    const age = 1 + Math.floor(rand() * 15); // 1..15 years
    return [confusion, round(uniform(2, 6), 1), round(uniform(20, 40)), round(uniform(85, 115)), round(uniform(45, 75)), age];
  });
  const bunAsUrea = heldOut.map((i) => {
    const r = [...rows[i]];
    r[1] = round(r[1] * BUN_MG_DL_PER_UREA_MMOL_L, 1);
    return r;
  });

  const ood = buildOod({
    modelId: input.modelId,
    modelVersion: input.modelVersion,
    featureIds: input.featureIds,
    inputName: 'features',
    training: { rows: train.map((i) => rows[i]), source: `${train.length} of the synthetic rows: ${SYNTHETIC_DISTRIBUTIONS}` },
    sets: [
      { id: 'held-out', description: `the ${heldOut.length} held-out synthetic rows (same assumed distributions)`, rows: heldOut.map((i) => rows[i]) },
      {
        id: 'children',
        description:
          'each held-out row with confusion kept and, drawn in this order (mulberry32 seed ' +
          `${SHIFT_SEED}): age an integer uniform in 1-15 years, urea uniform 2-6 mmol/L (1 decimal), respiratory rate uniform ` +
          '20-40 /min, systolic uniform 85-115 and diastolic uniform 45-75 mm[Hg] (whole numbers)',
        rows: children,
      },
      {
        id: 'bun-mg-dl-read-as-urea-mmol-l',
        description:
          'each held-out row with urea (mmol/L) converted to blood urea nitrogen in mg/dL (x 2.80134) and that number read as urea in ' +
          'mmol/L (the usual US/UK unit mix-up; the model expects urea mmol/L); other columns kept',
        rows: bunAsUrea,
      },
    ],
    spec: { layers: [input.featureIds.length, 4, 2, 4, input.featureIds.length], epochs: 300, batchSize: 16, learningRate: 0.005, seed: OOD_SEED },
    scaleInputs: true,
    evaluationFile: OOD_EVALUATION_FILE,
    limitations: [
      'Trained on synthetic rows from assumed distributions, not on patients: Lim et al. 2003 publish no per-variable distributions in ' +
        'the abstract we could read. A flag means "unlike a plausible adult with community-acquired pneumonia as assumed here" and is ' +
        'mainly useful against unit errors and wrong populations; it says nothing about how well the rule performs.',
      'Columns are drawn independently: real correlations (older patients with higher urea, low blood pressure with fast breathing) are absent.',
      'The same architecture family as diabetes-progression was used; it was not tuned on these sets.',
      'Urea read 2.8-fold too high (BUN in mg/dL taken as urea in mmol/L) mostly stays inside the range of real urea values in ' +
        'pneumonia, so most such rows are not flagged: unit errors on urea must be caught where units are known (the mapping ' +
        'converts by LOINC code and UCUM unit), or at population level, not by this per-row check.',
      'Children differ from adults here mainly by age; the intended-use gate (age >= 18) refuses them before this check runs.',
    ],
  });

  return {
    sections: {
      intendedPopulation: {
        ageYears: { min: 18 },
        requiredConditions: [],
        excludingConditions: [
          {
            id: 'hiv-infection',
            description: 'HIV infection (excluded from the derivation studies)',
            codes: [
              { system: 'http://snomed.info/sct', code: '86406008', display: 'Human immunodeficiency virus infection' },
              { system: 'http://hl7.org/fhir/sid/icd-10-cm', code: 'B20', display: 'Human immunodeficiency virus [HIV] disease', descendants: true },
              { system: 'http://hl7.org/fhir/sid/icd-10', code: 'B20', descendants: true },
              { system: 'http://hl7.org/fhir/sid/icd-10', code: 'B21', descendants: true },
              { system: 'http://hl7.org/fhir/sid/icd-10', code: 'B22', descendants: true },
              { system: 'http://hl7.org/fhir/sid/icd-10', code: 'B23', descendants: true },
              { system: 'http://hl7.org/fhir/sid/icd-10', code: 'B24', descendants: true },
            ],
          },
          {
            id: 'tuberculosis',
            description: 'Active tuberculosis (excluded from the derivation studies)',
            codes: [
              { system: 'http://snomed.info/sct', code: '56717001', display: 'Tuberculosis' },
              ...['A15', 'A16', 'A17', 'A18', 'A19'].flatMap((code) => [
                { system: 'http://hl7.org/fhir/sid/icd-10-cm', code, descendants: true },
                { system: 'http://hl7.org/fhir/sid/icd-10', code, descendants: true },
              ]),
            ],
          },
          {
            id: 'bronchiectasis',
            description: 'Bronchiectasis (excluded from the derivation studies)',
            codes: [
              { system: 'http://snomed.info/sct', code: '12295008', display: 'Bronchiectasis' },
              { system: 'http://hl7.org/fhir/sid/icd-10-cm', code: 'J47', descendants: true },
              { system: 'http://hl7.org/fhir/sid/icd-10', code: 'J47', descendants: true },
            ],
          },
        ],
        otherCriteria: [
          {
            description: 'Pneumonia or consolidation affirmed in a chest imaging report within 48 hours (the clinical setting of the score)',
            enforcement: 'mapping gate requires pneumonia_on_imaging (skip reason no-pneumonia-on-chest-imaging)',
          },
          {
            description:
              'Community-acquired: the derivation studies excluded pneumonia acquired after a recent hospital stay, post-obstructive ' +
              'pneumonia, pneumonia as an expected terminal event and patients with malignancy',
            enforcement: 'not checked by the adapter (needs encounter history and a terminology server for malignancy); clinician judgement',
          },
        ],
        basis:
          'Lim et al. 2003 derived and validated CURB-65 in adults (mean age 64) hospitalised with community-acquired pneumonia. ' +
          'The excluding conditions follow the derivation studies\' exclusion criteria as summarised by a secondary source (Wiki ' +
          'Journal Club, CURB-65 summary): the paper\'s methods section was not accessible here; review before clinical use.',
      },
      applicabilityPolicy: {
        imputed: [{ moreThan: 2, action: 'score-preliminary' }],
        outOfRange: 'score',
        outOfDistribution: 'score-preliminary',
        rationale:
          'A missing urea, respiratory rate or blood pressure is imputed as normal (0 points), which can only lower the score: with ' +
          'more than 2 of these 4 imputed the score is preliminary. The rule applies fixed published cut-offs at any value, and no ' +
          'training rows exist, so the card states no training ranges (nothing is out of range). The autoencoder was trained on ' +
          'synthetic rows: its flag marks a vector to check (units, population), so the score is written as preliminary, not withheld.',
      },
      ood: ood.section,
    },
    oodOnnx: ood.onnx,
    oodEvaluationJson: ood.evaluationJson,
  };
}
