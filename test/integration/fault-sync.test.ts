/**
 * Integration: `fhir-ml sync` (the CLI, in a child process) against the embedded FHIR server behind a
 * fault-injecting proxy. Pins that transient faults on reads and writes never change a run's result:
 * - 20% seeded faults (500, 429 with Retry-After in seconds and as an HTTP-date, 503 with an HTML body,
 *   connection resets, responses lost after the server committed) on every request: exit 0, and the
 *   same RiskAssessments, Provenances and Devices on the server, and the same patient lines and totals
 *   of `sync --json` (request counts and timings aside), as a clean run;
 * - a response lost after commit on every batch transaction, and faults on the Device creates
 *   (500, reset, lost after commit, a stalled answer past the client's timeout): exactly one
 *   RiskAssessment per patient, model and as-of, one Provenance each, one Device per model version.
 */
import { spawn } from 'node:child_process';
import type { CarePlan, Device, Provenance, Resource, RiskAssessment } from 'fhir/r4.js';
import { packagePath } from '../../src/core/paths.js';
import { seedDemo } from '../../src/demo/demo.js';
import { loadDiabetesRows } from '../../src/demo/diabetes-rows.js';
import { FhirClient } from '../../src/fhir/client.js';
import { startFaultProxy, TRANSIENT_FAULTS, type FaultProxy, type FaultRule } from '../../src/fhir/testing/fault-proxy.js';
import { startFhirServer, type RunningFhirServer } from '../../src/server/index.js';

const PATIENTS = 60;
const MODELS = ['diabetes-progression', 'curb65'];
const AS_OF = '2026-01-01';
/** Chosen so that every kind of transient fault is drawn at least once (asserted below). */
const SEED = 2;
/**
 * With 12 attempts per request, a request fails only if 12 draws in a row are faults: 0.2^12 ≈ 4e-9.
 * The seed makes the run reproducible; the budget makes it pass for any seed with overwhelming odds.
 */
const CLI_ENV = { FHIR_ML_MAX_RETRIES: '11', FHIR_ML_TIMEOUT_MS: '3000', FHIR_ML_BATCH_SIZE: '4', FHIR_ML_LOG_LEVEL: 'warn' };

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

function syncCli(fhirUrl: string): Promise<CliRun> {
  // Only what this test sets: nothing of the developer's FHIR_ML_* or DEBUG leaks in.
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FHIR_ML_') && k !== 'DEBUG') env[k] = v;
  const args = ['--import', 'tsx', 'src/cli/main.ts', 'sync', '--fhir-url', fhirUrl, '--model', ...MODELS, '--all', '--as-of', AS_OF, '--json'];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: packagePath(), env: { ...env, ...CLI_ENV }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The JSON Lines of a run, without what legitimately differs between runs (request counts, timings). */
function comparableOutput(stdout: string): { patients: string[]; summary: Record<string, unknown> } {
  const lines = stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { type: string } & Record<string, unknown>);
  const summaries = lines.filter((l) => l.type === 'summary');
  expect(summaries).toHaveLength(1);
  // Request and retry counts and timings differ by nature; everything else must be identical.
  const { requests: _requests, retries: _retries, durationMs: _durationMs, ...summary } = summaries[0];
  return {
    patients: lines
      .filter((l) => l.type === 'patient')
      .map((l) => JSON.stringify(l))
      .sort(),
    summary,
  };
}

async function all<T extends Resource>(client: FhirClient, type: string): Promise<T[]> {
  const out: T[] = [];
  for await (const page of client.search<T>(type, { _count: '1000' })) out.push(...page.resources);
  return out;
}

interface Written {
  assessments: RiskAssessment[];
  carePlans: CarePlan[];
  provenances: Provenance[];
  devices: Device[];
}

async function written(server: RunningFhirServer): Promise<Written> {
  const client = new FhirClient({ baseUrl: server.url });
  return {
    assessments: await all<RiskAssessment>(client, 'RiskAssessment'),
    carePlans: await all<CarePlan>(client, 'CarePlan'),
    provenances: await all<Provenance>(client, 'Provenance'),
    devices: await all<Device>(client, 'Device'),
  };
}

