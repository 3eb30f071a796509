import { AdapterError } from '../../core/errors.js';
import type { AuthProvider } from '../auth/provider.js';
import { FhirClient } from '../client.js';
import { caught } from '../testing/assertions.js';
import { memoryStaging, startBulkPeer, startFileHost, type BulkPeer } from '../testing/bulk-peer.js';
import { recordingClock, type ScriptedPeer } from '../testing/scripted-peer.js';
import { BulkDataClient } from './client.js';
import { runBulkExport } from './export.js';
import { parseManifest } from './manifest.js';
import { readLines } from './ndjson.js';

const peers: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(peers.splice(0).map((p) => p.close()));
});
async function bulkPeer(options: Parameters<typeof startBulkPeer>[0]): Promise<BulkPeer> {
  const p = await startBulkPeer(options);
  peers.push(p);
  return p;
}
async function fileHost(files: Map<number, string[]>): Promise<ScriptedPeer> {
  const p = await startFileHost(files);
  peers.push(p);
  return p;
}

const json = (r: object) => JSON.stringify(r);
const patient = (id: string) => json({ resourceType: 'Patient', id, meta: { lastUpdated: '2025-01-10T00:00:00Z' }, name: [{ family: 'Secretname' }] });
const obs = (id: string, p: string) => json({ resourceType: 'Observation', id, status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${p}` } });
const outcome = (code: string) => json({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics: 'Patient/p9 Secretname not exported' }] });
const deletion = (ref: string) => json({ resourceType: 'Bundle', type: 'transaction', entry: [{ request: { method: 'DELETE', url: ref } }] });

function clientsFor(baseUrl: string, extra: { auth?: AuthProvider | { type: 'bearer'; token: string }; trustedOrigins?: string[] } = {}) {
  const clock = recordingClock();
  const fhir = new FhirClient({ baseUrl, clock, random: () => 0.5, auth: extra.auth, maxRetryAfterMs: 60_000 });
  const bulk = new BulkDataClient(fhir, { clock, pollIntervalMs: 2000, maxPollWaitMs: 60_000, trustedOrigins: extra.trustedOrigins });
  return { clock, fhir, bulk };
}

const request = { level: { kind: 'patient' as const }, types: ['Patient', 'Observation'] };

describe('bulk export against a scripted Bulk Data server', () => {
  it('honours Retry-After in seconds and as an HTTP-date, retries a 429, caps absurd and falls back on unparsable values, and stages output, error and deleted files', async () => {
    const p = await bulkPeer({
      statusScript: [
        { status: 202, headers: { 'retry-after': '3', 'x-progress': 'exporting (10%)' } },
        { status: 202, headers: { 'retry-after': 'Wed, 15 Jan 2025 12:00:07 GMT' } },
        { status: 429, headers: { 'retry-after': '2' } },
        { status: 202, headers: { 'retry-after': '86400' } },
        { status: 202, headers: { 'retry-after': 'whenever' } },
      ],
      files: [
        { kind: 'output', type: 'Patient', lines: [patient('p1'), patient('p2')] },
        {
          kind: 'output',
          type: 'Observation',
          lines: [obs('o1', 'p1'), '{"resourceType":"Observation", "id": "o2", "note": "Secretname', patient('p3'), json({ resourceType: 'Observation', status: 'final' }), '', obs('o3', 'p2')],
        },
        { kind: 'error', type: 'OperationOutcome', lines: [outcome('not-found'), outcome('processing')] },
        { kind: 'deleted', type: 'Bundle', lines: [deletion('Observation/o-old')] },
      ],
    });
    const { clock, bulk } = clientsFor(p.baseUrl);
    const { store, sink } = memoryStaging();
    const progress: (string | undefined)[] = [];
    const report = await runBulkExport(bulk, store, sink, {
      sourceId: 's1',
      request,
      onProgress: (e) => {
        if (e.phase === 'waiting') progress.push(e.poll.progress);
      },
    });

    // 3 s, the HTTP-date 7 s after "now", the 429's 2 s (transport retry), 86400 s capped to 60 s, the default 2 s.
    expect(clock.sleeps).toEqual([3000, 7000, 2000, 60_000, 2000]);
    expect(progress[0]).toBe('exporting (10%)');
    expect(p.kickOffs).toHaveLength(1);
    expect(p.kickOffs[0].headers.prefer).toBe('respond-async');
    expect(p.kickOffs[0].url).toContain('_type=Patient%2CObservation');
    expect(p.kickOffs[0].url).toContain('_outputFormat=application%2Ffhir%2Bndjson');
    expect(p.polls).toHaveLength(6);

    expect(report.staged).toEqual({ Patient: 2, Observation: 2 });
    expect([...sink.rows.keys()].sort()).toEqual(['Observation/o1', 'Observation/o3', 'Patient/p1', 'Patient/p2']);
    expect(sink.rows.get('Observation/o1')!.patientId).toBe('p1');
    expect(sink.rows.get('Patient/p1')).toMatchObject({ patientId: 'p1', lastUpdated: '2025-01-10T00:00:00Z' });
    expect(report.malformed.count).toBe(3);
    expect(report.malformed.first.map((m) => [m.seq, m.line, m.problem])).toEqual([
      [2, 2, 'not valid JSON'],
      [2, 3, 'a Patient in a file of Observation'],
      [2, 4, 'Observation without an id'],
    ]);
    expect(report.errors).toEqual({ outcomes: 2, issueCodes: { 'not-found': 1, processing: 1 } });
    expect(report.deleted).toBe(1);
    expect(sink.removed).toEqual([{ resourceType: 'Observation', id: 'o-old' }]);
    expect(report.files).toEqual({ output: 2, error: 1, deleted: 1, downloaded: 4, alreadyStaged: 0 });
    expect(report.deletedOnServer).toBe(true);
    expect(p.deletes).toHaveLength(1);
    expect(store.exports.get(report.exportId)!.state).toBe('complete');
    // Bad lines and error files are reported by number and code, never quoted.
    expect(JSON.stringify(report)).not.toContain('Secretname');
  });

  it('sends the access token with files only when required, only to the FHIR server or a trusted origin, and refuses others', async () => {
    const lines = new Map([[1, [patient('p1')]]]);
    const host = await fileHost(lines);
    const files = [{ kind: 'output' as const, type: 'Patient', lines: [patient('p1')], urlBase: `${host.origin}/fhir` }];

    const refusing = await bulkPeer({ requiresAccessToken: true, token: 'tok-1', files });
    const first = clientsFor(refusing.baseUrl, { auth: { type: 'bearer', token: 'tok-1' } });
    const mem = memoryStaging();
    const err = await caught(runBulkExport(first.bulk, mem.store, mem.sink, { sourceId: 's', request }));
    expect(err.code).toBe('fhir-unsafe-link');
    expect(err.message).toContain(host.origin);
    expect(err.message).toContain('trusted');
    expect(host.requests).toHaveLength(0);
    expect(refusing.polls[0].headers.authorization).toBe('Bearer tok-1');

    const trusting = await bulkPeer({ requiresAccessToken: true, token: 'tok-1', files });
    const second = clientsFor(trusting.baseUrl, { auth: { type: 'bearer', token: 'tok-1' }, trustedOrigins: [host.origin] });
    await runBulkExport(second.bulk, memoryStaging().store, memoryStaging().sink, { sourceId: 's', request });
    expect(host.requests.map((r) => r.headers.authorization)).toEqual(['Bearer tok-1']);

    const open = await bulkPeer({ requiresAccessToken: false, token: 'tok-1', files });
    const third = clientsFor(open.baseUrl, { auth: { type: 'bearer', token: 'tok-1' } });
    await runBulkExport(third.bulk, memoryStaging().store, memoryStaging().sink, { sourceId: 's', request });
    expect(host.requests).toHaveLength(2);
    expect(host.requests[1].headers.authorization).toBeUndefined();
  });

  it('renews credentials on a 401 and replays the poll once (the AuthProvider seam)', async () => {
    const p = await bulkPeer({ token: 'fresh', files: [{ kind: 'output', type: 'Patient', lines: [patient('p1')] }] });
    let token = 'fresh';
    let refreshes = 0;
    const auth: AuthProvider = {
      kind: 'smart',
      headers: async () => ({ authorization: `Bearer ${token}` }),
      refresh: async () => {
        refreshes++;
        token = 'fresh';
        return true;
      },
    };
    const { bulk } = clientsFor(p.baseUrl, { auth });
    const statusUrl = await bulk.kickOff(request);
    token = 'expired';
    const manifest = await bulk.waitForManifest(statusUrl);
    expect(manifest.files).toHaveLength(1);
    expect(refreshes).toBe(1);
    const polls = p.peer.requests.filter((r) => r.url.includes('$export-status'));
    expect(polls.map((r) => r.headers.authorization)).toEqual(['Bearer expired', 'Bearer fresh']);
  });

  it('resumes an open export: no second kick-off or poll, staged files not downloaded again', async () => {
    const p = await bulkPeer({ files: [{ kind: 'output', type: 'Patient', lines: [patient('p1')] }, { kind: 'output', type: 'Observation', lines: [obs('o1', 'p1')] }] });
    const { bulk } = clientsFor(p.baseUrl);
    const { store, sink } = memoryStaging();
    const statusUrl = await bulk.kickOff(request);
    const id = await store.create('s', bulk.requestKey(request), { level: 'patient' }, statusUrl);
    await store.saveManifest(id, await bulk.waitForManifest(statusUrl));
    await store.fileDone(id, 1, { lines: 1, staged: 1, malformed: 0, problems: [] });
    const before = { kickOffs: p.kickOffs.length, polls: p.polls.length };

    const report = await runBulkExport(bulk, store, sink, { sourceId: 's', request });
    expect(report.resumed).toBe(true);
    expect(p.kickOffs.length).toBe(before.kickOffs);
    expect(p.polls.length).toBe(before.polls);
    expect(p.downloads.get(1)).toBeUndefined();
    expect(p.downloads.get(2)).toHaveLength(1);
    expect(report.files).toMatchObject({ downloaded: 1, alreadyStaged: 1 });
    expect(report.staged).toEqual({ Patient: 1, Observation: 1 });
    expect(sink.begins).toEqual([]);
  });

  it('abandons an open export made for another request and starts a new one', async () => {
    const p = await bulkPeer({ files: [{ kind: 'output', type: 'Patient', lines: [patient('p1')] }] });
    const { bulk } = clientsFor(p.baseUrl);
    const { store, sink } = memoryStaging();
    await store.create('s', 'another-request', { level: 'patient' }, `${p.baseUrl}/$export-status/job-99`);
    const report = await runBulkExport(bulk, store, sink, { sourceId: 's', request });
    expect(report.resumed).toBe(false);
    expect(store.exports.get('1')!.state).toBe('abandoned');
    expect(p.kickOffs).toHaveLength(1);
    expect(sink.begins).toEqual(['full']);
  });

  it('refuses a status URL on another origin', async () => {
    const p = await bulkPeer({ files: [] });
    const { bulk } = clientsFor(p.baseUrl);
    const err = await caught(bulk.status('https://elsewhere.example/status/1'));
    expect(err).toBeInstanceOf(AdapterError);
    expect(err.code).toBe('fhir-unsafe-link');
  });
});

describe('manifest and NDJSON lines', () => {
  it('names what is wrong with a manifest', () => {
    expect(() => parseManifest({ transactionTime: 'yesterday', requiresAccessToken: 'no', output: [{ type: 'obs', url: 'ftp://x' }] })).toThrow(
      /transactionTime: must be a FHIR instant.*requiresAccessToken.*output\.0\.type: must be a resource type name.*output\.0\.url: must be an absolute http\(s\) URL/,
    );
  });

  it('splits lines across chunks, with a BOM, CRLF, blank lines and multi-byte characters cut in half', async () => {
    const text = '\ufeff{"a":1}\r\n\n{"b":"é€"}\n{"c":3}';
    const bytes = Buffer.from(text, 'utf8');
    async function* chunks() {
      for (let i = 0; i < bytes.length; i += 3) yield new Uint8Array(bytes.subarray(i, i + 3));
    }
    const seen: [number, string][] = [];
    const total = await readLines(chunks(), (t, n) => void seen.push([n, t]));
    expect(seen).toEqual([
      [1, '{"a":1}'],
      [3, '{"b":"é€"}'],
      [4, '{"c":3}'],
    ]);
    expect(total).toBe(4);
  });
});
