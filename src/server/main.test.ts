import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { Bundle } from 'fhir/r4.js';
import { silentLogger } from '../core/log.js';
import { parseArgs, runFhirServer } from './main.js';

test('runFhirServer loads, prints one listening line, serves real HTTP and closes', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fhir-main-'));
  writeFileSync(path.join(dir, 'p.ndjson'), `${JSON.stringify({ resourceType: 'Patient', id: 'p1' })}\n`);
  let out = '';
  const stdout = new Writable({ write: (chunk, _enc, cb) => ((out += String(chunk)), cb()) });
  const running = await runFhirServer({ port: 0, load: [dir], logger: silentLogger, stdout, handleSignals: false });
  try {
    expect(out).toBe(`FHIR server listening on ${running.url}\n`);
    expect(running.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/fhir\/R4$/);
    expect(running.loaded?.total).toBe(1);
    const res = await fetch(`${running.url}/Patient?_id=p1`);
    expect(res.headers.get('content-type')).toMatch(/application\/fhir\+json/);
    expect(((await res.json()) as Bundle).total).toBe(1);
  } finally {
    await running.close();
    await running.done;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('parseArgs', () => {
  expect(parseArgs(['--port', '8080', '--load', 'a', 'b', '--no-validate'])).toEqual({ port: 8080, load: ['a', 'b'], validate: false });
  expect(() => parseArgs(['--bogus'])).toThrow(/Unknown option/);
  expect(() => parseArgs(['--port', 'x'])).toThrow(/--port/);
});
