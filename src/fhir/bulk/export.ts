import { performance } from 'node:perf_hooks';
import { AdapterError, toAdapterError } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/log.js';
import { patientIdOf } from '../pull.js';
import type { BulkDataClient, PollProgress } from './client.js';
import type { BulkFile, BulkManifest } from './manifest.js';
import { checkResourceLine, readLines } from './ndjson.js';
import type { BulkExportRequest } from './request.js';

/**
 * One export, run to the end and staged: kick-off (or the export this source already has open), status
 * polls, every file downloaded and staged, the export deleted on the server. Its state lives in a store
 * (src/db/staging.ts), written as it goes: the status URL as soon as the server gives it, the manifest
 * when it arrives, each file when it is staged. A run that dies anywhere resumes where it stood: no
 * second kick-off, no second download of a staged file (a file cut off mid-way is downloaded again and
 * its lines upserted again, which changes nothing).
 *
 * Files are read as streams, line by line: output lines are checked (JSON, resourceType, the file's type,
 * id) and staged in chunks with one write in flight while the next chunk is parsed; a bad line is counted
 * and reported by file and line number, never fatal, never quoted. Error files (OperationOutcome NDJSON)
 * are counted by issue code; deleted files (Bundles of DELETEs) remove what they name from staging.
 */

/** A checked resource, as staging keeps it. `json` is the line as received. */
export interface StagedResource {
  resourceType: string;
  id: string;
  versionId?: string;
  lastUpdated?: string;
  /** The patient whose compartment the resource is in (its own id for a Patient), when it names one. */
  patientId?: string;
  json: string;
}

export interface ResourceRef {
  resourceType: string;
  id: string;
}

export interface LineProblem {
  seq: number;
  kind: BulkFile['kind'];
  type: string;
  line: number;
  problem: string;
}

export interface FileCounts {
  /** Non-blank lines read. */
  lines: number;
  /** Output files: resources staged. Deleted files: resources named for deletion. */
  staged: number;
  malformed: number;
  /** The first bad lines (file, line number, what is wrong). */
  problems: LineProblem[];
  /** Error files: OperationOutcomes read, and their issue codes. */
  outcomes?: number;
  issueCodes?: Record<string, number>;
}

export interface OpenExport {
  id: string;
  requestKey: string;
  statusUrl: string;
  manifest?: BulkManifest;
  /** Files already staged, with their counts, by seq. */
  done: Map<number, FileCounts>;
}

/** Where an export's state is kept across restarts (src/db/staging.ts: BulkExportStore). */
export interface BulkExportStore {
  /** The source's export still in progress, if any. */
  open(sourceId: string): Promise<OpenExport | undefined>;
  create(sourceId: string, requestKey: string, info: { level: string; since?: Date }, statusUrl: string): Promise<string>;
  saveManifest(exportId: string, manifest: BulkManifest): Promise<void>;
  fileDone(exportId: string, seq: number, counts: FileCounts): Promise<void>;
  close(exportId: string, state: 'complete' | 'failed' | 'expired' | 'abandoned', outcome?: { report?: BulkExportReport; error?: AdapterError }): Promise<void>;
}

/** Where resources go (src/db/staging.ts: StagingStore). Every method is idempotent. */
export interface BulkSink {
  /** Before the first file of a new export: a full export replaces what the source had staged. */
  begin(sourceId: string, exportId: string, mode: 'full' | 'incremental'): Promise<void>;
  stage(sourceId: string, exportId: string, rows: StagedResource[]): Promise<void>;
  /** Removes resources named in a deleted file; resolves how many were staged. */
  remove(sourceId: string, exportId: string, refs: ResourceRef[]): Promise<number>;
}

