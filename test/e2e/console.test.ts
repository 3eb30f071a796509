import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startService, type RunningService } from '../../src/api/service.js';
import { packagePath } from '../../src/core/paths.js';
import { RunStore } from '../../src/db/runs.js';
import type { RunningFhirServer } from '../../src/server/index.js';
import type { App } from '../../src/app.js';
import { API_KEY, API_KEY_SHA256, createTestDatabase, seededFhirServer, serviceConfig, testApp, waitFor, type TestDatabase } from '../integration/support/service.js';

/**
 * The web console in real headless Chromium (Debian's package, driven by playwright-core): sign in with
 * an API key, see a completed run with its charts drawn, open a patient's drill-down (written score and
 * rationale) through an opaque outcome id, and save screenshots under test/e2e/out/.
 */
const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'];
const OUT = packagePath('test', 'e2e', 'out');
const available = existsSync(CHROMIUM);
if (!available) {
  const message = `${CHROMIUM} not found: install Debian's chromium package (.ci/run does) to run the console tests`;
  if (process.env.CI) throw new Error(message);
  console.warn(`skipped: ${message}`);
}
const maybe = available ? test : test.skip;

let database: TestDatabase;
let fhir: RunningFhirServer;
let patientIds: string[];
let service: RunningService;
let app: App;
let context: BrowserContext;
let page: Page;
let userDataDir: string;
let runId: string;

beforeAll(async () => {
  if (!available) return;
  database = await createTestDatabase('console');
  ({ server: fhir, patientIds } = await seededFhirServer(15));
  app = testApp();
  service = await startService({
    config: serviceConfig(fhir.url, { databaseUrl: database.url, apiKeySha256: API_KEY_SHA256 }),
    app,
    listen: { port: 0 },
  });
  const started = await fetch(`${service.url}/sources/test/runs`, { method: 'POST', headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' }, body: '{}' });
  runId = ((await started.json()) as { run: { id: string } }).run.id;
  const runs = new RunStore(service.db);
  await waitFor('the run', async () => (await runs.get(runId))?.state === 'succeeded', 90_000);
  userDataDir = mkdtempSync(path.join(tmpdir(), 'fhirml-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1366, height: 900 } });
  page = context.pages()[0] ?? (await context.newPage());
  mkdirSync(OUT, { recursive: true });
});

afterAll(async () => {
  await context?.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  await service?.stop({ graceSeconds: 1 });
  await app?.close();
  await fhir?.close();
  await database?.drop();
});

maybe('the console asks for a sign-in, refuses a wrong key, and shows the completed run after a right one', async () => {
  await page.goto(`${service.url}/console/`);
  expect(new URL(page.url()).pathname).toBe('/console/login');
  await page.getByLabel('API key').fill('wrong-key');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/failed=1/);
  await expect(page.getByRole('alert').textContent()).resolves.toMatch(/not accepted/);

  await page.getByLabel('API key').fill(API_KEY);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${service.url}/console/`);
  const cookies = await context.cookies();
  expect(cookies.find((c) => c.name === 'fhirml_session')).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
  const row = page.getByRole('row').filter({ has: page.getByRole('link', { name: new RegExp(`Run ${runId.slice(0, 8)}`) }) });
  await expect(row.textContent()).resolves.toMatch(/succeeded/);
  expect(await page.getByRole('heading', { level: 1 }).textContent()).toBe('Runs');
});

maybe('the run page draws its charts (probability distribution, bands, trend) with data', async () => {
  await page.getByRole('link', { name: new RegExp(`Run ${runId.slice(0, 8)}`) }).click();
  await page.waitForURL(new RegExp(`#/runs/${runId}$`));
  await page.locator('canvas').nth(2).waitFor();
  // Chart.js reports its datasets; the canvas has drawn pixels. (Browser code as a string: the test's
  // TypeScript has no DOM types.)
  const charts = (await page.evaluate(`[...document.querySelectorAll('canvas')].map((canvas) => {
    const chart = window.Chart.getChart(canvas);
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let drawn = 0;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) drawn++;
    const points = chart ? chart.data.datasets.reduce((n, d) => n + d.data.filter((v) => typeof v === 'number' && v > 0).length, 0) : 0;
    return { label: canvas.getAttribute('aria-label'), datasets: chart ? chart.data.datasets.length : 0, points, drawn };
  })`)) as { label: string; datasets: number; points: number; drawn: number }[];
  expect(charts).toHaveLength(3);
  for (const c of charts) {
    expect(c.datasets).toBeGreaterThan(0);
    expect(c.points).toBeGreaterThan(0);
    expect(c.drawn).toBeGreaterThan(100);
  }
  const exclusions = page.getByRole('table', { name: /exclusions and skips by reason/ });
  await expect(exclusions.textContent()).resolves.toMatch(/excluded/);
  await page.screenshot({ path: path.join(OUT, 'console-run.png'), fullPage: true });
});

maybe('the patient drill-down shows the written score and its rationale, with no patient id in the URL', async () => {
  const scoredRow = page.getByRole('row').filter({ hasText: 'scored' }).first();
  const patientId = (await scoredRow.getByRole('rowheader').textContent())!.trim();
  expect(patientIds).toContain(patientId);
  await scoredRow.getByRole('link', { name: /Details/ }).click();
  await page.waitForSelector('#rationale');
  expect(page.url()).toMatch(/#\/outcomes\/[0-9a-f-]{36}$/);
  expect(page.url()).not.toContain(patientId);
  await expect(page.locator('#risk-assessment-id').textContent()).resolves.toMatch(/^RiskAssessment\/\S+/);
  await expect(page.locator('#score-probability').textContent()).resolves.toMatch(/^\d+\.\d %$/);
  // The clinicians' rationale: measured values and units behind the largest contributions.
  await expect(page.locator('#rationale').textContent()).resolves.toMatch(/\S+ [\d.]+ \S+ (raises|lowers) the risk \([+-]\d+\.\d+ log-odds\)/);
  await expect(page.locator('#risk-assessment-from').textContent()).resolves.toBe('by this run');
  const features = page.getByRole('table', { name: 'Features with units' });
  await expect(features.textContent()).resolves.toMatch(/mg\/dL/);
  await expect(page.getByRole('table', { name: 'Excluded resources and why' }).count()).resolves.toBe(1);
  expect(await page.getByRole('heading', { level: 1 }).textContent()).toContain(patientId);
  await page.screenshot({ path: path.join(OUT, 'console-patient.png'), fullPage: true });
});
