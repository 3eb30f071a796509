/**
 * Integration: CURB-65 end to end from FHIR resources (issue 3 acceptance), over HTTP against the embedded
 * FHIR server with the real ONNX model and the real clinical NLP.
 * - A hand-computed table: each patient has a chest imaging report in realistic report language (plain
 *   text, HTML or a Binary), BUN in mg/dL, a respiratory rate and a blood pressure (a panel, or separate
 *   Observations); the written probability is the card's published value for the hand-computed score.
 * - The pneumonia gate: negated, hedged and stale reports skip the patient; "no change in the ...
 *   consolidation" opens it.
 * - Malformed reports (bad base64, PDF, no text) are excluded with their reason and never fail the sync;
 *   HTML with <script> is used without the script.
 * - A second sync of the same as-of writes nothing new.
 *
 * The server runs with write validation off: strict servers (the embedded one included) reject a
 * presentedForm whose data is not base64 at load, but EHRs do send them, and that is the case under test.
 * The resources the adapter writes are validated here explicitly instead.
 */
import type { Resource } from '@medplum/fhirtypes';
import type { Attachment, Binary, DiagnosticReport, FhirResource, Observation, RiskAssessment } from 'fhir/r4.js';
import { packagePath } from '../../src/core/paths.js';
import { FhirClient } from '../../src/fhir/client.js';
import { analyzeReport } from '../../src/nlp/index.js';
import { startFhirServer, type RunningFhirServer } from '../../src/server/index.js';
import { validationIssues } from '../../src/server/repository.js';
import { prepareModels, type SyncModel } from '../../src/sync/index.js';
import { runSync, type PatientResult, type SyncResult } from '../../src/sync/index.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../../src/writeback/identifiers.js';

const AS_OF = new Date('2024-03-10T12:00:00Z');
const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';
const RISK_PROBABILITY = 'http://terminology.hl7.org/CodeSystem/risk-probability';
const hoursBefore = (h: number) => new Date(AS_OF.getTime() - h * 3_600_000).toISOString();
const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

const XR_2VIEW = { code: '36643-5', display: 'XR Chest 2 Views' };
const XR_PORTABLE = { code: '30746-2', display: 'XR Chest Portable Single view' };
const CT_CHEST = { code: '24627-2', display: 'CT Chest' };
type ReportCode = typeof XR_2VIEW;
type Form = 'plain' | 'html' | 'binary';

// ---------------------------------------------------------------------------------------------------
// Report language
const RLL_PNEUMONIA =
  'EXAM: XR chest PA and lateral.\nINDICATION: Cough and fever.\nFINDINGS: Right lower lobe consolidation. No pleural effusion. Heart size is normal.\nIMPRESSION: Right lower lobe pneumonia.';
const RLL_PNEUMONIA_CONFUSED =
  'EXAM: XR chest portable.\nINDICATION: New confusion, fever.\nFINDINGS: Patchy right lower lobe consolidation.\nIMPRESSION: Right lower lobe pneumonia.';
const LLL_CT =
  'EXAM: CT chest with contrast.\nINDICATION: Dyspnea.\nFINDINGS: Dense consolidation in the left lower lobe with air bronchograms.\nIMPRESSION: Left lower lobe pneumonia.';
const NO_CHANGE =
  'EXAM: XR chest, follow-up.\nCOMPARISON: 2024-03-07.\nFINDINGS: No new opacity.\nIMPRESSION: No change in the right lower lobe consolidation.';
const CONFUSION_NOTE = 'PROGRESS NOTE\nASSESSMENT: Acute confusion since this morning, disoriented to time and place.';

// ---------------------------------------------------------------------------------------------------
// Builders

function toHtml(text: string): string {
  const body = text
    .split('\n')
    .map((line) => {
      const m = /^([A-Z][A-Z /]+):\s*(.*)$/.exec(line);
      return m ? `<h3>${m[1]}</h3><p>${m[2]}</p>` : `<p>${line}</p>`;
    })
    .join('');
  return `<html><body>${body}</body></html>`;
}

