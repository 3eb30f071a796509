import { systemClock, type Clock } from '../../core/clock.js';
import { AdapterError, toAdapterError } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/log.js';
import { HttpStatusError, parseRetryAfter, type Operation } from '../classify.js';
import type { AttemptInit, FhirClient } from '../client.js';
import { parseManifest, type BulkFile, type BulkManifest } from './manifest.js';
import { exportRequestKey, kickOffParameters, kickOffParams, kickOffPath, validateExportRequest, type BulkExportRequest } from './request.js';

/**
 * The HTTP side of Bulk Data `$export` (Bulk Data Access IG v2): kick-off with `Prefer: respond-async`,
 * status polls, file downloads, and the final DELETE. Every request runs through the FHIR client's
 * transport (`FhirClient.execute`): the same credentials (SMART tokens renewed, a 401 renewed and replayed
 * once), concurrency bound, timeouts, retries of 429 and transient failures with capped backoff and
 * capped Retry-After. What is particular to bulk lives here:
 *
 * - status polling waits as the server's `Retry-After` says (seconds or HTTP-date), but never longer than
 *   `maxPollWaitMs`, and the configured interval when the value is missing or unparsable; `X-Progress` is
 *   reported to the caller;
 * - the access token goes only where it is needed and safe: with a file only when the manifest says
 *   `requiresAccessToken`, and only to the FHIR server's origin or one configured as trusted (a file
 *   elsewhere is refused with an error saying so); a status URL on another origin is refused likewise;
 * - files are streamed to the caller's consumer (see export.ts), with a per-attempt timeout of their own.
 *
 * URLs are never logged (a status or file URL is an unguessable capability for the export's data).
 */

export interface BulkClientOptions {
  /** Origins besides the FHIR server's that may receive the access token with file downloads (e.g. https://files.ehr.example). */
  trustedOrigins?: string[];
  /** Wait between status polls when the server sends no Retry-After, or one that cannot be parsed. Default 2000. */
  pollIntervalMs?: number;
  /** The longest a status poll waits, whatever Retry-After says. Default 60000. */
  maxPollWaitMs?: number;
  /** The shortest wait between polls (a Retry-After of 0 does not make us hammer the server). Default 100. */
  minPollWaitMs?: number;
  /** An export not complete after this much waiting fails (transient; a later run resumes it). Default 6 h. */
  maxExportWaitMs?: number;
  /** Per-attempt timeout of a file download (the whole stream). Default 30 min. */
  downloadTimeoutMs?: number;
  clock?: Clock;
  logger?: Logger;
}

export type ExportStatus = { state: 'in-progress'; progress?: string; waitMs: number; retryAfterCapped: boolean } | { state: 'complete'; manifest: BulkManifest };

export interface PollProgress {
  polls: number;
  progress?: string;
  waitMs: number;
}

interface HttpAnswer {
  status: number;
  headers: Headers;
  body?: unknown;
}

export class BulkDataClient {
  readonly fhir: FhirClient;
  private readonly origin: string;
  private readonly trusted: ReadonlySet<string>;
  private readonly options: Required<Omit<BulkClientOptions, 'trustedOrigins' | 'clock' | 'logger'>>;
  private readonly clock: Clock;
  private readonly logger: Logger;

  constructor(fhir: FhirClient, options: BulkClientOptions = {}) {
    this.fhir = fhir;
    this.origin = new URL(fhir.baseUrl).origin;
    const trusted: string[] = [];
    for (const o of options.trustedOrigins ?? []) {
      try {
        trusted.push(new URL(o).origin);
      } catch {
        throw new AdapterError('config-invalid', `bulk trustedOrigins: "${o.slice(0, 80)}" is not an origin such as https://files.example.org`);
      }
    }
    this.trusted = new Set(trusted);
    this.options = {
      pollIntervalMs: options.pollIntervalMs ?? 2000,
      maxPollWaitMs: options.maxPollWaitMs ?? 60_000,
      minPollWaitMs: options.minPollWaitMs ?? 100,
      maxExportWaitMs: options.maxExportWaitMs ?? 6 * 3_600_000,
      downloadTimeoutMs: options.downloadTimeoutMs ?? 30 * 60_000,
    };
    this.clock = options.clock ?? systemClock;
    this.logger = (options.logger ?? silentLogger).child({ component: 'fhir-bulk' });
  }

  /** Identifies a request, for resuming its export after a restart. */
  requestKey(request: BulkExportRequest): string {
    return exportRequestKey(request);
  }

