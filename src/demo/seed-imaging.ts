import { readFileSync } from 'node:fs';
import type { Binary, DiagnosticReport, FhirResource, ImagingStudy, Observation } from 'fhir/r4.js';
import { packagePath } from '../core/paths.js';
import type { DiabetesRow } from './diabetes-rows.js';
import { bloodPressureFor, demoPatientId, LOINC } from './seed.js';

/**
 * Chest imaging for a share of the demo patients (issue 3): an ImagingStudy, the radiology report on it
 * (realistic report language from fixtures/demo/reports, with findings, negations, hedges and history,
 * sent as plain text, HTML, or a Binary on the same server), and the vitals and labs CURB-65 needs
 * (BUN in mg/dL, respiratory rate, a blood-pressure panel) within the 48 hours before as-of.
 * The blood pressure repeats the patient's earlier values, so the diabetes model's input is unchanged.
 */

interface ChestReportFixture {
  id: string;
  loinc: string;
  title: string;
  text: string;
  labels: Record<string, string>;
}

let fixtures: ChestReportFixture[] | undefined;
export function chestReportFixtures(): ChestReportFixture[] {
  fixtures ??= (JSON.parse(readFileSync(packagePath('fixtures', 'demo', 'reports', 'chest-reports.json'), 'utf8')) as { reports: ChestReportFixture[] }).reports;
  return fixtures;
}

/** Demo patients with chest imaging: every sixth. */
export function hasChestImaging(index: number): boolean {
  return index % 6 === 5;
}

/** The report fixture patient `index` gets. */
export function chestReportFor(index: number): ChestReportFixture {
  const list = chestReportFixtures();
  return list[Math.floor(index / 6) % list.length];
}

const UCUM = 'http://unitsofmeasure.org';
const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** The report as a radiology system would render it to HTML: headings in <h3>, paragraphs in <p>. */
function toHtml(text: string): string {
  const body = text
    .split('\n')
    .map((line) => {
      const m = /^([A-Z][A-Z /]+):\s*(.*)$/.exec(line);
      return m ? `<h3>${escapeHtml(m[1])}</h3><p>${escapeHtml(m[2])}</p>` : `<p>${escapeHtml(line)}</p>`;
    })
    .join('');
  return `<html><body>${body}</body></html>`;
}

export function buildDemoChestImaging(row: DiabetesRow, index: number, asOf: Date): FhirResource[] {
  if (!hasChestImaging(index)) return [];
  const patientId = demoPatientId(index);
  const subject = { reference: `Patient/${patientId}` };
  const fixture = chestReportFor(index);
  const isCt = fixture.loinc === '24627-2';
  const studyAt = new Date(asOf.getTime() - (6 + (index % 30)) * 3_600_000);
  const reportedAt = new Date(studyAt.getTime() + 45 * 60_000);
  const vitalsAt = new Date(asOf.getTime() - (2 + (index % 20)) * 3_600_000).toISOString();
  const out: FhirResource[] = [];

  const study: ImagingStudy = {
    resourceType: 'ImagingStudy',
    id: `${patientId}-chest-study`,
    status: 'available',
    subject,
    started: studyAt.toISOString(),
    modality: [{ system: 'http://dicom.nema.org/resources/ontology/DCM', code: isCt ? 'CT' : 'DX' }],
    numberOfSeries: isCt ? 2 : 1,
    numberOfInstances: isCt ? 240 : 2,
    description: fixture.title,
    series: (isCt ? [120, 120] : [2]).map((instances, s) => ({
      uid: `2.25.${1000 + index}.${s + 1}`,
      number: s + 1,
      modality: { system: 'http://dicom.nema.org/resources/ontology/DCM', code: isCt ? 'CT' : 'DX' },
      numberOfInstances: instances,
      bodySite: { system: 'http://snomed.info/sct', code: '51185008', display: 'Thoracic structure' },
    })),
  };
  out.push(study);

  // Three ways real systems send report text.
  const variant = Math.floor(index / 6) % 3;
  const report: DiagnosticReport = {
    resourceType: 'DiagnosticReport',
    id: `${patientId}-chest-report`,
    status: 'final',
    category: [
      { coding: [{ system: 'http://loinc.org', code: 'LP29684-5', display: 'Radiology' }] },
      { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0074', code: 'RAD', display: 'Radiology' }] },
    ],
    code: { coding: [{ system: LOINC, code: fixture.loinc, display: fixture.title }], text: fixture.title },
    subject,
    effectiveDateTime: studyAt.toISOString(),
    issued: reportedAt.toISOString(),
    imagingStudy: [{ reference: `ImagingStudy/${study.id}` }],
  };
  if (variant === 0) {
    report.presentedForm = [{ contentType: 'text/plain', data: b64(fixture.text), title: fixture.title }];
  } else if (variant === 1) {
    report.presentedForm = [{ contentType: 'text/html', data: b64(toHtml(fixture.text)), title: fixture.title }];
  } else {
    const binary: Binary = { resourceType: 'Binary', id: `${patientId}-chest-report-text`, contentType: 'text/plain', data: b64(fixture.text) };
    out.push(binary);
    report.presentedForm = [{ contentType: 'text/plain', url: `Binary/${binary.id}`, title: fixture.title }];
  }
  out.push(report);

  const bp = bloodPressureFor(row.bp, index);
  const bun = 8 + ((index * 7) % 35); // mg/dL; > 19.6 mg/dL is urea > 7 mmol/L
  const rr = 14 + ((index * 5) % 22); // /min
  const vital = (id: string, code: string, display: string, extra: Partial<Observation>): Observation => ({
    resourceType: 'Observation',
    id: `${patientId}-${id}`,
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: code === '3094-0' ? 'laboratory' : 'vital-signs' }] }],
    code: { coding: [{ system: LOINC, code, display }], text: display },
    subject,
    effectiveDateTime: vitalsAt,
    ...extra,
  });
  out.push(vital('bun', '3094-0', 'Urea nitrogen [Mass/volume] in Serum or Plasma', { valueQuantity: { value: bun, unit: 'mg/dL', system: UCUM, code: 'mg/dL' } }));
  out.push(vital('rr', '9279-1', 'Respiratory rate', { valueQuantity: { value: rr, unit: '/min', system: UCUM, code: '/min' } }));
  out.push(
    vital('bp-ed', '85354-9', 'Blood pressure panel with all children optional', {
      component: [
        { code: { coding: [{ system: LOINC, code: '8480-6', display: 'Systolic blood pressure' }] }, valueQuantity: { value: bp.systolic, unit: 'mm[Hg]', system: UCUM, code: 'mm[Hg]' } },
        { code: { coding: [{ system: LOINC, code: '8462-4', display: 'Diastolic blood pressure' }] }, valueQuantity: { value: bp.diastolic, unit: 'mm[Hg]', system: UCUM, code: 'mm[Hg]' } },
      ],
    }),
  );
  return out;
}
