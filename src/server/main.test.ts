import { request as httpRequest } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { Bundle } from 'fhir/r4.js';
import pino from 'pino';
import { silentLogger } from '../core/log.js';
import { isLoopbackHost, parseArgs, runFhirServer } from './main.js';

function sink(): { stream: Writable; text: () => string } {
  let out = '';
  return { stream: new Writable({ write: (chunk, _enc, cb) => ((out += String(chunk)), cb()) }), text: () => out };
}

/** GET with a Host header of the caller's choosing (fetch does not let one forge it). */
function getWithHost(url: string, host: string): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers: { host } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('runFhirServer loads, prints one listening line, serves real HTTP and closes', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fhir-main-'));
  writeFileSync(path.join(dir, 'p.ndjson'), `${JSON.stringify({ resourceType: 'Patient', id: 'p1' })}\n`);
  const out = sink();
  const err = sink();
  const running = await runFhirServer({ port: 0, load: [dir], logger: silentLogger, stdout: out.stream, stderr: err.stream, handleSignals: false });
  try {
    expect(out.text()).toBe(`FHIR server listening on ${running.url}\n`);
    expect(err.text()).toBe(''); // loopback: no warning
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

test('links, Location and fullUrl come from the server base URL, never from a forged Host header', async () => {
  const running = await runFhirServer({ port: 0, logger: silentLogger, stdout: sink().stream, handleSignals: false, defaultPageSize: 1 });
  try {
    for (const id of ['a', 'b']) await fetch(`${running.url}/Patient/${id}`, { method: 'PUT', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify({ resourceType: 'Patient', id }) });
    const res = await getWithHost(`${running.url}/Patient`, 'attacker.example:666');
    expect(res.status).toBe(200);
    const bundle = JSON.parse(res.body) as Bundle;
    const urls = [...(bundle.link ?? []).map((l) => l.url), ...(bundle.entry ?? []).map((e) => e.fullUrl)];
    expect(urls.length).toBeGreaterThanOrEqual(4); // self, first, next + one fullUrl
    for (const url of urls) expect(url?.startsWith(`${running.url}/`)).toBe(true);
    expect(res.body).not.toContain('attacker.example');

    const history = await getWithHost(`${running.url}/Patient/_history`, 'attacker.example');
    expect(history.body).not.toContain('attacker.example');
    expect(JSON.parse(history.body).link[0].url.startsWith(`${running.url}/Patient/_history?`)).toBe(true);
  } finally {
    await running.close();
  }

  // Behind a proxy the public base is configured; the listening address then appears nowhere.
  const proxied = await runFhirServer({ port: 0, baseUrl: 'https://fhir.hospital.example/fhir/R4/', logger: silentLogger, stdout: sink().stream, handleSignals: false });
  try {
    const created = await fetch(`${proxied.url}/Patient`, { method: 'POST', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify({ resourceType: 'Patient' }) });
    expect(created.headers.get('location')).toMatch(/^https:\/\/fhir\.hospital\.example\/fhir\/R4\/Patient\/[^/]+\/_history\/[^/]+$/);
    const page = (await (await fetch(`${proxied.url}/Patient`)).json()) as Bundle;
    expect(page.link?.[0].url).toMatch(/^https:\/\/fhir\.hospital\.example\/fhir\/R4\/Patient\?/);
    expect(((await (await fetch(`${proxied.url}/metadata`)).json()) as { implementation: { url: string } }).implementation.url).toBe('https://fhir.hospital.example/fhir/R4');
  } finally {
    await proxied.close();
  }
});

test('a non-loopback --host warns on stderr and in the log that the server has no authentication', async () => {
  const err = sink();
  const log = sink();
  const logger = pino({ level: 'warn' }, log.stream);
  const running = await runFhirServer({ port: 0, host: '0.0.0.0', logger, stdout: sink().stream, stderr: err.stream, handleSignals: false });
  try {
    expect(err.text()).toMatch(/^fhir-ml: warning: the embedded FHIR server has no authentication and listens on 0\.0\.0\.0/);
    expect(log.text()).toMatch(/without authentication/);
  } finally {
    await running.close();
  }
  // With a gate there is authentication: no warning.
  const gated = sink();
  const withGate = await runFhirServer({ port: 0, host: '0.0.0.0', authorize: () => true, logger: silentLogger, stdout: sink().stream, stderr: gated.stream, handleSignals: false });
  await withGate.close();
  expect(gated.text()).toBe('');
});

test('isLoopbackHost', () => {
  for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) expect(isLoopbackHost(h)).toBe(true);
  for (const h of ['0.0.0.0', '::', '192.168.1.10', 'fhir.example.org', '10.0.0.1']) expect(isLoopbackHost(h)).toBe(false);
});

test('parseArgs', () => {
  expect(parseArgs(['--port', '8080', '--load', 'a', 'b', '--no-validate'])).toEqual({ port: 8080, load: ['a', 'b'], validate: false });
  expect(
    parseArgs(['--base-url', 'https://x.example/fhir/R4/', '--require-single-patient', '--require-observation-category', '--export-polls', '3', '--export-file-size', '500', '--keep-going']),
  ).toEqual({
    load: [],
    baseUrl: 'https://x.example/fhir/R4',
    requireSinglePatient: true,
    requireObservationCategory: true,
    continueOnError: true,
    bulkExport: { inProgressPolls: 3, maxResourcesPerFile: 500 },
  });
  expect(() => parseArgs(['--bogus'])).toThrow(/Unknown option/);
  expect(() => parseArgs(['--port', 'x'])).toThrow(/--port/);
  expect(() => parseArgs(['--export-polls', '-1'])).toThrow(/--export-polls must be a whole number/);
  expect(() => parseArgs(['--base-url', 'ftp://x'])).toThrow(/--base-url must be http/);
  expect(() => parseArgs(['--base-url', 'not a url'])).toThrow(/--base-url must be an absolute/);
});