/**
 * What was written, with the server-assigned ids replaced by the identifiers they stand for and the
 * write time (Provenance.recorded) and a CarePlan's stored content hash (it covers its author's
 * server-assigned Device id) dropped, sorted: equal for equal results on two servers.
 */
function canonical(w: Written): string[] {
  const names = new Map<string, string>();
  for (const d of w.devices) names.set(`Device/${d.id}`, `Device#${d.identifier?.[0]?.value}`);
  for (const ra of w.assessments) names.set(`RiskAssessment/${ra.id}`, `RiskAssessment#${ra.identifier?.[0]?.value}`);
  for (const cp of w.carePlans) names.set(`CarePlan/${cp.id}`, `CarePlan#${cp.identifier?.[0]?.value}`);
  const strip = (r: Resource): string => {
    const { id: _id, meta: _meta, ...rest } = r as Resource & { recorded?: string };
    if (r.resourceType === 'Provenance') delete (rest as { recorded?: string }).recorded;
    return JSON.stringify(rest)
      .replace(/\{"url":"contentHash","valueString":"[0-9a-f]+"\}/g, '{"url":"contentHash"}')
      .replace(/"(Device|RiskAssessment|CarePlan)\/([A-Za-z0-9\-.]+)"/g, (m, type: string, id: string) => JSON.stringify(names.get(`${type}/${id}`) ?? m));
  };
  return [...w.devices, ...w.assessments, ...w.carePlans, ...w.provenances].map(strip).sort();
}

