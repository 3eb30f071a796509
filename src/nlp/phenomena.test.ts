/**
 * One test per ConText phenomenon the analyzer must get right on real notes: document structure,
 * coordinated lists, trigger shapes, independent dimensions, precedence. Sentences written for these
 * tests (not taken from the labelled sets).
 */
import { analyzeText, type Mention } from './index.js';

type Dims = Partial<Pick<Mention, 'negation' | 'temporality' | 'experiencer' | 'assertion'>>;

/** The mention of `target` (the n-th occurrence, default first) in `text`. */
function mentionOf(text: string, target: string, occurrence = 0): Mention {
  const found = analyzeText(text, { targets: [target] }).mentions.filter((m) => m.target === target);
  const m = found[occurrence];
  if (!m) throw new Error(`"${target}" #${occurrence} not found in "${text}"`);
  return m;
}

const dims = (m: Mention): Dims => ({ negation: m.negation, temporality: m.temporality, experiencer: m.experiencer, assertion: m.assertion });

/** Each case: [text, target, expected dimensions (subset)]. */
type Case = [string, string, Dims];
function check(cases: Case[]) {
  const wrong = cases
    .map(([text, target, want]) => {
      const got = dims(mentionOf(text, target));
      const diff = Object.entries(want).filter(([k, v]) => got[k as keyof Dims] !== v);
      return diff.length ? `${JSON.stringify(text)} / ${target}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}` : undefined;
    })
    .filter(Boolean);
  expect(wrong).toEqual([]);
}

describe('document structure ends scope', () => {
  it('a slot header ends the previous slot; "none" after a header applies to that header only', () => {
    check([
      ['COMPLICATIONS: none FINDINGS: small polyp in the sigmoid colon, removed with snare.', 'polyp', { negation: 'affirmed' }],
      ['COMPLICATIONS: none FINDINGS: small polyp in the sigmoid colon, removed with snare.', 'complications', { negation: 'negated' }],
      ['Fever: no   Cough: productive, green sputum', 'cough', { negation: 'affirmed' }],
      ['Fever: no   Cough: productive, green sputum', 'fever', { negation: 'negated' }],
      ['ROS: denies chills HEENT: sore throat for two days', 'sore throat', { negation: 'affirmed' }],
      ['Chest pain: Denies\nPalpitations: occasional, worse at night', 'palpitations', { negation: 'affirmed' }],
    ]);
  });

  it('numbered and bulleted list items end scope, also when run on in one line', () => {
    check([
      ['IMPRESSION: 1. No pneumothorax 2. Right lower lobe pneumonia 3. Small effusion', 'pneumonia', { negation: 'affirmed' }],
      ['IMPRESSION: 1. No pneumothorax 2. Right lower lobe pneumonia 3. Small effusion', 'effusion', { negation: 'affirmed' }],
      ['Assessment: 1) no evidence of DVT 2) cellulitis of the left leg', 'cellulitis', { negation: 'affirmed' }],
      ['Plan:\n- no anticoagulation for now\n- Continue ceftriaxone for pneumonia', 'pneumonia', { negation: 'affirmed' }],
    ]);
  });

  it('runs of spaces in flattened text are line breaks', () => {
    check([
      ['Denies chest pain     Cough productive of yellow sputum since Monday', 'cough', { negation: 'affirmed' }],
      ['No known drug allergies    Hypertension on lisinopril', 'hypertension', { negation: 'affirmed' }],
      ['Negative for fever    Dysuria and frequency for 3 days', 'dysuria', { negation: 'affirmed' }],
    ]);
  });

  it('sentence splitting copes with de-identification tags, headers and run-on lists', () => {
    const text =
      'Pt seen by Dr. [**Last Name (NamePattern1) 4172**] on [**2119-3-4**]. No fever. Cough x3 days.  ' +
      'PHYSICAL EXAM: Lungs clear  Heart RRR   1. Pneumonia 2. Hypoxia';
    const r = analyzeText(text);
    expect(r.sentences.map((s) => s.text)).toEqual([
      'Pt seen by Dr. [**Last Name (NamePattern1) 4172**] on [**2119-3-4**].',
      'No fever.',
      'Cough x3 days.',
      'Lungs clear',
      'Heart RRR',
      'Pneumonia',
      'Hypoxia',
    ]);
    check([
      ['Seen by [**Doctor First Name 123**] [**Doctor Last Name 456**] in clinic, denies fever. Hypoxia noted on arrival.', 'hypoxia', { negation: 'affirmed' }],
      ['**NAME[AAA, BBB M] denies dyspnea. **NAME[AAA] reports cough.', 'cough', { negation: 'affirmed' }],
    ]);
  });
});