  /** Starts an export; resolves the status URL (Content-Location of the 202). */
  async kickOff(request: BulkExportRequest): Promise<string> {
    validateExportRequest(request);
    const path = kickOffPath(request.level);
    const query = new URLSearchParams(kickOffParams(request)).toString();
    // Patient ids never go into a URL (proxies and server logs keep URLs); long filter lists would not fit one.
    const post = !!request.patients || this.fhir.baseUrl.length + path.length + query.length > 6000;
    const url = post ? `${this.fhir.baseUrl}/${path}` : `${this.fhir.baseUrl}/${path}?${query}`;
    const op: Operation = { name: 'export-kickoff', resourceType: request.level.kind === 'group' ? 'Group' : request.level.kind === 'patient' ? 'Patient' : 'system' };
    const answer = await this.fhir.execute<HttpAnswer>({
      op,
      // A kick-off the server may have accepted is not sent twice: it would start a second export.
      retry: 'unsent-only',
      statusOf: (a) => a.status,
      send: (init) =>
        this.request(url, init, {
          method: post ? 'POST' : 'GET',
          headers: { accept: 'application/fhir+json', prefer: 'respond-async', ...(post ? { 'content-type': 'application/fhir+json' } : {}) },
          body: post ? JSON.stringify(kickOffParameters(request)) : undefined,
        }),
    });
    if (answer.status !== 202) {
      throw new AdapterError('fhir-invalid-response', `FHIR server answered the $export kick-off with HTTP ${answer.status}, not 202 Accepted`, { status: answer.status });
    }
    const location = answer.headers.get('content-location');
    if (!location) throw new AdapterError('fhir-invalid-response', 'FHIR server accepted the $export kick-off without a Content-Location (the status URL)');
    const statusUrl = this.sameServer(location, 'status URL');
    this.logger.info({ level: request.level.kind, types: request.types?.length ?? 0, since: !!request.since, filters: request.typeFilters?.length ?? 0, post }, 'bulk export kicked off');
    return statusUrl;
  }

  /** One status poll. */
  async status(statusUrl: string): Promise<ExportStatus> {
    const url = this.sameServer(statusUrl, 'status URL');
    const answer = await this.fhir.execute<HttpAnswer>({
      op: { name: 'export-status', resourceType: 'export' },
      retry: 'idempotent',
      statusOf: (a) => a.status,
      send: (init) => this.request(url, init, { method: 'GET', headers: { accept: 'application/json' }, readBody: true }),
    });
    if (answer.status === 202) {
      const raw = answer.headers.get('retry-after');
      const asked = parseRetryAfter(raw, this.clock.now());
      const { pollIntervalMs, maxPollWaitMs, minPollWaitMs } = this.options;
      const waitMs = asked === undefined ? pollIntervalMs : Math.min(maxPollWaitMs, Math.max(minPollWaitMs, asked));
      const progress = sanitizeProgress(answer.headers.get('x-progress'));
      return { state: 'in-progress', waitMs, retryAfterCapped: asked !== undefined && asked > maxPollWaitMs, ...(progress ? { progress } : {}) };
    }
    if (answer.status !== 200) {
      throw new AdapterError('fhir-invalid-response', `FHIR server answered an export status poll with HTTP ${answer.status}`, { status: answer.status });
    }
    return { state: 'complete', manifest: parseManifest(answer.body) };
  }

  /** Polls until the manifest is there, waiting between polls as `status` decides. */
  async waitForManifest(statusUrl: string, options: { onProgress?: (p: PollProgress) => void; signal?: AbortSignal } = {}): Promise<BulkManifest> {
    let waited = 0;
    for (let polls = 1; ; polls++) {
      if (options.signal?.aborted) throw new AdapterError('fhir-unavailable', 'stopped while waiting for the bulk export', { transient: true });
      const status = await this.status(statusUrl);
      if (status.state === 'complete') {
        this.logger.info({ polls, files: status.manifest.files.length }, 'bulk export complete');
        return status.manifest;
      }
      if (status.retryAfterCapped) this.logger.warn({ waitMs: status.waitMs }, 'bulk export status asked for a longer wait than allowed; capped');
      options.onProgress?.({ polls, progress: status.progress, waitMs: status.waitMs });
      this.logger.info({ polls, progress: status.progress, waitMs: status.waitMs }, 'bulk export in progress');
      if (waited + status.waitMs > this.options.maxExportWaitMs) {
        throw new AdapterError('fhir-unavailable', `the bulk export was not complete after ${Math.round(waited / 1000)} s of waiting (maxExportWaitMs); a later run resumes it`, {
          transient: true,
        });
      }
      await this.clock.sleep(status.waitMs);
      waited += status.waitMs;
    }
  }