describe('sync through a fault-injecting proxy (CLI, integration)', () => {
  const servers: RunningFhirServer[] = [];
  const proxies: FaultProxy[] = [];
  let clean: { run: CliRun; written: Written };

  async function seededServer(): Promise<RunningFhirServer> {
    const server = await startFhirServer({ port: 0 });
    servers.push(server);
    await seedDemo(server, loadDiabetesRows().slice(0, PATIENTS));
    return server;
  }

  async function behindProxy(server: RunningFhirServer, options: { random?: { rate: number; seed: number }; script?: FaultRule[] }) {
    const origin = new URL(server.url).origin;
    const proxy = await startFaultProxy({ target: origin, ...options });
    proxies.push(proxy);
    return { proxy, url: server.url.replace(origin, proxy.origin) };
  }

  beforeAll(async () => {
    const server = await seededServer();
    const run = await syncCli(server.url);
    clean = { run, written: await written(server) };
  }, 120_000);

  afterAll(async () => {
    await Promise.all(proxies.map((p) => p.close()));
    await Promise.all(servers.map((s) => s.close()));
  });

  it('the clean run scores, writes and exits 0 (the reference)', () => {
    expect(clean.run.code).toBe(0);
    const { summary } = comparableOutput(clean.run.stdout);
    expect(summary).toMatchObject({ patients: PATIENTS, failed: 0 });
    expect(clean.written.devices).toHaveLength(MODELS.length);
    expect(clean.written.assessments.length).toBeGreaterThan(PATIENTS);
    // One Provenance per RiskAssessment and per CarePlan proposal.
    expect(clean.written.carePlans.length).toBeGreaterThan(0);
    expect(clean.written.provenances).toHaveLength(clean.written.assessments.length + clean.written.carePlans.length);
  });

  it('with 20% transient faults on reads and writes exits 0 with exactly the clean run’s result', async () => {
    const server = await seededServer();
    const { proxy, url } = await behindProxy(server, { random: { rate: 0.2, seed: SEED } });
    const run = await syncCli(url);

    expect({ code: run.code, stderr: run.stderr.split('\n').filter((l) => /fhir-ml:/.test(l)) }).toEqual({ code: 0, stderr: [] });
    const faults = proxy.injected();
    // Every kind was injected, on reads and on writes, at about the rate asked for.
    expect(TRANSIENT_FAULTS.filter((kind) => !faults[kind])).toEqual([]);
    expect(proxy.log.some((e) => e.method === 'GET' && e.fault)).toBe(true);
    expect(proxy.log.some((e) => e.method === 'POST' && e.fault)).toBe(true);
    const rate = proxy.log.filter((e) => e.fault).length / proxy.log.length;
    expect(rate).toBeGreaterThan(0.1);
    expect(rate).toBeLessThan(0.3);

    expect(comparableOutput(run.stdout)).toEqual(comparableOutput(clean.run.stdout));
    expect(canonical(await written(server))).toEqual(canonical(clean.written));
    // The summary counts every exchange, retries included (a write's read-back is a request of its own).
    const summaryOf = (stdout: string) => JSON.parse(stdout.trim().split('\n').at(-1)!) as { requests: number; retries: number };
    expect(summaryOf(run.stdout).retries).toBeGreaterThan(0);
    expect(summaryOf(run.stdout).requests).toBeGreaterThanOrEqual(summaryOf(clean.run.stdout).requests + summaryOf(run.stdout).retries);
  }, 180_000);

  it('a response lost after commit never duplicates, and faults on the Device creates are retried', async () => {
    const server = await seededServer();
    const isDeviceCreate = (r: { method: string; body: string }) => r.method === 'POST' && r.body.includes('"url":"Device"');
    const isBatchWrite = (r: { method: string; body: string }) => r.method === 'POST' && r.body.includes('"resourceType":"RiskAssessment"');
    const { proxy, url } = await behindProxy(server, {
      script: [
        // First model: a 500 and a reset (nothing reached the server), then committed with the answer lost.
        // Second model: committed, but the answer held back past the client's timeout.
        { match: isDeviceCreate, faults: ['500', 'reset', 'lost-after-commit', 'stall-after-commit'] },
        // The first batches' transactions: committed, answer lost.
        { match: isBatchWrite, faults: ['lost-after-commit', 'lost-after-commit', 'lost-after-commit', 'lost-after-commit'] },
      ],
    });
    const run = await syncCli(url);
    expect(run.code).toBe(0);

    const once = (keys: string[]) => expect(new Set(keys).size).toBe(keys.length);
    const deviceCreates = proxy.log.filter((e) => e.method === 'POST' && e.body?.includes('"url":"Device"'));
    expect(deviceCreates.map((e) => [e.fault, e.forwarded])).toEqual([
      ['500', false],
      ['reset', false],
      ['lost-after-commit', true],
      ['stall-after-commit', true],
    ]);
    const batchWrites = proxy.log.filter((e) => e.method === 'POST' && e.body?.includes('"resourceType":"RiskAssessment"'));
    expect(batchWrites.slice(0, 4).map((e) => [e.fault, e.forwarded])).toEqual(Array.from({ length: 4 }, () => ['lost-after-commit', true]));
    // Each lost answer was recognised by its read-back: no assessment was sent in two transactions.
    const sent = batchWrites.flatMap((e) => [...e.body!.matchAll(/"identifier":\[\{"system":"[^"]+","value":"([^"]+)"/g)].map((m) => m[1]));
    expect(sent.length).toBeGreaterThan(0);
    once(sent);

    const w = await written(server);
    once(w.assessments.map((ra) => `${ra.subject.reference}|${ra.method?.coding?.[0]?.code}|${ra.occurrenceDateTime}`));
    once(w.assessments.map((ra) => ra.identifier![0].value!));
    once(w.provenances.flatMap((p) => p.target.map((t) => t.reference!)));
    // The CarePlan proposals sent in the same transactions were not duplicated either.
    once(w.carePlans.map((cp) => cp.identifier![0].value!));
    once(w.carePlans.map((cp) => `${cp.subject.reference}|${cp.instantiatesCanonical?.[0]}`));
    expect(w.provenances).toHaveLength(w.assessments.length + w.carePlans.length);
    once(w.devices.map((d) => d.identifier![0].value!));
    expect(w.devices).toHaveLength(MODELS.length);

    // And nothing else differs from the clean run, the counts of created assessments included.
    expect(comparableOutput(run.stdout)).toEqual(comparableOutput(clean.run.stdout));
    expect(canonical(w)).toEqual(canonical(clean.written));
  }, 180_000);
});
