import type { ServerResponse } from 'node:http';
import type { BulkExportReport, BulkExportStore, BulkSink, FileCounts, OpenExport, ResourceRef, StagedResource } from '../bulk/export.js';
import type { BulkManifest } from '../bulk/manifest.js';
import { sendJson, startPeer, type RecordedRequest, type ScriptedPeer } from './scripted-peer.js';

/**
 * A Bulk Data server for tests, scripted for the faults a real server will not give on demand: status
 * answers in a given order (202 with Retry-After in seconds or as an HTTP-date, absurd values, 429, 5xx),
 * files with malformed lines, error and deleted files, a file that stalls mid-stream on its first
 * download, a bearer token it requires. Plus an in-memory export store and sink, to test the client
 * without a database.
 */

export interface BulkPeerFile {
  kind: 'output' | 'error' | 'deleted';
  type: string;
  lines: string[];
  /** The first download of this file stops after this many lines until `release()`. */
  stallFirstAfter?: number;
  /** Serve the file from this other peer's base URL instead (it must serve `/file/<n>.ndjson`). */
  urlBase?: string;
}

export type StatusStep = { status: number; headers?: Record<string, string>; body?: unknown };

export interface BulkPeerOptions {
  files: BulkPeerFile[];
  /** Answers to status polls before the manifest is given. */
  statusScript?: StatusStep[];
  requiresAccessToken?: boolean;
  /** Every request must carry `Authorization: Bearer <token>` (401 otherwise). */
  token?: string;
  transactionTime?: string;
}

export interface BulkPeer {
  peer: ScriptedPeer;
  baseUrl: string;
  kickOffs: RecordedRequest[];
  polls: RecordedRequest[];
  deletes: RecordedRequest[];
  /** Download requests per file number (1-based, manifest order). */
  downloads: Map<number, RecordedRequest[]>;
  /** Resolves once a stalled file has sent its first lines. */
  stalled: Promise<void>;
  release(): void;
  close(): Promise<void>;
}

export async function startBulkPeer(options: BulkPeerOptions): Promise<BulkPeer> {
  const script = [...(options.statusScript ?? [])];
  let releaseFn: () => void = () => undefined;
  const released = new Promise<void>((resolve) => (releaseFn = resolve));
  let stalledFn: () => void = () => undefined;
  const stalled = new Promise<void>((resolve) => (stalledFn = resolve));
  const state = { kickOffs: [] as RecordedRequest[], polls: [] as RecordedRequest[], deletes: [] as RecordedRequest[], downloads: new Map<number, RecordedRequest[]>() };
  const deleted = new Set<string>();
  let jobs = 0;

  const peer = await startPeer(async (req, res, { baseUrl }) => {
    if (options.token && req.headers.authorization !== `Bearer ${options.token}`) {
      return sendJson(res, 401, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login' }] }, { 'www-authenticate': 'Bearer' });
    }
    const path = req.url.split('?')[0];
    if (/\/\$export$/.test(path)) {
      state.kickOffs.push(req);
      if (!/respond-async/.test(String(req.headers.prefer ?? ''))) return sendJson(res, 400, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid' }] });
      res.writeHead(202, { 'content-location': `${baseUrl}/$export-status/job-${++jobs}` });
      res.end();
      return;
    }
    const job = /^\/fhir\/\$export-status\/(job-\d+)$/.exec(path)?.[1];
    if (job) {
      if (req.method === 'DELETE') {
        state.deletes.push(req);
        deleted.add(job);
        res.writeHead(202);
        res.end();
        return;
      }
      state.polls.push(req);
      if (deleted.has(job)) return sendJson(res, 404, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] });
      const step = script.shift();
      if (step) {
        if (step.body !== undefined) return sendJson(res, step.status, step.body, step.headers);
        res.writeHead(step.status, step.headers ?? {});
        res.end();
        return;
      }
      const manifest = {
        transactionTime: options.transactionTime ?? '2025-01-15T11:59:00.000Z',
        request: `${baseUrl}/Patient/$export`,
        requiresAccessToken: options.requiresAccessToken ?? false,
        output: [] as object[],
        error: [] as object[],
        deleted: [] as object[],
      };
      options.files.forEach((f, i) => {
        const url = `${f.urlBase ?? baseUrl}/file/${i + 1}.ndjson`;
        (f.kind === 'output' ? manifest.output : f.kind === 'error' ? manifest.error : manifest.deleted).push({ type: f.type, url, count: f.lines.length });
      });
      return sendJson(res, 200, manifest);
    }
    const file = /^\/fhir\/file\/(\d+)\.ndjson$/.exec(path);
    if (file) return serveFile(Number(file[1]), req, res);
    sendJson(res, 404, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] });
  });

  async function serveFile(n: number, req: RecordedRequest, res: ServerResponse): Promise<void> {
    const f = options.files[n - 1];
    if (!f) return sendJson(res, 404, {});
    const list = state.downloads.get(n) ?? [];
    list.push(req);
    state.downloads.set(n, list);
    res.writeHead(200, { 'content-type': 'application/fhir+ndjson' });
    const stallAt = list.length === 1 ? f.stallFirstAfter : undefined;
    for (let i = 0; i < f.lines.length; i++) {
      if (stallAt !== undefined && i === stallAt) {
        stalledFn();
        await released;
        if (res.destroyed) return;
      }
      res.write(`${f.lines[i]}\n`);
    }
    res.end();
  }

  return {
    peer,
    baseUrl: peer.baseUrl,
    ...state,
    stalled,
    release: releaseFn,
    close: async () => {
      releaseFn();
      await peer.close();
    },
  };
}

