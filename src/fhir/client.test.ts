import { PassThrough } from 'node:stream';
import type { Bundle, Observation } from 'fhir/r4.js';
import { AdapterError } from '../core/errors.js';
import { createLogger } from '../core/log.js';
import type { AuthProvider } from './auth/provider.js';
import { FhirClient, parseRetryAfter, type ExchangeEvent, type FhirClientOptions, type SearchPage } from './client.js';
import { caught } from './testing/assertions.js';
import { recordingClock, searchset, sendJson, startPeer, type PeerHandler, type ScriptedPeer } from './testing/scripted-peer.js';

const peers: ScriptedPeer[] = [];
async function peer(handler: PeerHandler): Promise<ScriptedPeer> {
  const p = await startPeer(handler);
  peers.push(p);
  return p;
}
afterEach(async () => {
  await Promise.all(peers.splice(0).map((p) => p.close()));
});

function clientFor(p: ScriptedPeer, extra: Partial<FhirClientOptions> = {}) {
  const clock = recordingClock();
  const client = new FhirClient({ baseUrl: p.baseUrl, clock, random: () => 0.5, ...extra });
  return { client, clock };
}

async function allPages<T extends import('fhir/r4.js').Resource>(gen: AsyncGenerator<SearchPage<T>>) {
  const pages: SearchPage<T>[] = [];
  for await (const page of gen) pages.push(page);
  return pages;
}

const patient = (id: string) => ({ resourceType: 'Patient', id });
const obs = (id: string) => ({ resourceType: 'Observation', id, status: 'final', code: {}, subject: { reference: 'Patient/p1' } });

describe('FhirClient.search paging', () => {
  it('follows absolute and relative next links through 3 pages and separates included resources', async () => {
    const p = await peer((req, res, { baseUrl }) => {
      if (req.url === '/fhir/Observation?page=2') return sendJson(res, 200, searchset([obs('o2')], 'Observation?page=3'));
      if (req.url === '/fhir/Observation?page=3') return sendJson(res, 200, searchset([obs('o3')]));
      if (req.url.startsWith('/fhir/Observation?')) {
        return sendJson(res, 200, searchset([obs('o1')], `${baseUrl}/Observation?page=2`, [patient('p1')]));
      }
      sendJson(res, 404, {});
    });
    const { client } = clientFor(p);
    const pages = await allPages(client.search<Observation>('Observation', { code: 'http://loinc.org|4548-4', date: ['ge2020-01-01', 'le2025-01-01'] }));
    expect(pages.map((pg) => pg.resources.map((r) => r.id))).toEqual([['o1'], ['o2'], ['o3']]);
    expect(pages[0].included.map((r) => r.id)).toEqual(['p1']);
    expect(p.requests.map((r) => r.url)).toEqual([
      '/fhir/Observation?code=http%3A%2F%2Floinc.org%7C4548-4&date=ge2020-01-01&date=le2025-01-01',
      '/fhir/Observation?page=2',
      '/fhir/Observation?page=3',
    ]);
  });

  it('refuses a next link to another origin and never contacts it', async () => {
    const elsewhere = await peer((_req, res) => sendJson(res, 200, searchset([])));
    const p = await peer((_req, res) => sendJson(res, 200, searchset([obs('o1')], `${elsewhere.baseUrl}/Observation?page=2`)));
    const { client } = clientFor(p, { auth: { type: 'bearer', token: 'secret-token' } });
    const seen: string[] = [];
    const err = await caught(
      (async () => {
        for await (const page of client.search<Observation>('Observation', {})) seen.push(...page.resources.map((r) => r.id!));
      })(),
    );
    expect(err.code).toBe('fhir-unsafe-link');
    expect(err.transient).toBe(false);
    expect(seen).toEqual(['o1']);
    expect(elsewhere.requests).toHaveLength(0);
  });

  it('stops a next link that loops back to a page already read', async () => {
    const p = await peer((_req, res) => sendJson(res, 200, searchset([obs('o1')], 'Observation?page=2')));
    const { client } = clientFor(p);
    const err = await caught(allPages(client.search('Observation', {})));
    expect(err.code).toBe('fhir-invalid-response');
    expect(p.requests.map((r) => r.url)).toEqual(['/fhir/Observation', '/fhir/Observation?page=2']);
  });

  it('rejects an answer that is not a Bundle', async () => {
    const p = await peer((_req, res) => sendJson(res, 200, { resourceType: 'OperationOutcome', issue: [] }));
    const { client } = clientFor(p);
    expect((await caught(allPages(client.search('Observation', {})))).code).toBe('fhir-invalid-response');
  });

  it('rejects a 200 whose body is not JSON, without retrying', async () => {
    const p = await peer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>login</html>');
    });
    const { client } = clientFor(p);
    const err = await caught(client.read('Patient', 'p1'));
    expect(err.code).toBe('fhir-invalid-response');
    expect(p.requests).toHaveLength(1);
  });
});