export interface BulkExportReport {
  exportId: string;
  transactionTime: string;
  /** True when this run took over an export a previous run had started. */
  resumed: boolean;
  files: { output: number; error: number; deleted: number; downloaded: number; alreadyStaged: number };
  /** Resources staged, per type. */
  staged: Record<string, number>;
  /** Resources named in deleted files (removed from staging where present). */
  deleted: number;
  /** OperationOutcomes in the error files, and their issue codes. */
  errors: { outcomes: number; issueCodes: Record<string, number> };
  malformed: { count: number; first: LineProblem[] };
  /** The server confirmed the export deleted (false: the DELETE failed; the server expires it itself). */
  deletedOnServer: boolean;
  durationMs: number;
}

export interface RunExportOptions {
  sourceId: string;
  request: BulkExportRequest;
  /** Rows per staging write. Default 500. */
  chunkSize?: number;
  /** Staging writes in flight at once (PostgreSQL runs them on separate connections). Default 3. */
  stagingConcurrency?: number;
  /** Bad lines kept in full per file (all are counted). Default 20. */
  keepProblems?: number;
  onProgress?: (event: { phase: 'waiting'; poll: PollProgress } | { phase: 'file'; file: BulkFile; counts: FileCounts }) => void;
  signal?: AbortSignal;
  logger?: Logger;
}

export async function runBulkExport(client: BulkDataClient, store: BulkExportStore, sink: BulkSink, options: RunExportOptions): Promise<BulkExportReport> {
  const started = performance.now();
  const logger = (options.logger ?? silentLogger).child({ component: 'fhir-bulk' });
  const { sourceId, request } = options;
  const key = client.requestKey(request);

  let open = await store.open(sourceId);
  if (open && open.requestKey !== key) {
    // An export for other parameters (another as-of, other types): not what this run needs. It is
    // deleted on the server so it does not linger there, and a new one is started.
    logger.warn({ exportId: open.id }, 'an open bulk export of this source was for another request; abandoning it');
    await client.delete(open.statusUrl).catch(() => undefined);
    await store.close(open.id, 'abandoned');
    open = undefined;
  }

  let resumed = !!open;
  let exportId: string;
  let statusUrl: string;
  let manifest: BulkManifest | undefined;
  let done = new Map<number, FileCounts>();
  const kickOff = async () => {
    statusUrl = await client.kickOff(request);
    exportId = await store.create(sourceId, key, { level: request.level.kind, since: request.since }, statusUrl);
    await sink.begin(sourceId, exportId, request.since ? 'incremental' : 'full');
  };
  if (open) {
    ({ id: exportId, statusUrl, manifest } = open);
    done = open.done;
    logger.info({ exportId, manifest: !!manifest, filesStaged: done.size }, 'resuming bulk export');
  } else {
    await kickOff();
  }

  if (!manifest) {
    try {
      manifest = await client.waitForManifest(statusUrl!, { onProgress: (poll) => options.onProgress?.({ phase: 'waiting', poll }), signal: options.signal });
    } catch (err) {
      const e = toAdapterError(err, 'internal', 'bulk export status');
      if (resumed && e.code === 'fhir-not-found') {
        // The server no longer knows the export (expired, or cleaned up after a long outage): start afresh.
        logger.warn({ exportId: exportId! }, 'the bulk export being resumed is gone on the server; starting a new one');
        await store.close(exportId!, 'expired');
        resumed = false;
        done = new Map();
        await kickOff();
        manifest = await waitOrClose(client, store, exportId!, statusUrl!, options);
      } else {
        if (!e.transient) await store.close(exportId!, 'failed', { error: e });
        throw e;
      }
    }
    await store.saveManifest(exportId!, manifest);
  }

  const report: BulkExportReport = {
    exportId: exportId!,
    transactionTime: manifest.transactionTime,
    resumed,
    files: { output: 0, error: 0, deleted: 0, downloaded: 0, alreadyStaged: 0 },
    staged: {},
    deleted: 0,
    errors: { outcomes: 0, issueCodes: {} },
    malformed: { count: 0, first: [] },
    deletedOnServer: false,
    durationMs: 0,
  };
  const account = (file: BulkFile, counts: FileCounts) => {
    if (file.kind === 'output') report.staged[file.type] = (report.staged[file.type] ?? 0) + counts.staged;
    if (file.kind === 'deleted') report.deleted += counts.staged;
    if (file.kind === 'error') {
      report.errors.outcomes += counts.outcomes ?? 0;
      for (const [code, n] of Object.entries(counts.issueCodes ?? {})) report.errors.issueCodes[code] = (report.errors.issueCodes[code] ?? 0) + n;
    }
    report.malformed.count += counts.malformed;
    for (const p of counts.problems) if (report.malformed.first.length < 50) report.malformed.first.push(p);
  };

  for (const file of manifest.files) {
    report.files[file.kind] += 1;
    const already = done.get(file.seq);
    if (already) {
      report.files.alreadyStaged += 1;
      account(file, already);
      continue;
    }
    if (options.signal?.aborted) throw new AdapterError('fhir-unavailable', 'stopped while downloading the bulk export; a later run resumes it', { transient: true });
    const t0 = performance.now();
    const counts = await client.download(file, manifest.requiresAccessToken, (body) => consumeFile(body, file, sourceId, exportId!, sink, options));
    await store.fileDone(exportId!, file.seq, counts);
    report.files.downloaded += 1;
    account(file, counts);
    options.onProgress?.({ phase: 'file', file, counts });
    logger.info(
      { kind: file.kind, seq: file.seq, resourceType: file.type, lines: counts.lines, staged: counts.staged, malformed: counts.malformed, ms: Math.round(performance.now() - t0) },
      'bulk file staged',
    );
  }

  try {
    await client.delete(statusUrl!);
    report.deletedOnServer = true;
  } catch (err) {
    // The data is staged; a server that keeps the files a while longer is its own business.
    logger.warn({ code: toAdapterError(err).code }, 'could not delete the bulk export on the server');
  }
  report.durationMs = Math.round(performance.now() - started);
  await store.close(exportId!, 'complete', { report });
  logger.info(
    { exportId: exportId!, resumed, files: report.files, staged: report.staged, deleted: report.deleted, errors: report.errors.outcomes, malformed: report.malformed.count, ms: report.durationMs },
    'bulk export staged',
  );
  return report;
}