/** A peer serving only `/fhir/file/<n>.ndjson` with the given lines (a file host on another origin). */
export async function startFileHost(files: Map<number, string[]>): Promise<ScriptedPeer> {
  return startPeer((req, res) => {
    const m = /^\/fhir\/file\/(\d+)\.ndjson$/.exec(req.url.split('?')[0]);
    const lines = m ? files.get(Number(m[1])) : undefined;
    if (!lines) return sendJson(res, 404, {});
    res.writeHead(200, { 'content-type': 'application/fhir+ndjson' });
    res.end(lines.map((l) => `${l}\n`).join(''));
  });
}

/** An export store and sink in memory: what the database keeps, without one. */
export function memoryStaging(): {
  store: BulkExportStore & { exports: Map<string, { sourceId: string; key: string; statusUrl: string; state: string; manifest?: BulkManifest; done: Map<number, FileCounts>; report?: BulkExportReport }> };
  sink: BulkSink & { rows: Map<string, StagedResource>; removed: ResourceRef[]; begins: string[] };
} {
  const exports = new Map<string, { sourceId: string; key: string; statusUrl: string; state: string; manifest?: BulkManifest; done: Map<number, FileCounts>; report?: BulkExportReport }>();
  let next = 1;
  const store = {
    exports,
    async open(sourceId: string): Promise<OpenExport | undefined> {
      for (const [id, e] of exports) {
        if (e.sourceId === sourceId && (e.state === 'kicked-off' || e.state === 'downloading')) {
          return { id, requestKey: e.key, statusUrl: e.statusUrl, manifest: e.manifest, done: new Map(e.done) };
        }
      }
      return undefined;
    },
    async create(sourceId: string, key: string, _info: unknown, statusUrl: string) {
      const id = String(next++);
      exports.set(id, { sourceId, key, statusUrl, state: 'kicked-off', done: new Map() });
      return id;
    },
    async saveManifest(id: string, manifest: BulkManifest) {
      const e = exports.get(id)!;
      e.manifest = manifest;
      e.state = 'downloading';
    },
    async fileDone(id: string, seq: number, counts: FileCounts) {
      exports.get(id)!.done.set(seq, counts);
    },
    async close(id: string, state: string, outcome: { report?: BulkExportReport } = {}) {
      const e = exports.get(id)!;
      e.state = state;
      e.report = outcome.report;
    },
  };
  const rows = new Map<string, StagedResource>();
  const removed: ResourceRef[] = [];
  const begins: string[] = [];
  const sink = {
    rows,
    removed,
    begins,
    async begin(_sourceId: string, _exportId: string, mode: string) {
      begins.push(mode);
      if (mode === 'full') rows.clear();
    },
    async stage(_sourceId: string, _exportId: string, batch: StagedResource[]) {
      for (const r of batch) rows.set(`${r.resourceType}/${r.id}`, r);
    },
    async remove(_sourceId: string, _exportId: string, refs: ResourceRef[]) {
      let n = 0;
      for (const r of refs) {
        removed.push(r);
        if (rows.delete(`${r.resourceType}/${r.id}`)) n++;
      }
      return n;
    },
  };
  return { store, sink };
}