function diagnosticReport(pid: string, id: string, code: ReportCode | { code: string; display: string }, presentedForm: Attachment[] | undefined, hoursAgo = 20): DiagnosticReport {
  return {
    resourceType: 'DiagnosticReport',
    id,
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0074', code: 'RAD', display: 'Radiology' }] }],
    code: { coding: [{ system: LOINC, ...code }], text: code.display },
    subject: { reference: `Patient/${pid}` },
    effectiveDateTime: hoursBefore(hoursAgo),
    issued: hoursBefore(hoursAgo - 0.75),
    ...(presentedForm ? { presentedForm } : {}),
  };
}

/** A chest report sent the three ways real systems send text: inline text/plain, inline HTML, or a Binary. */
function chestReport(pid: string, id: string, text: string, code: ReportCode, form: Form = 'plain', hoursAgo = 20): FhirResource[] {
  if (form === 'binary') {
    const binary: Binary = { resourceType: 'Binary', id: `${id}-text`, contentType: 'text/plain', data: b64(text) };
    return [binary, diagnosticReport(pid, id, code, [{ contentType: 'text/plain', url: `Binary/${binary.id}`, title: code.display }], hoursAgo)];
  }
  const attachment: Attachment =
    form === 'html' ? { contentType: 'text/html', data: b64(toHtml(text)), title: code.display } : { contentType: 'text/plain', data: b64(text), title: code.display };
  return [diagnosticReport(pid, id, code, [attachment], hoursAgo)];
}

function quantity(pid: string, id: string, code: string, display: string, value: number, unit: string, hoursAgo: number): Observation {
  return {
    resourceType: 'Observation',
    id,
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: code === '3094-0' ? 'laboratory' : 'vital-signs' }] }],
    code: { coding: [{ system: LOINC, code, display }], text: display },
    subject: { reference: `Patient/${pid}` },
    effectiveDateTime: hoursBefore(hoursAgo),
    valueQuantity: { value, unit, system: UCUM, code: unit },
  };
}

function bpPanel(pid: string, id: string, sys: number, dia: number): Observation {
  const component = (code: string, display: string, value: number) => ({
    code: { coding: [{ system: LOINC, code, display }] },
    valueQuantity: { value, unit: 'mmHg', system: UCUM, code: 'mm[Hg]' },
  });
  const { valueQuantity: _none, ...panel } = quantity(pid, id, '85354-9', 'Blood pressure panel with all children optional', 0, 'mm[Hg]', 3);
  return { ...panel, component: [component('8480-6', 'Systolic blood pressure', sys), component('8462-4', 'Diastolic blood pressure', dia)] };
}

interface Vitals {
  /** Urea nitrogen, LOINC 3094-0, mg/dL. */
  bun?: number;
  rr?: number;
  bp?: { sys: number; dia: number; separate?: boolean };
}

/** Patient + labs and vitals in the 48 h before as-of; returns the resources and the Observation refs. */
function patientWithVitals(pid: string, birthDate: string, v: Vitals): { resources: FhirResource[]; refs: string[] } {
  const resources: FhirResource[] = [{ resourceType: 'Patient', id: pid, birthDate, gender: 'female' }];
  if (v.bun !== undefined) resources.push(quantity(pid, `${pid}-bun`, '3094-0', 'Urea nitrogen [Mass/volume] in Serum or Plasma', v.bun, 'mg/dL', 6));
  if (v.rr !== undefined) resources.push(quantity(pid, `${pid}-rr`, '9279-1', 'Respiratory rate', v.rr, '/min', 3));
  if (v.bp?.separate) {
    resources.push(quantity(pid, `${pid}-sbp`, '8480-6', 'Systolic blood pressure', v.bp.sys, 'mm[Hg]', 3));
    resources.push(quantity(pid, `${pid}-dbp`, '8462-4', 'Diastolic blood pressure', v.bp.dia, 'mm[Hg]', 3));
  } else if (v.bp) resources.push(bpPanel(pid, `${pid}-bp`, v.bp.sys, v.bp.dia));
  const refs = resources.filter((r) => r.resourceType === 'Observation').map((r) => `Observation/${r.id}`);
  return { resources, refs };
}

