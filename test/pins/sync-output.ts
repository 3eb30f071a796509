/**
 * The pinned output of a sync: what the adapter writes (RiskAssessments, Provenances, Devices) and the
 * JSON Lines `fhir-ml sync --json` prints, for a demo population on the embedded server, in a canonical
 * text that is byte-for-byte the same on every run (server-assigned ids, versions and timestamps are
 * replaced by what identifies a resource: its identifier, the RiskAssessment a Provenance targets).
 *
 * `test/integration/sync-output.test.ts` compares it with `fixtures/pins/sync-output.ndjson`, so a
 * performance change cannot change a result unnoticed. When a result is meant to change (a new element
 * in the RiskAssessment, a new count in the summary), regenerate the pin and review its diff:
 *
 *   node --import tsx test/pins/sync-output.ts --write
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import type { CarePlan, Device, FhirResource, Provenance, RiskAssessment } from 'fhir/r4.js';
import { summaryLine } from '../../src/cli/summary.js';
import type { Clock } from '../../src/core/clock.js';
import { packagePath } from '../../src/core/paths.js';
import { DEMO_MODELS, seedDemo } from '../../src/demo/demo.js';
import { loadDiabetesRows } from '../../src/demo/diabetes-rows.js';
import { DEMO_AS_OF } from '../../src/demo/seed.js';
import { FhirClient } from '../../src/fhir/client.js';
import { startFhirServer } from '../../src/server/index.js';
import { defaultMapContext, prepareModels, runSync } from '../../src/sync/index.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../../src/writeback/identifiers.js';

export const SYNC_OUTPUT_PIN = packagePath('fixtures/pins/sync-output.ndjson');

/** Demo patients in the pinned run: every variant of the diabetes rows, 25 with chest imaging for CURB-65. */
export const PINNED_PATIENTS = 150;
/** `Provenance.recorded` of the pinned run (the only clock reading that reaches the output). */
const RECORDED = new Date('2026-01-01T06:00:00.000Z');

const fixedClock: Clock = { now: () => new Date(RECORDED), sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)) };

/** The canonical output of a sync of the first `patients` demo patients with the demo models. */
export async function pinnedSyncOutput(patients = PINNED_PATIENTS): Promise<string> {
  const server = await startFhirServer({ port: 0 });
  try {
    await seedDemo(server, loadDiabetesRows().slice(0, patients));
    const client = new FhirClient({ baseUrl: server.url, auth: { type: 'none' } });
    const models = await prepareModels(DEMO_MODELS, { modelsDir: packagePath('models'), mappingsDir: packagePath('mappings') });
    const lines: string[] = [];
    // Small batches, so several are pulled ahead and written while others are scored.
    const result = await runSync(client, models, {
      asOf: DEMO_AS_OF,
      identifierSystem: DEFAULT_IDENTIFIER_SYSTEM,
      batchSize: 40,
      clock: fixedClock,
      mapContext: defaultMapContext(),
      onPatientResult: (r) => lines.push(JSON.stringify({ type: 'patient', ...r })),
    });
    lines.push(summaryLine({ ...result, durationMs: 0 }));
    return [...lines, ...(await writtenResources(client))].join('\n') + '\n';
  } finally {
    await server.close();
  }
}

async function searchAll<T extends FhirResource>(client: FhirClient, type: string): Promise<T[]> {
  const out: T[] = [];
  for await (const page of client.search<T>(type, { _count: '1000' })) out.push(...page.resources);
  return out;
}

/** Everything written, one line each, with server-assigned ids replaced by stable names. */
async function writtenResources(client: FhirClient): Promise<string[]> {
  const devices = await searchAll<Device>(client, 'Device');
  const assessments = await searchAll<RiskAssessment>(client, 'RiskAssessment');
  const provenances = await searchAll<Provenance>(client, 'Provenance');
  const carePlans = await searchAll<CarePlan>(client, 'CarePlan');
  const names = new Map<string, string>();
  for (const d of devices) names.set(`Device/${d.id}`, `Device/{${d.identifier?.[0]?.value}}`);
  for (const ra of assessments) names.set(`RiskAssessment/${ra.id}`, `RiskAssessment/{${ra.identifier?.[0]?.value}}`);
  for (const cp of carePlans) names.set(`CarePlan/${cp.id}`, `CarePlan/{${cp.identifier?.[0]?.value}}`);
  // A CarePlan's content hash covers its author, the Device under its server-assigned id: left out.
  const canonical = (r: FhirResource): string =>
    JSON.stringify({ ...r, id: undefined, meta: undefined }, (key, value: unknown) =>
      key === 'reference' && typeof value === 'string' && names.has(value) ? names.get(value) : value,
    ).replace(/\{"url":"contentHash","valueString":"[0-9a-f]+"\}/g, '{"url":"contentHash"}');
  const lines = [...devices, ...assessments, ...carePlans, ...provenances].map(canonical);
  return lines.sort();
}

export function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export function readPin(): string {
  return readFileSync(SYNC_OUTPUT_PIN, 'utf8');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (!process.argv.includes('--write')) {
    console.error('usage: node --import tsx test/pins/sync-output.ts --write');
    process.exit(64);
  }
  const text = await pinnedSyncOutput();
  writeFileSync(SYNC_OUTPUT_PIN, text);
  console.log(`wrote ${SYNC_OUTPUT_PIN}: ${text.split('\n').length - 1} lines, sha256 ${digest(text)}`);
}