  /**
   * Downloads one file and hands its body stream to `consume`, within one attempt: a download cut off
   * mid-way is retried from the start, so `consume` must be idempotent (staging upserts are).
   */
  async download<T>(file: BulkFile, requiresAccessToken: boolean, consume: (body: AsyncIterable<Uint8Array>) => Promise<T>): Promise<T> {
    let url: URL;
    try {
      url = new URL(file.url);
    } catch {
      throw new AdapterError('fhir-invalid-response', `bulk export ${file.kind} file ${file.seq} (${file.type}) has an unparseable URL`);
    }
    const withToken = requiresAccessToken;
    if (withToken && url.origin !== this.origin && !this.trusted.has(url.origin)) {
      throw new AdapterError(
        'fhir-unsafe-link',
        `bulk export ${file.kind} file ${file.seq} (${file.type}) requires the access token but lies on ${url.origin}, which is neither the FHIR server nor a trusted origin; the token is not sent there (add the origin to the source's bulk trustedOrigins if the EHR vouches for it)`,
        { details: { kind: file.kind, seq: file.seq, type: file.type } },
      );
    }
    return this.fhir.execute<T>({
      op: { name: 'export-file', resourceType: file.type },
      retry: 'idempotent',
      timeoutMs: this.options.downloadTimeoutMs,
      send: async (init) => {
        const response = await fetch(url.href, {
          method: 'GET',
          headers: { accept: 'application/fhir+ndjson', ...(withToken ? init.headers : {}) },
          signal: init.signal,
          keepalive: false,
          // Without credentials a redirect (to object storage) is harmless; with them it is not followed.
          redirect: withToken ? 'manual' : 'follow',
        });
        if (response.status < 200 || response.status >= 300) {
          throw new HttpStatusError(response.status, await jsonOrNothing(response), response.headers);
        }
        if (!response.body) return consume(emptyBody());
        try {
          return await consume(response.body as unknown as AsyncIterable<Uint8Array>);
        } catch (err) {
          // A stream cut off (undici 'terminated') or our timeout is the transport's to classify and
          // retry; anything else (the consumer's own failure) keeps its own code and transient flag.
          if (isStreamFailure(err) || init.signal.aborted) throw err;
          throw toAdapterError(err, 'internal', `staging bulk ${file.kind} file ${file.seq} (${file.type})`);
        }
      },
    });
  }

  /** Deletes the export on the server (its files may go); one already gone counts as deleted. */
  async delete(statusUrl: string): Promise<void> {
    const url = this.sameServer(statusUrl, 'status URL');
    try {
      await this.fhir.execute<HttpAnswer>({
        op: { name: 'export-delete', resourceType: 'export' },
        retry: 'idempotent',
        statusOf: (a) => a.status,
        send: (init) => this.request(url, init, { method: 'DELETE', headers: { accept: 'application/fhir+json' } }),
      });
    } catch (err) {
      if (AdapterError.is(err, 'fhir-not-found')) return;
      throw err;
    }
  }

  private async request(url: string, init: AttemptInit, spec: { method: string; headers: Record<string, string>; body?: string; readBody?: boolean }): Promise<HttpAnswer> {
    const response = await fetch(url, { method: spec.method, headers: { ...spec.headers, ...init.headers }, body: spec.body, signal: init.signal, keepalive: false, redirect: 'manual' });
    if (response.status < 200 || response.status >= 300) {
      throw new HttpStatusError(response.status, await jsonOrNothing(response), response.headers);
    }
    if (spec.readBody && response.status === 200) {
      let body: unknown;
      try {
        body = await response.json();
      } catch (err) {
        if (isStreamFailure(err)) throw err;
        throw new AdapterError('fhir-invalid-response', 'FHIR server answered an export status poll with a body that is not JSON');
      }
      return { status: response.status, headers: response.headers, body };
    }
    await response.body?.cancel().catch(() => undefined);
    return { status: response.status, headers: response.headers };
  }

  /** A URL the server gave us that we will send our token to: it must be on the FHIR server (or trusted). */
  private sameServer(link: string, what: string): string {
    let url: URL;
    try {
      url = new URL(link, `${this.fhir.baseUrl}/`);
    } catch {
      throw new AdapterError('fhir-invalid-response', `the bulk export ${what} is not a URL`);
    }
    if (url.origin !== this.origin && !this.trusted.has(url.origin)) {
      throw new AdapterError('fhir-unsafe-link', `the bulk export ${what} lies on ${url.origin}, not on the FHIR server; not contacted, so the access token stays with the configured server`);
    }
    return url.href;
  }
}

/** X-Progress is free text from the server: kept short and printable for logs and progress lines. */
function sanitizeProgress(value: string | null): string | undefined {
  if (!value) return undefined;
  const clean = value.replace(/[^\x20-\x7e]/g, '').trim().slice(0, 100);
  return clean || undefined;
}

async function jsonOrNothing(response: Response): Promise<unknown> {
  try {
    const text = await response.text();
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}

function isStreamFailure(err: unknown): boolean {
  const { name, message } = (err ?? {}) as { name?: unknown; message?: unknown };
  return name === 'AbortError' || (name === 'TypeError' && typeof message === 'string' && /fetch failed|terminated/i.test(message));
}

async function* emptyBody(): AsyncGenerator<Uint8Array> {}