// ---------------------------------------------------------------------------------------------------
// The hand-computed table. As-of 2024-03-10T12:00Z. Urea mmol/L = BUN mg/dL / 2.80134 (N2, 28.0134 g/mol).
// Points: C confusion affirmed; U urea > 7; R rr >= 30; B sbp < 90 or dbp <= 60; 65 age >= 65.
// Probability: the card's derivation-cohort table 0.007, 0.032, 0.13, 0.17, 0.415, 0.57 for score 0..5.

interface Case {
  name: string;
  id: string;
  birthDate: string;
  age: number;
  report: { text: string; code: ReportCode; form: Form };
  /** A progress note (LOINC 11506-3) in the last 72 h saying the patient is confused. */
  confusionNote?: boolean;
  vitals: Vitals;
  score: number;
  probability: number;
  band: 'low' | 'moderate' | 'high';
}

const CASES: Case[] = [
  {
    name: 'score 0: every boundary just missed (BUN 19.6 mg/dL = 6.997 mmol/L, rr 29, sbp 90 with dbp 61, age 64)',
    id: 'curb-a', birthDate: '1959-03-11', age: 64, // 65th birthday is the day after as-of
    report: { text: RLL_PNEUMONIA, code: XR_2VIEW, form: 'plain' },
    vitals: { bun: 19.6, rr: 29, bp: { sys: 90, dia: 61 } },
    score: 0, probability: 0.007, band: 'low',
  },
  {
    name: 'score 1: age exactly 65 (birthday on the as-of day); BUN 19 mg/dL = 6.78 mmol/L; CT report as HTML',
    id: 'curb-b', birthDate: '1959-03-10', age: 65,
    report: { text: LLL_CT, code: CT_CHEST, form: 'html' },
    vitals: { bun: 19, rr: 20, bp: { sys: 124, dia: 78 } },
    score: 1, probability: 0.032, band: 'low',
  },
  {
    name: 'score 1: dbp exactly 60; portable film report in a Binary',
    id: 'curb-c', birthDate: '1983-06-01', age: 40,
    report: { text: RLL_PNEUMONIA, code: XR_PORTABLE, form: 'binary' },
    vitals: { bun: 14, rr: 18, bp: { sys: 118, dia: 60 } },
    score: 1, probability: 0.032, band: 'low',
  },
  {
    name: 'score 2: BUN 20 mg/dL = 7.14 mmol/L and rr exactly 30',
    id: 'curb-d', birthDate: '1972-01-20', age: 52,
    report: { text: RLL_PNEUMONIA, code: XR_2VIEW, form: 'plain' },
    vitals: { bun: 20, rr: 30, bp: { sys: 130, dia: 75 } },
    score: 2, probability: 0.13, band: 'moderate',
  },
  {
    name: 'score 2: "no change in the right lower lobe consolidation" opens the gate; BUN 19.7 mg/dL = 7.03 mmol/L; age 72',
    id: 'curb-e', birthDate: '1952-02-01', age: 72,
    report: { text: NO_CHANGE, code: XR_2VIEW, form: 'html' },
    vitals: { bun: 19.7, rr: 24, bp: { sys: 110, dia: 70 } },
    score: 2, probability: 0.13, band: 'moderate',
  },
  {
    name: 'score 2: only rr measured (31), urea and blood pressure imputed as normal; age 66',
    id: 'curb-f', birthDate: '1958-01-01', age: 66,
    report: { text: RLL_PNEUMONIA, code: XR_PORTABLE, form: 'plain' },
    vitals: { rr: 31 },
    score: 2, probability: 0.13, band: 'moderate',
  },
  {
    name: 'score 3: "INDICATION: New confusion" + sbp 89 (separate Observations) + age 80',
    id: 'curb-g', birthDate: '1944-01-15', age: 80,
    report: { text: RLL_PNEUMONIA_CONFUSED, code: XR_PORTABLE, form: 'plain' },
    vitals: { bun: 15, rr: 22, bp: { sys: 89, dia: 70, separate: true } },
    score: 3, probability: 0.17, band: 'high',
  },
  {
    name: 'score 4: confusion in a progress note + BUN 33.6 mg/dL = 11.99 mmol/L + rr 32 + age 70',
    id: 'curb-h', birthDate: '1954-03-10', age: 70,
    report: { text: LLL_CT, code: CT_CHEST, form: 'binary' },
    confusionNote: true,
    vitals: { bun: 33.6, rr: 32, bp: { sys: 112, dia: 70 } },
    score: 4, probability: 0.415, band: 'high',
  },
  {
    name: 'score 5: every criterion (confusion, BUN 42 mg/dL = 14.99 mmol/L, rr 35, 85/50 panel, age 90)',
    id: 'curb-i', birthDate: '1934-02-01', age: 90,
    report: { text: RLL_PNEUMONIA_CONFUSED, code: XR_2VIEW, form: 'html' },
    vitals: { bun: 42, rr: 35, bp: { sys: 85, dia: 50 } },
    score: 5, probability: 0.57, band: 'high',
  },
];

