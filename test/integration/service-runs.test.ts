import type { Observation } from 'fhir/r4.js';
import type { App } from '../../src/app.js';
import type { Clock } from '../../src/core/clock.js';
import { startService, type RunningService } from '../../src/api/service.js';
import { RunStore, type RunRow } from '../../src/db/runs.js';
import { WatermarkStore } from '../../src/db/watermarks.js';
import type { BatchExecutor, BatchInput, BatchReport } from '../../src/jobs/executor.js';
import { sourceRunQueue } from '../../src/jobs/queues.js';
import type { RunningFhirServer } from '../../src/server/index.js';
import {
  API_KEY,
  API_KEY_SHA256,
  allRiskAssessments,
  createTestDatabase,
  seededFhirServer,
  serviceConfig,
  testApp,
  waitFor,
  type TestDatabase,
} from './support/service.js';

/**
 * The service on the machine's PostgreSQL against the embedded FHIR server: a scheduled run fans out and
 * completes; a batch failure is retried and holds the watermark back; a second trigger while a run is
 * active gets 409; an incremental run re-scores exactly the patients whose data changed; the re-score
 * interval brings stale patients back. One service, runs one after another (the watermark carries over).
 */
const PATIENTS = 12;

let database: TestDatabase;
let fhir: RunningFhirServer;
let patientIds: string[];
let service: RunningService;
let app: App;
let runs: RunStore;
let watermarks: WatermarkStore;
let clockOffsetMs = 0;
const clock: Clock = { now: () => new Date(Date.now() + clockOffsetMs), sleep: (ms) => new Promise((r) => setTimeout(r, ms)) };
/** Replaced per test: how a batch is executed around the real executor. */
let behaviour: (input: BatchInput, real: BatchExecutor) => Promise<BatchReport> = (input, real) => real(input);

beforeAll(async () => {
  database = await createTestDatabase('runs');
  ({ server: fhir, patientIds } = await seededFhirServer(PATIENTS));
  const base = serviceConfig(fhir.url, {
    databaseUrl: database.url,
    apiKeySha256: API_KEY_SHA256,
    // Every second (pg-boss debounces a schedule to one job a minute): the first run starts right away.
    source: { schedule: { cron: '* * * * * *', timezone: 'Europe/Berlin' } },
  });
  // A second source whose server is down: its selection fails on every attempt.
  const down = { ...base.sources[0], id: 'down', baseUrl: 'http://127.0.0.1:9/fhir', schedule: undefined, options: { ...base.sources[0].options, maxRetries: 0 } };
  const config = { ...base, sources: [...base.sources, down] };
  app = testApp();
  service = await startService({
    config,
    app,
    wrapExecutor: (real) => (input) => behaviour(input, real),
    clock,
    listen: { port: 0 },
    boss: { cronMonitorIntervalSeconds: 1, maintenanceIntervalSeconds: 1 },
  });
  runs = new RunStore(service.db);
  watermarks = new WatermarkStore(service.db);
});

afterAll(async () => {
  await service?.stop({ graceSeconds: 1 });
  await app?.close();
  await fhir?.close();
  await database?.drop();
});

async function finished(runId: string): Promise<RunRow> {
  return waitFor(`run ${runId} to finish`, async () => {
    const run = await runs.get(runId);
    return run && (run.state === 'succeeded' || run.state === 'failed') ? run : undefined;
  });
}

