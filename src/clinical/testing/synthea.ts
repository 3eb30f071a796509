// Test helpers: Synthea bundles from ../shared/datasets as a FHIR server would serve them.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Bundle, FhirResource, Patient } from 'fhir/r4.js';
import { sharedDatasetsDir } from '../../config/index.js';

export const SYNTHEA_DIR = path.join(sharedDatasetsDir() ?? path.resolve(process.cwd(), '../shared/datasets'), 'synthea-r4');

/** Whether the Synthea bundles are here; says why tests are skipped when they are not. */
export function haveSynthea(): boolean {
  if (existsSync(SYNTHEA_DIR)) return true;
  console.warn(`skipping: shared dataset ${SYNTHEA_DIR} not found (tests using ../shared/datasets run in CI)`);
  return false;
}

export interface SyntheaPatient {
  file: string;
  patient: Patient;
  /** Every other resource of the bundle, urn:uuid references rewritten to Type/id as a server would. */
  resources: FhirResource[];
  byType<T extends FhirResource['resourceType']>(type: T): Extract<FhirResource, { resourceType: T }>[];
}

/** One bundle: `patient-440.json` -> its Patient and resources (undefined for a bundle without a Patient). */
export function syntheaPatient(file: string): SyntheaPatient | undefined {
  const bundle = JSON.parse(readFileSync(path.join(SYNTHEA_DIR, file), 'utf8')) as Bundle;
  const urnToRef = new Map<string, string>();
  for (const e of bundle.entry ?? []) if (e.fullUrl && e.resource?.id) urnToRef.set(e.fullUrl, `${e.resource.resourceType}/${e.resource.id}`);
  const text = JSON.stringify((bundle.entry ?? []).map((e) => e.resource)).replace(/"reference":"(urn:uuid:[^"]+)"/g, (m, urn: string) =>
    urnToRef.has(urn) ? `"reference":"${urnToRef.get(urn)}"` : m,
  );
  const resources = JSON.parse(text) as FhirResource[];
  const patient = resources.find((r): r is Patient => r.resourceType === 'Patient');
  if (!patient) return undefined;
  const rest = resources.filter((r) => r !== patient);
  return {
    file,
    patient,
    resources: rest,
    byType: <T extends FhirResource['resourceType']>(type: T) => rest.filter((r) => r.resourceType === type) as Extract<FhirResource, { resourceType: T }>[],
  };
}

export function syntheaFiles(): string[] {
  return readdirSync(SYNTHEA_DIR).filter((f) => f.endsWith('.json')).sort();
}