describe('FhirClient retries', () => {
  it('honours Retry-After in delta-seconds', async () => {
    const p = await peer((_req, res, { index }) =>
      index === 0 ? sendJson(res, 429, {}, { 'retry-after': '2' }) : sendJson(res, 200, patient('p1')),
    );
    const { client, clock } = clientFor(p);
    expect((await client.read('Patient', 'p1')).id).toBe('p1');
    expect(clock.sleeps).toEqual([2000]);
  });

  it('honours Retry-After as an HTTP-date, measured from the injected clock', async () => {
    const now = new Date('2025-01-15T12:00:00Z');
    const p = await peer((_req, res, { index }) =>
      index === 0
        ? sendJson(res, 503, {}, { 'retry-after': new Date(now.getTime() + 7000).toUTCString() })
        : sendJson(res, 200, patient('p1')),
    );
    const clock = recordingClock(now);
    const client = new FhirClient({ baseUrl: p.baseUrl, clock });
    await client.read('Patient', 'p1');
    expect(clock.sleeps).toEqual([7000]);
  });

  it('caps a long Retry-After at maxRetryAfterMs', async () => {
    const p = await peer((_req, res, { index }) =>
      index === 0 ? sendJson(res, 429, {}, { 'retry-after': '3600' }) : sendJson(res, 200, patient('p1')),
    );
    const { client, clock } = clientFor(p, { maxRetryAfterMs: 30_000 });
    await client.read('Patient', 'p1');
    expect(clock.sleeps).toEqual([30_000]);
  });

  it('retries a 503 with jittered backoff, then succeeds', async () => {
    const p = await peer((_req, res, { index }) => (index === 0 ? sendJson(res, 503, {}) : sendJson(res, 200, patient('p1'))));
    const { client, clock } = clientFor(p); // random() = 0.5 → half of baseMs 250
    await client.read('Patient', 'p1');
    expect(clock.sleeps).toEqual([125]);
    expect(p.requests).toHaveLength(2);
  });

  it('retries after the server drops the connection', async () => {
    const p = await peer((_req, res, { index, socket }) => {
      if (index === 0) socket.destroy();
      else sendJson(res, 200, patient('p1'));
    });
    const { client, clock } = clientFor(p);
    expect((await client.read('Patient', 'p1')).id).toBe('p1');
    expect(clock.sleeps).toHaveLength(1);
    expect(p.requests).toHaveLength(2);
  });

  it('times out a stalled request and retries it', async () => {
    const p = await peer((_req, res, { index }) => {
      if (index === 0) return; // never answers
      sendJson(res, 200, patient('p1'));
    });
    const { client } = clientFor(p, { timeoutMs: 200 });
    const started = Date.now();
    expect((await client.read('Patient', 'p1')).id).toBe('p1');
    expect(Date.now() - started).toBeLessThan(5000);
    expect(p.requests).toHaveLength(2);
  });

  it('reports a timeout as transient fhir-unavailable once retries are exhausted', async () => {
    const p = await peer(() => undefined);
    const { client } = clientFor(p, { timeoutMs: 100, maxRetries: 1 });
    const err = await caught(client.read('Patient', 'p1'));
    expect(err.code).toBe('fhir-unavailable');
    expect(err.transient).toBe(true);
    expect(err.details).toMatchObject({ kind: 'timeout', attempts: 2 });
  });

  it('gives up after maxRetries with a transient error, backing off exponentially up to maxMs', async () => {
    const p = await peer((_req, res) => sendJson(res, 502, {}));
    const { client, clock } = clientFor(p, { maxRetries: 4, backoff: { baseMs: 100, maxMs: 500 }, random: () => 0.999 });
    const err = await caught(client.read('Patient', 'p1'));
    expect(err.code).toBe('fhir-unavailable');
    expect(err.transient).toBe(true);
    expect(err.status).toBe(502);
    expect(err.message).toMatch(/failed on all 5 attempts/);
    expect(err.details).toMatchObject({ attempts: 5 });
    expect(p.requests).toHaveLength(5);
    expect(clock.sleeps).toEqual([99, 199, 399, 499]);
  });

  it.each([
    [400, 'fhir-rejected'],
    [404, 'fhir-not-found'],
    [401, 'fhir-auth'],
    [403, 'fhir-auth'],
    [422, 'fhir-rejected'],
    [501, 'fhir-rejected'],
  ])('treats HTTP %i as permanent %s and does not retry', async (status, code) => {
    const p = await peer((_req, res) =>
      sendJson(res, status, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid' }] }),
    );
    const { client, clock } = clientFor(p);
    const err = await caught(client.read('Patient', 'p1'));
    expect(err.code).toBe(code);
    expect(err.transient).toBe(false);
    expect(err.status).toBe(status);
    expect(err.details).toMatchObject({ issueCodes: ['invalid'] });
    expect(p.requests).toHaveLength(1);
    expect(clock.sleeps).toEqual([]);
  });

  it('does not follow redirects, so credentials stay on the configured server', async () => {
    const elsewhere = await peer((_req, res) => sendJson(res, 200, patient('p1')));
    const p = await peer((_req, res) => {
      res.writeHead(302, { location: `${elsewhere.baseUrl}/Patient/p1` });
      res.end();
    });
    const { client } = clientFor(p, { auth: { type: 'bearer', token: 't' } });
    expect((await caught(client.read('Patient', 'p1'))).code).toBe('fhir-rejected');
    expect(elsewhere.requests).toHaveLength(0);
  });
});

describe('FhirClient.transaction', () => {
  const tx: Bundle = { resourceType: 'Bundle', type: 'transaction', entry: [] };
  const ok = { resourceType: 'Bundle', type: 'transaction-response', entry: [] };

  it('POSTs to the base and retries a 503 (the server did not process it)', async () => {
    const p = await peer((_req, res, { index }) => (index === 0 ? sendJson(res, 503, {}) : sendJson(res, 200, ok)));
    const { client } = clientFor(p);
    expect((await client.transaction(tx)).type).toBe('transaction-response');
    expect(p.requests.map((r) => `${r.method} ${r.url}`)).toEqual(['POST /fhir/', 'POST /fhir/']);
    expect(JSON.parse(p.requests[0].body)).toEqual(tx);
  });

  it.each([
    ['a 500', (res: import('node:http').ServerResponse): void => sendJson(res, 500, {})],
    ['a dropped connection', (_res: unknown, socket: import('node:net').Socket): void => void socket.destroy()],
  ])('does not resend after %s, which may have been processed, but reports it transient', async (_name, fault) => {
    const p = await peer((_req, res, { socket }) => fault(res, socket));
    const { client } = clientFor(p);
    const err = await caught(client.transaction(tx));
    expect(err.code).toBe('fhir-unavailable');
    expect(err.transient).toBe(true);
    expect(err.message).toMatch(/after 1 attempt with its outcome unknown/);
    expect(err.details).toMatchObject({ attempts: 1, outcome: 'unknown' });
    expect(p.requests).toHaveLength(1);
  });

  it('with reconcile, reads back after an unknown outcome and resends only what it returns', async () => {
    const p = await peer((_req, res, { index, socket }) => {
      if (index === 0) return void socket.destroy();
      sendJson(res, 200, ok);
    });
    const { client, clock } = clientFor(p);
    const rest: Bundle = { resourceType: 'Bundle', type: 'transaction', entry: [{ request: { method: 'DELETE', url: 'Basic/x' } }] };
    let readBacks = 0;
    const response = await client.transaction(tx, {
      reconcile: async () => {
        readBacks++;
        return rest;
      },
    });
    expect(response?.type).toBe('transaction-response');
    expect(readBacks).toBe(1);
    expect(p.requests.map((r) => JSON.parse(r.body))).toEqual([tx, rest]);
    // The backoff, and at least the settle time after a lost connection, before the read-back.
    expect(clock.sleeps).toEqual([1000]);
  });

  it('with reconcile, resolves undefined when the read-back finds everything landed', async () => {
    const p = await peer((_req, res) => sendJson(res, 500, {}));
    const { client, clock } = clientFor(p);
    expect(await client.transaction(tx, { reconcile: async () => undefined })).toBeUndefined();
    expect(p.requests).toHaveLength(1);
    expect(clock.sleeps).toEqual([125]); // a 500 came back: the server is done with it, only the backoff
  });

  it('with reconcile, resends after 429/503 without reading back (the server did nothing)', async () => {
    const p = await peer((_req, res, { index }) => (index === 0 ? sendJson(res, 429, {}, { 'retry-after': '1' }) : sendJson(res, 200, ok)));
    const { client } = clientFor(p);
    let readBacks = 0;
    await client.transaction(tx, { reconcile: async () => (readBacks++, tx) });
    expect(readBacks).toBe(0);
    expect(p.requests).toHaveLength(2);
  });

  it('with reconcile, reads back even when no retry is left, and says how many attempts were made', async () => {
    const p = await peer((_req, res) => sendJson(res, 500, {}));
    const { client } = clientFor(p, { maxRetries: 1 });
    let readBacks = 0;
    const err = await caught(client.transaction(tx, { reconcile: async () => (readBacks++, tx) }));
    expect(readBacks).toBe(2);
    expect(p.requests).toHaveLength(2);
    expect(err.message).toMatch(/failed on all 2 attempts/);
    // With no retries at all, the message says so rather than claiming retries.
    const single = clientFor(p, { maxRetries: 0 }).client;
    expect((await caught(single.transaction(tx, { reconcile: async () => tx }))).message).toMatch(/its only attempt/);
  });
});

describe('FhirClient exchange events', () => {
  it('reports every HTTP attempt once, with its outcome and status, and never a URL or id', async () => {
    const p = await peer((_req, res, { index }) => {
      if (index === 0) return sendJson(res, 503, {});
      if (index === 1) return sendJson(res, 200, patient('secret-patient-7'));
      sendJson(res, 404, {});
    });
    const events: ExchangeEvent[] = [];
    const { client } = clientFor(p, { onExchange: (e) => events.push(e) });
    await client.read('Patient', 'secret-patient-7');
    await caught(client.read('Patient', 'gone'));
    expect(events.map(({ durationMs: _d, ...e }) => e)).toEqual([
      { op: 'read', resourceType: 'Patient', attempt: 1, status: 503, outcome: 'retry' },
      { op: 'read', resourceType: 'Patient', attempt: 2, status: 200, outcome: 'ok' },
      { op: 'read', resourceType: 'Patient', attempt: 1, status: 404, outcome: 'failed' },
    ]);
    for (const e of events) {
      expect(Object.keys(e).sort()).toEqual(['attempt', 'durationMs', 'op', 'outcome', 'resourceType', 'status']);
      expect(typeof e.durationMs).toBe('number');
    }
    expect(JSON.stringify(events)).not.toMatch(/secret|gone|http|\//);
  });

  it('keeps going when the observer throws', async () => {
    const p = await peer((_req, res) => sendJson(res, 200, patient('p1')));
    const { client } = clientFor(p, {
      onExchange: () => {
        throw new Error('metrics down');
      },
    });
    expect((await client.read('Patient', 'p1')).id).toBe('p1');
  });
});

describe('FhirClient auth seam', () => {
  /** An AuthProvider whose token changes on each refresh. */
  function rotating(): AuthProvider & { refreshes: number } {
    let token = 1;
    return {
      kind: 'test',
      refreshes: 0,
      async headers() {
        return { authorization: `Bearer t${token}` };
      },
      async refresh() {
        this.refreshes++;
        token++;
        return true;
      },
    };
  }

  it('on a 401, asks the provider once for new credentials and replays the request once', async () => {
    const p = await peer((req, res) => (req.headers.authorization === 'Bearer t1' ? sendJson(res, 401, {}) : sendJson(res, 200, patient('p1'))));
    const auth = rotating();
    const { client, clock } = clientFor(p, { auth });
    expect((await client.read('Patient', 'p1')).id).toBe('p1');
    expect(auth.refreshes).toBe(1);
    expect(p.requests.map((r) => r.headers.authorization)).toEqual(['Bearer t1', 'Bearer t2']);
    expect(clock.sleeps).toEqual([]); // a replay, not a backoff
  });

  it('lets a second 401 stand as a permanent fhir-auth error', async () => {
    const p = await peer((_req, res) => sendJson(res, 401, {}));
    const auth = rotating();
    const { client } = clientFor(p, { auth });
    const err = await caught(client.transaction({ resourceType: 'Bundle', type: 'transaction', entry: [] }));
    expect(err.code).toBe('fhir-auth');
    expect(err.transient).toBe(false);
    expect(err.message).toMatch(/again with renewed test credentials/);
    expect(auth.refreshes).toBe(1);
    expect(p.requests).toHaveLength(2);
  });

  it('does not replay a 401 for static credentials', async () => {
    const p = await peer((_req, res) => sendJson(res, 401, {}));
    const { client } = clientFor(p, { auth: { type: 'bearer', token: 'static' } });
    expect((await caught(client.read('Patient', 'p1'))).code).toBe('fhir-auth');
    expect(p.requests).toHaveLength(1);
  });
});

describe('FhirClient requests', () => {
  it('sends a bearer token', async () => {
    const p = await peer((_req, res) => sendJson(res, 200, patient('p1')));
    const { client } = clientFor(p, { auth: { type: 'bearer', token: 'tok-123' } });
    await client.read('Patient', 'p1');
    expect(p.requests[0].headers.authorization).toBe('Bearer tok-123');
    expect(p.requests[0].headers.accept).toBe('application/fhir+json');
  });

  it('sends basic credentials', async () => {
    const p = await peer((_req, res) => sendJson(res, 200, patient('p1')));
    const { client } = clientFor(p, { auth: { type: 'basic', username: 'svc', password: 'pa:ss' } });
    await client.read('Patient', 'p1');
    expect(p.requests[0].headers.authorization).toBe(`Basic ${Buffer.from('svc:pa:ss').toString('base64')}`);
  });

  it('keeps at most `concurrency` requests in flight', async () => {
    const p = await peer((req, res) => {
      setTimeout(() => sendJson(res, 200, patient(req.url.split('/').pop()!)), 40);
    });
    const { client } = clientFor(p, { concurrency: 3 });
    const ids = Array.from({ length: 12 }, (_, i) => `p${i}`);
    const read = await Promise.all(ids.map((id) => client.read('Patient', id)));
    expect(read.map((r) => r.id)).toEqual(ids);
    expect(p.maxInFlight).toBe(3);
  });

  it('reads the CapabilityStatement from /metadata', async () => {
    const p = await peer((_req, res) => sendJson(res, 200, { resourceType: 'CapabilityStatement', fhirVersion: '4.0.1' }));
    const { client } = clientFor(p);
    expect((await client.capabilities()).fhirVersion).toBe('4.0.1');
    expect(p.requests[0].url).toBe('/fhir/metadata');
  });

  it('reads Binaries on this server and refuses those elsewhere', async () => {
    const p = await peer((_req, res) => sendJson(res, 200, { resourceType: 'Binary', id: 'b1', contentType: 'text/plain', data: 'aGk=' }));
    const { client } = clientFor(p);
    expect((await client.readBinary('Binary/b1')).data).toBe('aGk=');
    expect((await client.readBinary(`${p.baseUrl}/Binary/b1`)).id).toBe('b1');
    expect((await caught(client.readBinary('https://evil.example/fhir/Binary/b1'))).code).toBe('fhir-unsafe-link');
    expect(p.requests.map((r) => r.url)).toEqual(['/fhir/Binary/b1', '/fhir/Binary/b1']);
  });

  it('validates its options and reports every problem at once', () => {
    expect.assertions(4);
    try {
      new FhirClient({
        baseUrl: 'ftp://user:pw@host/fhir?x=1',
        auth: { type: 'bearer', token: '' },
        timeoutMs: -1,
        concurrency: 0,
      });
    } catch (err) {
      const e = err as AdapterError;
      expect(e.code).toBe('config-invalid');
      expect(e.message).toMatch(/baseUrl/);
      expect(e.message).toMatch(/timeoutMs/);
      expect(e.message).toMatch(/concurrency/);
    }
  });

  it('parses Retry-After forms', () => {
    const now = new Date('2025-01-15T12:00:00Z');
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter('Wed, 15 Jan 2025 12:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Wed, 15 Jan 2025 11:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
  });
});

describe('FhirClient debug tracing warning', () => {
  it.each([
    ['fhir-kit-client:*', true],
    ['*', true],
    ['express:*,*', true],
    ['express:*', false],
    [undefined, false],
  ])('DEBUG=%s warns: %s', (debugNamespaces, warns) => {
    const stream = new PassThrough();
    const lines: string[] = [];
    stream.on('data', (chunk: Buffer) => lines.push(chunk.toString('utf8')));
    const logger = createLogger({ level: 'warn', destination: stream });
    new FhirClient({ baseUrl: 'http://127.0.0.1:1/fhir', logger, debugNamespaces });
    logger.flush();
    expect(lines.join('').includes('fhir-kit-client tracing')).toBe(warns);
  });
});

describe('FhirClient logs', () => {
  it('never log query strings, patient ids, tokens or bodies', async () => {
    const p = await peer((req, res, { index }) => {
      if (index === 0) return sendJson(res, 503, {});
      if (req.url.startsWith('/fhir/Observation')) {
        return sendJson(res, 200, searchset([{ ...obs('o1'), note: [{ text: 'BODY-MARKER' }] }], 'Observation?page=2&subject=Patient/secret-patient-7'));
      }
      sendJson(res, 400, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid', diagnostics: 'BODY-MARKER secret-patient-7' }] });
    });
    const stream = new PassThrough();
    const lines: string[] = [];
    stream.on('data', (chunk: Buffer) => lines.push(chunk.toString('utf8')));
    const logger = createLogger({ level: 'debug', destination: stream });
    const { client } = clientFor(p, { logger, auth: { type: 'bearer', token: 'TOKEN-MARKER' } });

    await caught(allPages(client.search('Observation', { subject: 'Patient/secret-patient-7', code: 'http://loinc.org|4548-4' })));
    const err = await caught(client.read('Patient', 'secret-patient-7'));
    logger.error({ err }, 'a caller logs the error it got');
    logger.flush();
    await new Promise((r) => setImmediate(r));

    const text = lines.join('');
    expect(text).toContain('fhir request'); // the capture works
    expect(text).toContain('"status":503');
    for (const forbidden of ['secret-patient-7', 'TOKEN-MARKER', 'BODY-MARKER', '4548-4', 'subject=', '?page', 'loinc']) {
      expect(text).not.toContain(forbidden);
    }
  });
});