describe('coordinated lists', () => {
  it('a pre-negation covers every item of a long list', () => {
    check([
      ['He denies fever, chills, night sweats, weight loss, nausea, vomiting, diarrhea, dysuria, or hematuria.', 'hematuria', { negation: 'negated' }],
      ['No cough, sputum production, hemoptysis, wheezing, shortness of breath or pleuritic chest pain.', 'pleuritic chest pain', { negation: 'negated' }],
      ['Patient denies headache, blurred vision, photophobia, neck stiffness, focal weakness, numbness, and slurred speech.', 'slurred speech', { negation: 'negated' }],
      ['Negative for abdominal pain, melena, hematochezia, jaundice, pruritus, nor early satiety.', 'early satiety', { negation: 'negated' }],
    ]);
  });

  it('the list ends at a real terminator or a new clause with its own verb', () => {
    check([
      ['Denies fever or chills but reports a productive cough.', 'cough', { negation: 'affirmed' }],
      ['No fever, has had a productive cough for a week.', 'cough', { negation: 'affirmed' }],
      ['No nausea or vomiting, however she endorses epigastric pain.', 'epigastric pain', { negation: 'affirmed' }],
      ['No edema, the patient reports orthopnea at night.', 'orthopnea', { negation: 'affirmed' }],
    ]);
  });
});

describe('more trigger shapes', () => {
  it('post-negation and result phrasing', () => {
    check([
      ['Rapid strep test is negative.', 'rapid strep test', { negation: 'negated' }],
      ['Sputum smear -ve for TB.', 'TB', { negation: 'negated' }],
      ['No further signs or symptoms of infection.', 'infection', { negation: 'negated' }],
      ['Pulmonary embolism was ruled out by CT angiography.', 'pulmonary embolism', { negation: 'negated' }],
      ['Lungs are free of crackles.', 'crackles', { negation: 'negated' }],
      ['Her rash has since resolved.', 'rash', { negation: 'negated' }],
    ]);
  });

  it('pseudo-triggers that look like negation but are not', () => {
    check([
      ['No specific cause for the anemia was identified.', 'anemia', { negation: 'affirmed' }],
      ['There is no change in the right lower lobe nodule.', 'nodule', { negation: 'affirmed' }],
      ['Not only fever but also rigors overnight.', 'fever', { negation: 'affirmed' }],
      ['No increase in the size of the left pleural effusion.', 'pleural effusion', { negation: 'affirmed' }],
    ]);
  });

  it('terminators stop scope inside a sentence', () => {
    check([
      ['Not eating well due to dysphagia.', 'dysphagia', { negation: 'affirmed' }],
      ['No appetite because of nausea.', 'nausea', { negation: 'affirmed' }],
      ['No fever overnight, remained hypotensive on pressors.', 'hypotensive', { negation: 'affirmed' }],
      ['Unable to ambulate secondary to knee pain.', 'knee pain', { negation: 'affirmed' }],
    ]);
  });
});

