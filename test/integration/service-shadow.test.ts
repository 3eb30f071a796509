import type { Bundle, RiskAssessment } from 'fhir/r4.js';
import { startService, type RunningService } from '../../src/api/service.js';
import type { App } from '../../src/app.js';
import { RunStore, type OutcomeRow, type RunRow } from '../../src/db/runs.js';
import type { RunningFhirServer } from '../../src/server/index.js';
import { API_KEY, API_KEY_SHA256, allRiskAssessments, createTestDatabase, seededFhirServer, serviceConfig, testApp, waitFor, type TestDatabase } from './support/service.js';

/**
 * A source in shadow mode (its own `options.shadow`, the rest of the site live): its runs write every
 * RiskAssessment `preliminary` and no CarePlan. Going live (the option removed, a full run started) writes
 * a final RiskAssessment, with its proposals, for every scored patient, also those whose data did not
 * change since the shadow run. On the machine's PostgreSQL and the embedded FHIR server.
 */
const PATIENTS = 6;
let database: TestDatabase;
let fhir: RunningFhirServer;
let app: App;
let service: RunningService | undefined;

async function start(shadow: boolean | undefined): Promise<RunningService> {
  const config = serviceConfig(fhir.url, {
    databaseUrl: database.url,
    apiKeySha256: API_KEY_SHA256,
    source: { options: { batchSize: 3, overlap: 'PT0S', rescoreInterval: 'P7D', ...(shadow === undefined ? {} : { shadow }) } },
  });
  return startService({ config, app, listen: { port: 0 } });
}

async function runNow(s: RunningService, body: Record<string, unknown>): Promise<{ run: RunRow; outcomes: OutcomeRow[] }> {
  const response = await fetch(`${s.url}/sources/test/runs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(response.status).toBe(202);
  const { run } = (await response.json()) as { run: RunRow };
  const runs = new RunStore(s.db);
  const done = await waitFor(`run ${run.id}`, async () => {
    const r = await runs.get(run.id);
    return r?.state === 'succeeded' || r?.state === 'failed' ? r : undefined;
  });
  return { run: done, outcomes: (await runs.outcomes(run.id, { limit: 1000 })).items };
}

async function carePlanCount(): Promise<number> {
  const bundle = (await (await fetch(`${fhir.url}/CarePlan?_summary=count`)).json()) as Bundle;
  return bundle.total ?? 0;
}

beforeAll(async () => {
  database = await createTestDatabase('shadow');
  ({ server: fhir } = await seededFhirServer(PATIENTS));
  app = testApp();
});

afterAll(async () => {
  await service?.stop({ graceSeconds: 1 });
  await app?.close();
  await fhir?.close();
  await database?.drop();
});

test('a shadow source writes preliminary RiskAssessments and no CarePlan; going live writes final ones for every scored patient', async () => {
  service = await start(true);
  const shadowRun = await runNow(service, {});
  expect(shadowRun.run.state).toBe('succeeded');
  const scored = shadowRun.outcomes.filter((o) => o.status === 'scored');
  expect(scored.length).toBeGreaterThan(0);
  const shadowAssessments = await allRiskAssessments(fhir.url);
  expect(shadowAssessments).toHaveLength(scored.length);
  expect(shadowAssessments.every((ra) => ra.status === 'preliminary')).toBe(true);
  expect(await carePlanCount()).toBe(0);
  await service.stop({ graceSeconds: 1 });

  // Live: nothing changed in the data, and a full run still writes the final scores.
  service = await start(undefined);
  const live = await runNow(service, { full: true });
  expect(live.run).toMatchObject({ state: 'succeeded', mode: 'full' });
  expect(live.outcomes.filter((o) => o.status === 'scored').map((o) => o.patientId).sort()).toEqual(scored.map((o) => o.patientId).sort());
  const finals = (await allRiskAssessments(fhir.url)).filter((ra: RiskAssessment) => ra.status === 'final');
  expect(finals).toHaveLength(scored.length);
  expect(await carePlanCount()).toBeGreaterThan(0);

  // Live and unchanged: nothing new.
  const again = await runNow(service, { full: true });
  expect(again.outcomes.every((o) => o.status !== 'scored')).toBe(true);
  expect((await allRiskAssessments(fhir.url)).length).toBe(2 * scored.length);
});
