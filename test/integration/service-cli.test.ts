import { jest } from '@jest/globals';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startService, type RunningService } from '../../src/api/service.js';
import { loadServiceConfig } from '../../src/config/sources.js';
import { main } from '../../src/cli/main.js';
import { packagePath } from '../../src/core/paths.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { migrate } from '../../src/db/migrate.js';
import { RunStore } from '../../src/db/runs.js';
import { startFhirServer, type RunningFhirServer } from '../../src/server/index.js';
import { API_KEY, API_KEY_SHA256, createTestDatabase, serviceConfig, testApp, waitFor, type TestDatabase } from './support/service.js';

/** `fhir-ml runs list|show` (database and --api) and `fhir-ml serve` as a process stopped by SIGTERM. */
let database: TestDatabase;
let db: Database;
let runId: string;
let tmp: string;

async function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  let stdout = '';
  let stderr = '';
  const out = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((stdout += String(chunk)), true));
  const err = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => ((stderr += String(chunk)), true));
  process.exitCode = undefined;
  try {
    return { code: await main(['node', 'fhir-ml', ...args]), stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
    process.exitCode = undefined;
    process.env = saved;
  }
}

beforeAll(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), 'fhirml-cli-'));
  database = await createTestDatabase('cli');
  db = await openDatabase({ url: database.url });
  await migrate(db);
  const runs = new RunStore(db);
  const created = await runs.create({ sourceId: 'main', trigger: 'api', asOf: new Date('2026-01-01T00:00:00Z'), modelIds: ['diabetes-progression'] });
  if (!created.created) throw new Error('no run');
  runId = created.run.id;
  await runs.markSelecting(runId);
  await db.transaction((tx) => runs.fanOut(tx, runId, { mode: 'full', changesUntil: new Date(), selection: { population: 2, total: 2 }, batchSizes: [2] }));
  const claim = await runs.claimBatch(runId, 0, '00000000-0000-4000-8000-000000000003', 'w1');
  await db.transaction((tx) =>
    runs.completeBatch(tx, {
      runId,
      seq: 0,
      attempt: claim!.attempt,
      outcomes: [
        { patientId: 'p-1', modelId: 'diabetes-progression', modelVersion: '1.0.0', status: 'scored', probability: 0.61, band: 'high', write: 'created' },
        { patientId: 'p-2', modelId: 'diabetes-progression', modelVersion: '1.0.0', status: 'skipped', reason: 'insufficient-data' },
      ],
      exclusions: [],
      requests: 4,
      durationMs: 50,
    }),
  );
});

afterAll(async () => {
  await db?.close();
  await database?.drop();
  rmSync(tmp, { recursive: true, force: true });
});

test('runs list and runs show read the history from DATABASE_URL', async () => {
  const list = await run(['runs', 'list'], { DATABASE_URL: database.url });
  expect(list.code).toBe(0);
  expect(list.stdout).toMatch(new RegExp(`${runId}\\s+main\\s+succeeded\\s+full`));
  const show = await run(['runs', 'show', runId, '--outcomes'], { DATABASE_URL: database.url });
  expect(show.code).toBe(0);
  expect(show.stdout).toMatch(/diabetes-progression\s+1\s+1/);
  expect(show.stdout).toMatch(/p-2\s+diabetes-progression\s+skipped\s+insufficient-data/);
  const json = JSON.parse((await run(['runs', 'show', runId, '--json', '--outcomes'], { DATABASE_URL: database.url })).stdout) as { outcomes: { total: number } };
  expect(json.outcomes.total).toBe(2);
  const missing = await run(['runs', 'show', '00000000-0000-4000-8000-00000000ffff'], { DATABASE_URL: database.url });
  expect(missing.code).toBe(66);
  expect((await run(['runs', 'list', '--state', 'bogus'], { DATABASE_URL: database.url })).code).toBe(64);
});

