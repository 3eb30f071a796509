/**
 * Search-speed check of the embedded server over real HTTP: 5,000 Patients, 50,000 Observations, then
 * 100 searches of the shape the adapter's pull sends (50 subjects x 10 LOINC codes x date bound,
 * _count=1000), following next links. Run: `node --import tsx src/server/bench-search.ts [--scan]`
 * (`--scan` disables the subject index to show MemoryRepository's full-scan cost).
 */
import { pathToFileURL } from 'node:url';
import type { Bundle, Observation, Patient } from 'fhir/r4.js';
import { startFhirServer } from './server.js';

const CODES = ['2339-0', '4548-4', '2093-3', '2085-9', '18262-6', '2571-8', '8480-6', '8462-4', '39156-5', '29463-7', '1234-5', '5678-9'];

export async function benchSearch(options: { patients?: number; observations?: number; searches?: number; scan?: boolean } = {}): Promise<{
  loadMs: number;
  searches: number;
  totalMs: number;
  perSearchMs: number;
  matched: number;
}> {
  const patients = options.patients ?? 5000;
  const observations = options.observations ?? 50000;
  const searches = options.searches ?? 100;
  const server = await startFhirServer({ validate: false });
  try {
    if (options.scan) {
      // Route every search through the full scan, for comparison.
      (server.repo as unknown as { candidatesFromIndex: () => undefined }).candidatesFromIndex = () => undefined;
    }
    const t0 = Date.now();
    const pats: Patient[] = Array.from({ length: patients }, (_, i) => ({ resourceType: 'Patient', id: `p${i}`, gender: i % 2 ? 'male' : 'female' }));
    const obs: Observation[] = Array.from({ length: observations }, (_, i) => ({
      resourceType: 'Observation',
      id: `o${i}`,
      status: 'final',
      subject: { reference: `Patient/p${i % patients}` },
      code: { coding: [{ system: 'http://loinc.org', code: CODES[i % CODES.length] }] },
      effectiveDateTime: new Date(Date.UTC(2015, 0, 1) + i * 3_600_000 * 2).toISOString(),
      valueQuantity: { value: i % 200, unit: 'mg/dL', system: 'http://unitsofmeasure.org', code: 'mg/dL' },
    }));
    await server.load(pats as never);
    await server.load(obs as never);
    const loadMs = Date.now() - t0;

    let matched = 0;
    const t1 = Date.now();
    for (let s = 0; s < searches; s++) {
      const subjects = Array.from({ length: 50 }, (_, k) => `Patient/p${(s * 50 + k * 37) % patients}`).join(',');
      const codes = CODES.slice(0, 10).map((c) => `http://loinc.org|${c}`).join(',');
      let url: string | undefined = `${server.url}/Observation?subject=${subjects}&code=${codes}&date=le2024-01-01&_count=1000`;
      while (url) {
        const res = await fetch(url);
        const bundle = (await res.json()) as Bundle;
        matched += bundle.entry?.length ?? 0;
        url = bundle.link?.find((l) => l.relation === 'next')?.url;
      }
    }
    const totalMs = Date.now() - t1;
    return { loadMs, searches, totalMs, perSearchMs: totalMs / searches, matched };
  } finally {
    await server.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const scan = process.argv.includes('--scan');
  benchSearch({ scan, searches: scan ? 10 : 100 }).then((r) => console.log(JSON.stringify({ scan, ...r })));
}