/** Would score >= 4 if the gate opened: age 80, BUN 30 mg/dL, rr 32, 85/50. */
const GATE_VITALS: Vitals = { bun: 30, rr: 32, bp: { sys: 85, dia: 50 } };
const GATE_CASES = [
  { name: 'negated: "No focal consolidation. No evidence of pneumonia."', id: 'gate-neg',
    text: 'INDICATION: Cough.\nFINDINGS: Lungs are clear. No focal consolidation. No pleural effusion.\nIMPRESSION: No evidence of pneumonia.', hoursAgo: 20, reportFetched: true },
  { name: 'negated: "Pneumonia is not seen."', id: 'gate-notseen',
    text: 'INDICATION: Fever.\nFINDINGS: Lungs are clear.\nIMPRESSION: Pneumonia is not seen.', hoursAgo: 20, reportFetched: true },
  { name: 'possible: "Cannot exclude early pneumonia."', id: 'gate-hedge',
    text: 'INDICATION: Fever.\nFINDINGS: Subtle left basilar opacity.\nIMPRESSION: Cannot exclude early pneumonia.', hoursAgo: 20, reportFetched: true },
  // 5 days old: outside PT48H, and outside the 72 h report search, so it is not even fetched.
  { name: 'stale: an affirming report 5 days before as-of', id: 'gate-old', text: RLL_PNEUMONIA, hoursAgo: 120, reportFetched: false },
];

/** Malformed extra reports for a patient that otherwise has a valid affirming report and score 1 (age 70). */
type Malformed = 'bad-base64' | 'pdf' | 'empty';
function malformedReport(pid: string, kind: Malformed): DiagnosticReport {
  const id = `${pid}-${kind}`;
  switch (kind) {
    case 'bad-base64':
      return diagnosticReport(pid, id, XR_PORTABLE, [{ contentType: 'text/plain', data: 'IMPRESSION: %%% not base64 %%%', title: 'XR Chest Portable' }], 10);
    case 'pdf':
      return diagnosticReport(pid, id, CT_CHEST, [{ contentType: 'application/pdf', data: b64('%PDF-1.7\n1 0 obj <<>> endobj\n%%EOF'), title: 'CT Chest' }], 10);
    case 'empty':
      return diagnosticReport(pid, id, XR_2VIEW, undefined, 10);
  }
}
const MALFORMED_CASES: { name: string; id: string; extras: Malformed[]; excluded: PatientResult['excluded'] }[] = [
  { name: 'presentedForm data that is not valid base64', id: 'bad-b64', extras: ['bad-base64'], excluded: { 'bad-attachment': 1 } },
  { name: 'an application/pdf attachment', id: 'bad-pdf', extras: ['pdf'], excluded: { 'unsupported-content-type': 1 } },
  { name: 'a report with no text at all', id: 'bad-empty', extras: ['empty'], excluded: { 'empty-report': 1 } },
  { name: 'all three at once', id: 'bad-all', extras: ['bad-base64', 'pdf', 'empty'], excluded: { 'bad-attachment': 1, 'unsupported-content-type': 1, 'empty-report': 1 } },
];
const MALFORMED_VITALS: Vitals = { bun: 14, rr: 20, bp: { sys: 120, dia: 80 } };