test('runs list --api reads from a running service with the key from FHIR_ML_API_KEY', async () => {
  const app = testApp();
  const service: RunningService = await startService({
    config: serviceConfig('http://127.0.0.1:9/fhir', { databaseUrl: database.url, apiKeySha256: API_KEY_SHA256 }),
    app,
    mode: 'api',
    listen: { port: 0 },
  });
  try {
    const listed = await run(['runs', 'list', '--api', service.url!, '--json'], { FHIR_ML_API_KEY: API_KEY });
    expect(listed.code).toBe(0);
    expect((JSON.parse(listed.stdout) as { runs: { id: string }[] }).runs.map((r) => r.id)).toContain(runId);
    expect((await run(['runs', 'list', '--api', service.url!], {})).code).toBe(64);
  } finally {
    await service.stop();
    await app.close();
  }
});

test('serve without a sources file says how to give one', async () => {
  const r = await run(['serve']);
  expect(r.code).toBe(64);
  expect(r.stderr).toMatch(/--sources FILE or FHIR_ML_SOURCES/);
});

test('fhir-ml serve runs API and worker until SIGTERM, then exits 0', async () => {
  const fhir: RunningFhirServer = await startFhirServer({ port: 0 });
  const sources = path.join(tmp, 'sources.yaml');
  writeFileSync(
    sources,
    `service:\n  api: { port: 0 }\n  apiKeys: [{ name: ops, sha256: ${API_KEY_SHA256} }]\nsources:\n  - id: local\n    baseUrl: ${fhir.url}\n    models: [diabetes-progression]\n    schedule: { cron: "0 2 * * *", timezone: Europe/Berlin }\n`,
  );
  const child = spawn(process.execPath, ['--import', 'tsx', packagePath('src', 'cli', 'main.ts'), 'serve', '--sources', sources], {
    cwd: packagePath(),
    env: { ...process.env, DATABASE_URL: database.url, FHIR_ML_LOG_LEVEL: 'silent' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  try {
    const url = await waitFor('serve to listen', async () => /API (http:\/\/\S+) /.exec(output)?.[1], 90_000);
    expect(output).toMatch(/API and worker, 1 source\(s\), database postgresql/);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${url}/readyz`, { headers: { authorization: `Bearer ${API_KEY}` } });
    expect(ready.status).toBe(200);
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect(code).toBe(0);
    expect(output).toMatch(/SIGTERM, stopping/);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await fhir.close();
  }
});

test('serve --hash-key prints the bare sha256, which a sha256Env variable takes as docker-compose.yml says', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', packagePath('src', 'cli', 'main.ts'), 'serve', '--hash-key'], { cwd: packagePath(), stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stdin!.end(API_KEY);
  expect(await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)))).toBe(0);
  expect(stdout).toBe(`${API_KEY_SHA256}\n`);
  // export FHIR_ML_API_KEY_SHA256=$(printf '%s' "$KEY" | npx fhir-ml serve --hash-key)
  const config = loadServiceConfig(packagePath('fixtures', 'service', 'sources.compose.yaml'), { FHIR_ML_API_KEY_SHA256: stdout.trim() });
  expect(config.apiKeys).toEqual([expect.objectContaining({ name: 'compose', sha256: API_KEY_SHA256 })]);
});

test('serve --api-only on the embedded database is refused before anything starts: no worker could ever run its runs', async () => {
  const sources = path.join(tmp, 'embedded-sources.yaml');
  writeFileSync(sources, `service:\n  apiKeys: [{ name: ops, sha256: ${API_KEY_SHA256} }]\n  database: { dataDir: memory:// }\nsources:\n  - id: local\n    baseUrl: http://127.0.0.1:9/fhir\n    models: [diabetes-progression]\n`);
  const r = await run(['serve', '--sources', sources, '--api-only'], { DATABASE_URL: '' });
  expect(r.code).toBe(64);
  expect(r.stderr).toMatch(/--api-only needs a PostgreSQL server \(DATABASE_URL\)/);
});