async function trigger(body: Record<string, unknown> = {}): Promise<Response> {
  return fetch(`${service.url}/sources/test/runs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

async function riskAssessmentsByPatient(): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const ra of await allRiskAssessments(fhir.url)) {
    const id = ra.subject.reference!.split('/')[1];
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

test('a scheduled run fans out into batches and completes; the watermark moves to where its change window ended', async () => {
  const run = await waitFor('the scheduled run', async () => (await runs.list({ sourceId: 'test' }))[0]);
  // The schedule has done its part; later runs in this file are started through the API.
  await service.boss.unschedule(sourceRunQueue('test'));
  const done = await finished(run.id);
  expect(done).toMatchObject({ state: 'succeeded', trigger: 'schedule', mode: 'full', batchesTotal: 3, patientsTotal: PATIENTS });
  const batches = await runs.batches(run.id);
  expect(batches.map((b) => b.state)).toEqual(['succeeded', 'succeeded', 'succeeded']);
  expect(batches.map((b) => b.patientCount)).toEqual([5, 5, 2]);
  const counts = await runs.counts(run.id);
  const outcomes = counts.outcomes['diabetes-progression'];
  expect((outcomes.scored ?? 0) + (outcomes.skipped ?? 0)).toBe(PATIENTS);
  expect(outcomes.scored).toBeGreaterThan(0);
  const written = await riskAssessmentsByPatient();
  expect([...written.values()].reduce((a, b) => a + b, 0)).toBe(outcomes.scored);
  const marks = await watermarks.get('test', ['diabetes-progression']);
  expect(marks.get('diabetes-progression')?.toISOString()).toBe(done.changesUntil);
});

test('a failed batch is retried; the watermark does not move until the retry succeeded', async () => {
  const before = (await watermarks.get('test', ['diabetes-progression'])).get('diabetes-progression')!;
  let failures = 0;
  let watermarkDuringRetry: Date | undefined;
  let batchDuringRetry: { state: string; errorCode: string | null } | undefined;
  behaviour = async (input, real) => {
    if (input.batchSeq === 1) {
      if (failures === 0) {
        failures++;
        const { AdapterError } = await import('../../src/core/errors.js');
        throw new AdapterError('fhir-unavailable', 'injected: server unavailable', { transient: true });
      }
      watermarkDuringRetry = (await watermarks.get('test', ['diabetes-progression'])).get('diabetes-progression');
      const b = (await runs.batches(input.runId))[1];
      batchDuringRetry = { state: b.state, errorCode: b.errorCode };
    }
    return real(input);
  };
  try {
    const response = await trigger({ full: true });
    expect(response.status).toBe(202);
    const { run } = (await response.json()) as { run: RunRow };
    const done = await finished(run.id);
    expect(done.state).toBe('succeeded');
    expect(failures).toBe(1);
    // While the failed batch waited for its retry, the watermark stayed where the previous run left it.
    expect(watermarkDuringRetry?.toISOString()).toBe(before.toISOString());
    expect(batchDuringRetry).toEqual({ state: 'running', errorCode: 'fhir-unavailable' });
    const batches = await runs.batches(run.id);
    expect(batches[1]).toMatchObject({ state: 'succeeded', attempts: 2, errorCode: 'fhir-unavailable' });
    expect(batches.filter((b) => b.seq !== 1).every((b) => b.attempts === 1)).toBe(true);
    const after = (await watermarks.get('test', ['diabetes-progression'])).get('diabetes-progression')!;
    expect(after.toISOString()).toBe(done.changesUntil);
    expect(after.getTime()).toBeGreaterThan(before.getTime());
    // The API reports the retried failure.
    const detail = (await (await fetch(`${service.url}/runs/${run.id}`, { headers: { authorization: `Bearer ${API_KEY}` } })).json()) as {
      errors: { batch: number; code: string; attempts: number }[];
    };
    expect(detail.errors).toEqual([expect.objectContaining({ batch: 1, code: 'fhir-unavailable', attempts: 2 })]);
  } finally {
    behaviour = (input, real) => real(input);
  }
});

test('a second trigger while the source is running gets 409; once it has finished, a new run starts', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let entered = false;
  behaviour = async (input, real) => {
    entered = true;
    await gate;
    return real(input);
  };
  try {
    const first = await trigger({ full: true });
    expect(first.status).toBe(202);
    const { run } = (await first.json()) as { run: RunRow };
    await waitFor('a batch to start', async () => entered);
    const second = await trigger({ full: true });
    expect(second.status).toBe(409);
    expect(second.headers.get('content-type')).toMatch(/application\/fhir\+json/);
    const outcome = (await second.json()) as { resourceType: string; issue: { code: string; details: { text: string } }[] };
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue[0].code).toBe('conflict');
    expect(outcome.issue[0].details.text).toContain(run.id);
    release();
    expect((await finished(run.id)).state).toBe('succeeded');
  } finally {
    release();
    behaviour = (input, real) => real(input);
  }
  const third = await trigger({});
  expect(third.status).toBe(202);
  await finished(((await third.json()) as { run: RunRow }).run.id);
});

test('an incremental run after three patients got new data re-scores exactly those three and writes nothing for the others', async () => {
  const changed = [patientIds[1], patientIds[4], patientIds[9]];
  // Data recorded after the last run's change window (the clock of the server and the service is one).
  await new Promise((r) => setTimeout(r, 20));
  for (const id of changed) {
    // A newer glucose, a little above the last one (a value far outside the training data would be
    // refused by the model's out-of-distribution check).
    const last = (await (await fetch(`${fhir.url}/Observation/${id}-glu`)).json()) as Observation;
    const glucose: Observation = {
      resourceType: 'Observation',
      status: 'final',
      code: last.code,
      subject: { reference: `Patient/${id}` },
      effectiveDateTime: new Date(Date.now() - 3600_000).toISOString(),
      valueQuantity: { ...last.valueQuantity, value: last.valueQuantity!.value! + 5 },
    };
    await fhir.load(glucose as Parameters<RunningFhirServer['load']>[0]);
  }
  const before = await riskAssessmentsByPatient();
  const response = await trigger({});
  expect(response.status).toBe(202);
  const { run } = (await response.json()) as { run: RunRow };
  const done = await finished(run.id);
  expect(done).toMatchObject({ state: 'succeeded', mode: 'incremental', patientsTotal: 3 });
  expect(done.selection).toMatchObject({ changed: 3, stale: 0, total: 3 });
  const { items } = await runs.outcomes(run.id);
  expect(items.map((o) => o.patientId).sort()).toEqual([...changed].sort());
  expect(items.map((o) => `${o.status}:${o.write}:${o.reason ?? ''}`)).toEqual(changed.map(() => 'scored:created:'));
  const after = await riskAssessmentsByPatient();
  for (const id of patientIds) expect(after.get(id) ?? 0).toBe((before.get(id) ?? 0) + (changed.includes(id) ? 1 : 0));
});

test('the re-score interval brings back patients whose last score is older than it, without any data change', async () => {
  clockOffsetMs = 8 * 86_400_000; // P7D interval; a week and a day later
  try {
    const response = await trigger({});
    expect(response.status).toBe(202);
    const { run } = (await response.json()) as { run: RunRow };
    const done = await finished(run.id);
    expect(done.mode).toBe('incremental');
    // Every patient evaluated before is stale now; nothing changed on the server.
    expect(done.selection).toMatchObject({ changed: 0, stale: PATIENTS, total: PATIENTS });
    const { total } = await runs.outcomes(run.id);
    expect(total).toBe(PATIENTS);
  } finally {
    clockOffsetMs = 0;
  }
});

test('a run whose patient selection fails on every attempt fails with the cause, and frees its source', async () => {
  const first = await fetch(`${service.url}/sources/down/runs`, { method: 'POST', headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' }, body: '{}' });
  expect(first.status).toBe(202);
  const { run } = (await first.json()) as { run: RunRow };
  const done = await finished(run.id);
  expect(done).toMatchObject({ state: 'failed', errorCode: 'fhir-unavailable', batchesTotal: 0 });
  expect(done.errorMessage).toMatch(/^selecting the patients failed on every attempt: /);
  const again = await fetch(`${service.url}/sources/down/runs`, { method: 'POST', headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' }, body: '{}' });
  expect(again.status).toBe(202);
});

test('a batch failing on every retry fails the run, is reported per patient, and leaves the watermark where it was', async () => {
  const before = (await watermarks.get('test', ['diabetes-progression'])).get('diabetes-progression')!;
  let attempts = 0;
  behaviour = async (input, real) => {
    if (input.batchSeq === 0) {
      attempts++;
      const { AdapterError } = await import('../../src/core/errors.js');
      throw new AdapterError('fhir-rejected', 'injected: the server rejects this batch');
    }
    return real(input);
  };
  try {
    const response = await trigger({ full: true });
    const { run } = (await response.json()) as { run: RunRow };
    const done = await finished(run.id);
    expect(done).toMatchObject({ state: 'failed', errorCode: 'batches-failed' });
    expect(done.errorMessage).toMatch(/1 of 3 batches failed after all retries \(fhir-rejected\)/);
    expect(attempts).toBe(4); // the first attempt and retryLimit (3) retries
    const batches = await runs.batches(run.id);
    expect(batches[0]).toMatchObject({ state: 'failed', attempts: 4, errorCode: 'fhir-rejected' });
    const counts = await runs.counts(run.id);
    expect(counts.outcomes['diabetes-progression'].failed).toBe(5);
    expect((await watermarks.get('test', ['diabetes-progression'])).get('diabetes-progression')!.toISOString()).toBe(before.toISOString());
  } finally {
    behaviour = (input, real) => real(input);
  }
});