/** HTML whose scripts, if their text leaked into the NLP, would add a confusion point. */
const HTML_WITH_SCRIPT =
  '<html><body><h3>INDICATION</h3><p>Cough and fever.</p><script>alert(1)</script>' +
  '<script>var note = "INDICATION: New confusion.";</script>' +
  '<h3>FINDINGS</h3><p>Left lower lobe consolidation.</p><h3>IMPRESSION</h3><p>Left lower lobe pneumonia.</p></body></html>';

// ---------------------------------------------------------------------------------------------------

/** A RiskAssessment's basis without the Patient (demographics), sorted. */
function clinicalBasis(ra: RiskAssessment): string[] {
  return ra.basis!.map((b) => b.reference!).filter((r) => !r.startsWith('Patient/')).sort();
}

describe('CURB-65 sync from FHIR resources (integration)', () => {
  let server: RunningFhirServer;
  let client: FhirClient;
  let models: SyncModel[];
  let result: SyncResult;
  const expectedBasis = new Map<string, string[]>();
  const byPatient = new Map<string, PatientResult>();
  const assessments = new Map<string, RiskAssessment>();

  async function allAssessments(): Promise<RiskAssessment[]> {
    const out: RiskAssessment[] = [];
    for await (const page of client.search<RiskAssessment>('RiskAssessment', { _count: '1000' })) out.push(...page.resources);
    return out;
  }

  beforeAll(async () => {
    server = await startFhirServer({ port: 0, validate: false });
    const resources: FhirResource[] = [];
    for (const c of CASES) {
      const p = patientWithVitals(c.id, c.birthDate, c.vitals);
      resources.push(...p.resources, ...chestReport(c.id, `${c.id}-chest`, c.report.text, c.report.code, c.report.form));
      const basis = [`DiagnosticReport/${c.id}-chest`, ...p.refs];
      if (c.confusionNote) {
        resources.push(diagnosticReport(c.id, `${c.id}-note`, { code: '11506-3', display: 'Progress note' }, [{ contentType: 'text/plain', data: b64(CONFUSION_NOTE) }], 8));
        basis.push(`DiagnosticReport/${c.id}-note`);
      }
      expectedBasis.set(c.id, basis.sort());
    }
    for (const g of GATE_CASES) {
      resources.push(...patientWithVitals(g.id, '1944-01-15', GATE_VITALS).resources, ...chestReport(g.id, `${g.id}-chest`, g.text, XR_2VIEW, 'plain', g.hoursAgo));
    }
    for (const m of MALFORMED_CASES) {
      const p = patientWithVitals(m.id, '1954-01-01', MALFORMED_VITALS);
      resources.push(...p.resources, ...chestReport(m.id, `${m.id}-chest`, RLL_PNEUMONIA, XR_2VIEW), ...m.extras.map((k) => malformedReport(m.id, k)));
      expectedBasis.set(m.id, [`DiagnosticReport/${m.id}-chest`, ...p.refs].sort());
    }
    const html = patientWithVitals('html-script', '1979-01-01', MALFORMED_VITALS);
    resources.push(...html.resources, diagnosticReport('html-script', 'html-script-chest', CT_CHEST, [{ contentType: 'text/html', data: b64(HTML_WITH_SCRIPT), title: 'CT Chest' }]));
    expectedBasis.set('html-script', ['DiagnosticReport/html-script-chest', ...html.refs].sort());
    await server.load(resources as Parameters<RunningFhirServer['load']>[0]);

    client = new FhirClient({ baseUrl: server.url, auth: { type: 'none' } });
    models = await prepareModels(['curb65'], { modelsDir: packagePath('models'), mappingsDir: packagePath('mappings') });
    result = await runSync(client, models, { asOf: AS_OF, identifierSystem: DEFAULT_IDENTIFIER_SYSTEM });
    for (const r of result.results) byPatient.set(r.patientId, r);
    for (const ra of await allAssessments()) assessments.set(ra.subject.reference!.replace(/^Patient\//, ''), ra);
  }, 600_000);

  afterAll(async () => {
    await server?.close();
  });

  it('finishes without failures and accounts for every patient', () => {
    const total = CASES.length + GATE_CASES.length + MALFORMED_CASES.length + 1;
    expect(result.failed).toBe(0);
    expect(result.failures).toEqual([]);
    expect(result.patients).toBe(total);
    const totals = result.byModel.curb65;
    expect(totals.scored).toBe(CASES.length + MALFORMED_CASES.length + 1);
    expect(totals.skippedByReason).toEqual({ 'no-pneumonia-on-chest-imaging': GATE_CASES.length });
    expect(totals.created).toBe(totals.scored);
    expect(assessments.size).toBe(totals.scored);
    // fetched = used + excluded, per patient and in total; excluded-by-reason adds up.
    for (const r of result.results) {
      expect(r.counts!.fetched).toBe(r.counts!.used + r.counts!.excluded);
      expect(Object.values(r.excluded ?? {}).reduce((a, b) => a + (b ?? 0), 0)).toBe(r.counts!.excluded);
    }
    expect(totals.fetched).toBe(totals.used + totals.excluded);
  });

  it('keeps the hand-computed table consistent with the model card', () => {
    const table = models[0].runner.card.evaluation.table!;
    for (const c of CASES) expect(table[c.score]).toMatchObject({ score: c.score, probability: c.probability });
    expect(new Set(CASES.map((c) => c.score))).toEqual(new Set([0, 1, 2, 3, 4, 5]));
  });

  it.each(CASES)('$name', (c) => {
    const r = byPatient.get(c.id)!;
    expect(r).toMatchObject({ status: 'scored', band: c.band, write: 'created' });
    const ra = assessments.get(c.id)!;
    expect(ra).toBeDefined();
    const prediction = ra.prediction![0];
    expect(Math.abs(prediction.probabilityDecimal! - c.probability)).toBeLessThan(1e-6);
    expect(prediction.qualitativeRisk!.coding![0]).toMatchObject({ system: RISK_PROBABILITY, code: c.band });
    // The score itself (the model's second output) travels with the result and the rationale.
    expect(r.outputs).toEqual({ score: c.score });
    expect(prediction.rationale).toMatch(new RegExp(`^score ${c.score}(;|$)`));
    // basis: the chest report (and the note), and every Observation that was measured.
    // The Patient is basis too (age is an input); the rest is exactly the clinical data used.
    expect(ra.basis!.map((b) => b.reference)).toContain(`Patient/${c.id}`);
    expect(clinicalBasis(ra)).toEqual(expectedBasis.get(c.id));
    const n = expectedBasis.get(c.id)!.length;
    expect(r.counts).toEqual({ fetched: n, used: n, excluded: 0 });
    expect(validationIssues(ra as unknown as Resource).filter((i) => i.severity === 'error')).toEqual([]);
  });

  it.each(GATE_CASES)('gate closed, $name: skipped with no-pneumonia-on-chest-imaging, nothing written', (g) => {
    const r = byPatient.get(g.id)!;
    expect(r).toMatchObject({ status: 'skipped', reason: 'no-pneumonia-on-chest-imaging' });
    expect(assessments.has(g.id)).toBe(false);
    // The report that does not affirm pneumonia is fetched and excluded (never basis); the stale one is not fetched.
    expect(r.excluded).toEqual(g.reportFetched ? { unmatched: 1 } : {});
    expect(r.counts).toEqual({ fetched: g.reportFetched ? 4 : 3, used: 3, excluded: g.reportFetched ? 1 : 0 });
  });

  it.each(MALFORMED_CASES)('malformed report ($name) is excluded with its reason, the patient is still scored', (m) => {
    const r = byPatient.get(m.id)!;
    // age 70 -> 1 point; BUN 14 mg/dL, rr 20, 120/80 -> 0.
    expect(r).toMatchObject({ status: 'scored', band: 'low', write: 'created' });
    expect(r.excluded).toEqual(m.excluded);
    expect(r.counts).toEqual({ fetched: 4 + m.extras.length, used: 4, excluded: m.extras.length });
    const ra = assessments.get(m.id)!;
    expect(Math.abs(ra.prediction![0].probabilityDecimal! - 0.032)).toBeLessThan(1e-6);
    expect(clinicalBasis(ra)).toEqual(expectedBasis.get(m.id));
  });

  it('HTML with <script>: the script is removed, the rest of the report is used, unsafe-content is flagged', async () => {
    // Age 45, BUN 14 mg/dL, rr 20, 120/80: score 0. Had the script text leaked ("New confusion"), score 1.
    const r = byPatient.get('html-script')!;
    expect(r).toMatchObject({ status: 'scored', band: 'low', write: 'created' });
    const ra = assessments.get('html-script')!;
    expect(Math.abs(ra.prediction![0].probabilityDecimal! - 0.007)).toBeLessThan(1e-6);
    // The report opened the gate, so it is basis, not an exclusion (src/nlp/report-text.ts: the report
    // is excluded for unsafe-content only when nothing else is left).
    expect(clinicalBasis(ra)).toEqual(expectedBasis.get('html-script'));
    expect(r.excluded).toEqual({});
    expect(r.counts).toEqual({ fetched: 4, used: 4, excluded: 0 });
    // The removed script is counted as a dropped part of a used report, in the patient's result and the totals.
    expect(r.partIssues).toEqual({ 'unsafe-content': 1 });
    expect(result.byModel.curb65.partIssuesByReason['unsafe-content']).toBeGreaterThanOrEqual(1);
    // What src/nlp reports for the report as the server returns it: a part-level unsafe-content warning.
    const stored = await client.read<DiagnosticReport>('DiagnosticReport', 'html-script-chest');
    const analysis = analyzeReport(stored);
    expect(analysis.exclusions).toEqual([]);
    expect(analysis.warnings).toEqual([{ part: 'presentedForm[0]', reason: 'unsafe-content', detail: 'removed active HTML: script' }]);
    expect(analysis.findings.map((f) => `${f.concept.id}:${f.assertion}`)).toEqual(expect.arrayContaining(['pneumonia:affirmed', 'consolidation:affirmed']));
    expect(analysis.findings.some((f) => f.concept.id === 'confusion')).toBe(false);
  });

  it('writes nothing new when the same as-of is synced again', async () => {
    const before = (await allAssessments()).length;
    const again = await runSync(client, models, { asOf: AS_OF, identifierSystem: DEFAULT_IDENTIFIER_SYSTEM, explain: false });
    expect(again.failed).toBe(0);
    const totals = again.byModel.curb65;
    expect(totals.scored).toBe(result.byModel.curb65.scored);
    expect(totals.created).toBe(0);
    expect(totals.alreadyPresent).toBe(totals.scored);
    expect((await allAssessments()).length).toBe(before);
    // Same inputs, same probabilities.
    for (const r of again.results) expect(r.probability).toBe(byPatient.get(r.patientId)!.probability);
  }, 300_000);
});
