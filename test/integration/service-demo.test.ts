import { spawn, type ChildProcess } from 'node:child_process';
import { packagePath } from '../../src/core/paths.js';
import { waitFor } from './support/service.js';

/**
 * `fhir-ml demo --serve`: after the demo sync the demo's FHIR server, the API and the console keep
 * running, their URLs and the session's API key are printed, the console shows the demo's run to a
 * browser signed in with that key, and SIGTERM stops it all (exit 0). Plain `fhir-ml demo` (what
 * `npm start` runs) still exits on its own.
 */
function fhirMl(args: string[]): { child: ChildProcess; output: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', packagePath('src', 'cli', 'main.ts'), ...args], {
    cwd: packagePath(),
    env: { ...process.env, FHIR_ML_LOG_LEVEL: 'silent', DATABASE_URL: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => output, exit };
}

let serving: ReturnType<typeof fhirMl> | undefined;

afterAll(() => {
  if (serving && serving.child.exitCode === null && serving.child.signalCode === null) serving.child.kill('SIGKILL');
});

test('demo --serve prints the URLs and a session key; the console shows the demo run; SIGTERM stops it', async () => {
  serving = fhirMl(['demo', '--serve', '--port', '0']);
  const { output } = serving;
  const key = await waitFor('the demo to be served', async () => /API key +(\S+)/.exec(output())?.[1], 110_000);
  const consoleUrl = /Console +(http:\/\/\S+)/.exec(output())![1];
  const apiUrl = /API +(http:\/\/\S+)/.exec(output())![1];
  const fhirUrl = /FHIR server +(http:\/\/\S+)/.exec(output())![1];
  expect(consoleUrl).toBe(`${apiUrl}/console/`);
  expect(output()).toMatch(/The service ran the demo population as run [0-9a-f-]{36}: succeeded/);

  // A browser's way in: the key for a session cookie, then the console page and its data.
  const login = await fetch(`${apiUrl}/console/login`, { method: 'POST', body: new URLSearchParams({ apiKey: key }), redirect: 'manual' });
  expect(login.status).toBe(303);
  const cookie = login.headers.get('set-cookie')!.split(';')[0];
  const page = await fetch(consoleUrl, { headers: { cookie }, redirect: 'manual' });
  expect(page.status).toBe(200);
  expect(await page.text()).toMatch(/<html/i);
  const runs = (await (await fetch(`${apiUrl}/runs`, { headers: { cookie } })).json()) as { runs: { state: string; patientsTotal: number; counts: { outcomes: Record<string, Record<string, number>> } }[] };
  expect(runs.runs).toHaveLength(1);
  expect(runs.runs[0].state).toBe('succeeded');
  expect(runs.runs[0].counts.outcomes['diabetes-progression'].scored).toBeGreaterThan(0);
  expect(runs.runs[0].counts.outcomes.curb65).toBeDefined();
  // The FHIR server is still up, with what the demo wrote.
  const total = ((await (await fetch(`${fhirUrl}/RiskAssessment?_summary=count`)).json()) as { total: number }).total;
  expect(total).toBeGreaterThan(0);
  // Without the key, nothing.
  expect((await fetch(`${apiUrl}/runs`)).status).toBe(401);

  serving.child.kill('SIGTERM');
  expect(await serving.exit).toBe(0);
  expect(output()).toMatch(/SIGTERM, stopping/);
});

test('plain demo (npm start) exits by itself when done', async () => {
  const plain = fhirMl(['demo']);
  try {
    expect(await plain.exit).toBe(0);
    expect(plain.output()).toMatch(/Seeded \d+ patients/);
    expect(plain.output()).not.toMatch(/API key/);
  } finally {
    if (plain.child.exitCode === null) plain.child.kill('SIGKILL');
  }
});