describe('independent dimensions', () => {
  it('negation, temporality and experiencer are set separately', () => {
    check([
      ['No prior history of stroke.', 'stroke', { negation: 'negated', temporality: 'historical', experiencer: 'patient', assertion: 'negated' }],
      ['Her mother did not have diabetes.', 'diabetes', { negation: 'negated', experiencer: 'other', assertion: 'other-subject' }],
      ['Family history negative for colon cancer.', 'colon cancer', { negation: 'negated', experiencer: 'other' }],
      ['Possible history of seizures as a child.', 'seizures', { negation: 'possible', temporality: 'historical' }],
      ['Return to the emergency department if you develop chest pain.', 'chest pain', { negation: 'affirmed', temporality: 'hypothetical' }],
    ]);
  });

  it('history phrasing and sections mark historical mentions', () => {
    check([
      ['Status post appendectomy in 2010.', 'appendectomy', { temporality: 'historical' }],
      ['She had a myocardial infarction in the past.', 'myocardial infarction', { temporality: 'historical' }],
      ['Previous DVT, treated with warfarin for six months.', 'DVT', { temporality: 'historical' }],
      ['Hospitalized for pneumonia in March 2015.', 'pneumonia', { temporality: 'historical' }],
      ['PAST MEDICAL HISTORY: Hypertension, COPD, remote DVT.\nHPI: Presents with dyspnea.', 'dyspnea', { temporality: 'recent' }],
      ['PAST MEDICAL HISTORY: Hypertension, COPD, remote DVT.\nHPI: Presents with dyspnea.', 'COPD', { temporality: 'historical' }],
    ]);
  });

  it('hypothetical phrasing and instructions to the patient', () => {
    check([
      ['Should the swelling worsen, call the clinic.', 'swelling', { temporality: 'hypothetical' }],
      ['CT abdomen to evaluate for appendicitis.', 'appendicitis', { temporality: 'hypothetical' }],
      ['Patient is at increased risk of falls.', 'falls', { temporality: 'hypothetical' }],
      ['Seek medical attention for any shortness of breath.', 'shortness of breath', { temporality: 'hypothetical' }],
      ['Return for worsening abdominal pain or vomiting.', 'vomiting', { temporality: 'hypothetical' }],
    ]);
  });
});

describe('precedence and categories', () => {
  it('negation over uncertainty is negated; hedged negation is possible (documented)', () => {
    check([
      ['No findings suggestive of pneumonia.', 'pneumonia', { negation: 'negated' }],
      ['There is no evidence of a suspicious mass.', 'mass', { negation: 'negated' }],
      ['Low suspicion for pulmonary embolism.', 'pulmonary embolism', { negation: 'possible' }],
      ['Pneumonia is unlikely.', 'pneumonia', { negation: 'possible' }],
      ['No effusion, possible small pneumothorax.', 'pneumothorax', { negation: 'possible' }],
    ]);
  });

  it('stopped use marks the target historical', () => {
    check([
      ['He quit smoking 10 years ago.', 'smoking', { temporality: 'historical' }],
      ['Former smoker, 20 pack-years.', 'smoker', { temporality: 'historical' }],
      ['Ex-smoker, no alcohol use.', 'smoker', { temporality: 'historical' }],
      ['Quit alcohol use five years ago, drinks no coffee.', 'alcohol use', { temporality: 'historical' }],
    ]);
  });

  it('family and other-person triggers keep priority', () => {
    check([
      ['Mother with history of breast cancer.', 'breast cancer', { experiencer: 'other', assertion: 'other-subject' }],
      ['His father was recently treated for pneumonia.', 'pneumonia', { experiencer: 'other', assertion: 'other-subject' }],
      ['Brother possibly had a seizure disorder.', 'seizure disorder', { experiencer: 'other', negation: 'possible', assertion: 'other-subject' }],
      ['Sister without any history of cancer.', 'cancer', { experiencer: 'other', negation: 'negated' }],
      ['Mother and two of her sisters were diagnosed with breast cancer, ovarian cancer, and melanoma in their forties.', 'melanoma', { experiencer: 'other' }],
      ['Sick contacts: daughter with fever and a productive cough; pt herself reports sore throat.', 'cough', { experiencer: 'other' }],
      ['Sick contacts: daughter with fever and a productive cough; pt herself reports sore throat.', 'sore throat', { experiencer: 'patient' }],
    ]);
  });
});