async function waitOrClose(client: BulkDataClient, store: BulkExportStore, exportId: string, statusUrl: string, options: RunExportOptions): Promise<BulkManifest> {
  try {
    return await client.waitForManifest(statusUrl, { onProgress: (poll) => options.onProgress?.({ phase: 'waiting', poll }), signal: options.signal });
  } catch (err) {
    const e = toAdapterError(err, 'internal', 'bulk export status');
    if (!e.transient) await store.close(exportId, 'failed', { error: e });
    throw e;
  }
}

/** Reads one file's lines into staging (output), counts (error) or deletions (deleted). Idempotent. */
async function consumeFile(
  body: AsyncIterable<Uint8Array>,
  file: BulkFile,
  sourceId: string,
  exportId: string,
  sink: BulkSink,
  options: RunExportOptions,
): Promise<FileCounts> {
  const chunkSize = options.chunkSize ?? 500;
  const keep = options.keepProblems ?? 20;
  const counts: FileCounts = { lines: 0, staged: 0, malformed: 0, problems: [] };
  const bad = (line: number, problem: string) => {
    counts.malformed += 1;
    if (counts.problems.length < keep) counts.problems.push({ seq: file.seq, kind: file.kind, type: file.type, line, problem });
  };

  if (file.kind === 'error') {
    counts.outcomes = 0;
    counts.issueCodes = {};
    await readLines(body, (text, line) => {
      counts.lines += 1;
      // OperationOutcomes need no id.
      let value: { resourceType?: unknown; issue?: unknown };
      try {
        value = JSON.parse(text);
      } catch {
        return bad(line, 'not valid JSON');
      }
      if (value?.resourceType !== 'OperationOutcome') return bad(line, 'not an OperationOutcome');
      counts.outcomes! += 1;
      const issues = Array.isArray(value.issue) ? (value.issue as { code?: unknown }[]) : [];
      for (const issue of issues) {
        const code = typeof issue?.code === 'string' && /^[a-z-]{1,32}$/.test(issue.code) ? issue.code : 'unknown';
        counts.issueCodes![code] = (counts.issueCodes![code] ?? 0) + 1;
      }
    });
    return counts;
  }

  if (file.kind === 'deleted') {
    let refs: ResourceRef[] = [];
    const flush = async () => {
      if (!refs.length) return;
      const batch = refs;
      refs = [];
      await sink.remove(sourceId, exportId, batch);
    };
    await readLines(body, (text, line) => {
      counts.lines += 1;
      let bundle: { resourceType?: unknown; entry?: { request?: { method?: unknown; url?: unknown } }[] };
      try {
        bundle = JSON.parse(text);
      } catch {
        return bad(line, 'not valid JSON');
      }
      if (bundle?.resourceType !== 'Bundle' || !Array.isArray(bundle.entry)) return bad(line, 'not a Bundle with entries');
      for (const entry of bundle.entry) {
        const url = entry?.request?.url;
        const m = entry?.request?.method === 'DELETE' && typeof url === 'string' ? /^(?:.*\/)?([A-Z][A-Za-z]{1,63})\/([A-Za-z0-9\-.]{1,64})$/.exec(url.split('?')[0]) : null;
        if (!m) {
          bad(line, 'a deleted-file entry without a DELETE of Type/id');
          continue;
        }
        refs.push({ resourceType: m[1], id: m[2] });
        counts.staged += 1;
      }
      if (refs.length >= chunkSize) return flush();
    });
    await flush();
    return counts;
  }

  // Output: a few staging writes in flight (each on its own database connection) while the next chunk
  // is parsed; reading waits when the window is full, so memory holds at most that many chunks.
  const window = Math.max(1, options.stagingConcurrency ?? 3);
  let rows = new Map<string, StagedResource>();
  const inFlight: Promise<void>[] = [];
  const flush = async () => {
    if (rows.size) {
      const batch = [...rows.values()];
      rows = new Map();
      const write = sink.stage(sourceId, exportId, batch);
      // Surfaced when awaited below; never left unhandled meanwhile.
      write.catch(() => undefined);
      inFlight.push(write);
    }
    while (inFlight.length >= window) await inFlight.shift();
  };
  await readLines(body, (text, line) => {
    counts.lines += 1;
    const checked = checkResourceLine(text, file.type);
    if ('problem' in checked) return bad(line, checked.problem);
    const r = checked.resource;
    const meta = r.meta as { versionId?: unknown; lastUpdated?: unknown } | undefined;
    const row: StagedResource = { resourceType: checked.resourceType, id: checked.id, json: text };
    if (typeof meta?.versionId === 'string') row.versionId = meta.versionId;
    if (typeof meta?.lastUpdated === 'string' && !Number.isNaN(Date.parse(meta.lastUpdated))) row.lastUpdated = meta.lastUpdated;
    const patientId = checked.resourceType === 'Patient' ? checked.id : compartmentPatient(r);
    if (patientId) row.patientId = patientId;
    // The same resource twice in one chunk: the later line wins (one row per key per write).
    const key = `${row.resourceType}/${row.id}`;
    if (!rows.has(key)) counts.staged += 1;
    rows.set(key, row);
    if (rows.size >= chunkSize) return flush();
  });
  await flush();
  // Every write is awaited, so a failed one fails the file (all settle first: none is left running).
  const results = await Promise.allSettled(inFlight.splice(0));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return counts;
}

/** The patient a resource belongs to: its `subject` (Observation, DiagnosticReport, Condition, ...) or `patient`. */
export function compartmentPatient(resource: Record<string, unknown>): string | undefined {
  const subject = resource.subject as { reference?: string } | undefined;
  const patient = resource.patient as { reference?: string } | undefined;
  return patientIdOf(subject) ?? patientIdOf(patient);
}
