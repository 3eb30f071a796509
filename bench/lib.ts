/**
 * Shared pieces of the benchmarks: the FHIR server in its own process (seeded in it), seeding over HTTP,
 * the recording client that streams a sync's HTTP work to an NDJSON file, and the bare replay of that
 * file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, createReadStream, openSync, readFileSync, writeSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Bundle, FhirResource, Resource } from 'fhir/r4.js';
import { chunk } from '../src/core/chunk.js';
import { packagePath } from '../src/core/paths.js';
import { loadDiabetesRows } from '../src/demo/diabetes-rows.js';
import { buildDemoPatient, DEMO_AS_OF, putTransaction } from '../src/demo/seed.js';
import { FhirClient, type FhirClientOptions, type SearchPage, type SearchParams } from '../src/fhir/client.js';

export const TSX = ['--import', 'tsx'];

export interface ServerProcess {
  url: string;
  child: ChildProcess;
  /** Patients seeded in the process before it listened (0: empty). */
  patients: number;
  /** Resources seeded. */
  resources: number;
}

/**
 * The embedded FHIR server in a child process (bench/server-process.ts), seeded in that process with
 * `patients` demo patients before it listens; resolves with its base URL once it does.
 */
export async function startServerProcess(patients = 0): Promise<ServerProcess> {
  const child = spawn(process.execPath, [...TSX, packagePath('bench/server-process.ts'), String(patients)], {
    cwd: packagePath(),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise<ServerProcess>((resolve, reject) => {
    let out = '';
    const onExit = (code: number | null) => reject(new Error(`FHIR server process exited early (${code})`));
    child.once('exit', onExit);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /seeded (\d+) patients \((\d+) resources\)[^\n]*\nFHIR server listening on (\S+)/.exec(out);
      if (!m) return;
      child.off('exit', onExit);
      resolve({ url: m[3], child, patients: Number(m[1]), resources: Number(m[2]) });
    });
  });
}

export async function stopServer(s: { child: ChildProcess }): Promise<void> {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  const exited = new Promise((resolve) => s.child.once('exit', resolve));
  s.child.kill('SIGTERM');
  await exited;
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux); undefined elsewhere. */
export function cpuSeconds(pid: number | undefined): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks of 1/100 s
  } catch {
    return undefined;
  }
}

export async function post(url: string, body: unknown): Promise<Bundle> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const json = (await res.json()) as Bundle;
  if (!res.ok) throw new Error(`POST ${res.status}: ${JSON.stringify(json).slice(0, 500)}`);
  return json;
}

/** Wraps one request (for timing or counting); the default just runs it. */
export type Around = <T>(kind: string, request: () => Promise<T>) => Promise<T>;
const plain: Around = (_kind, request) => request();

/** The demo resources of `n` patients (rows reused cyclically), 100 patients per chunk. */
export function* demoPopulation(n: number): Generator<FhirResource[]> {
  const rows = loadDiabetesRows();
  const ids = Array.from({ length: n }, (_, i) => i);
  for (const part of chunk(ids, 100)) yield part.flatMap((i) => buildDemoPatient(rows[i % rows.length], i, DEMO_AS_OF));
}

/** Seeds n demo patients over HTTP, 100 per PUT transaction; returns the resources sent. */
export async function seed(url: string, n: number, around: Around = plain): Promise<number> {
  let resources = 0;
  for (const batch of demoPopulation(n)) {
    resources += batch.length;
    await around('seed PUT transaction (100 patients)', () => post(url, putTransaction(batch)));
  }
  return resources;
}

/**
 * The HTTP work of one sync, as NDJSON, one exchange per line in the order the adapter started them:
 * `{"search":{"resourceType":...,"params":{...}}}` for a search (replayed with all its pages), or
 * `{"transaction":<Bundle>}` for a posted transaction.
 */
const TRANSACTION_PREFIX = '{"transaction":';

/**
 * A FhirClient that appends every search and transaction it is asked for to an NDJSON file as it goes,
 * so the recording never sits in the adapter's memory. `recordingMs` is the time spent serialising and
 * writing it (the benchmark's instrumentation, not the adapter's work).
 */
export class RecordingClient extends FhirClient {
  private readonly fd: number | undefined;
  recordingMs = 0;
  exchanges = 0;

  constructor(options: FhirClientOptions, file: string | undefined) {
    super(options);
    this.fd = file ? openSync(file, 'w') : undefined;
  }

  private record(line: () => string): void {
    if (this.fd === undefined) return;
    const t0 = performance.now();
    writeSync(this.fd, line() + '\n');
    this.exchanges++;
    this.recordingMs += performance.now() - t0;
  }

  override search<T extends Resource>(resourceType: string, params: SearchParams): AsyncGenerator<SearchPage<T>> {
    this.record(() => JSON.stringify({ search: { resourceType, params } }));
    return super.search<T>(resourceType, params);
  }

  override transaction(bundle: Bundle): Promise<Bundle>;
  override transaction(bundle: Bundle, options: Parameters<FhirClient['transaction']>[1]): Promise<Bundle | undefined>;
  override transaction(bundle: Bundle, options?: Parameters<FhirClient['transaction']>[1]): Promise<Bundle | undefined> {
    this.record(() => `${TRANSACTION_PREFIX}${JSON.stringify(bundle)}}`);
    return options ? super.transaction(bundle, options) : super.transaction(bundle);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
  }
}

function kindOf(type: string, params: SearchParams): string {
  const keys = Object.keys(params).filter((k) => !k.startsWith('_') || k === '_id');
  return `GET ${type}?${keys.join('&') || Object.keys(params).join('&')}`;
}

/**
 * The same HTTP work done by a bare client, sequentially, streamed from the recording: every search
 * paged to the end, every transaction posted as recorded (its text sent as is, never re-serialised).
 * Exchanges run in the order the adapter started them, so a RiskAssessment identifier pre-check sees
 * the same server state as the adapter's did. Returns the requests made.
 */
export async function replayRecording(url: string, file: string, around: Around = plain): Promise<number> {
  let requests = 0;
  const searchUrl = (type: string, params: SearchParams) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) for (const value of Array.isArray(v) ? v : [v]) q.append(k, value);
    return `${url}/${type}?${q}`;
  };
  const lines = createInterface({ input: createReadStream(file, { highWaterMark: 1 << 20 }), crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line) continue;
    if (line.startsWith(TRANSACTION_PREFIX)) {
      const body = line.slice(TRANSACTION_PREFIX.length, -1);
      await around('POST transaction', () => post(url, body));
      requests++;
      continue;
    }
    const { search } = JSON.parse(line) as { search: { resourceType: string; params: SearchParams } };
    let next: string | undefined = searchUrl(search.resourceType, search.params);
    const kind = kindOf(search.resourceType, search.params);
    while (next) {
      const page: Bundle = await around(kind, async () => {
        const res = await fetch(next!, { headers: { accept: 'application/fhir+json' } });
        if (!res.ok) throw new Error(`GET ${res.status}: ${await res.text()}`);
        return (await res.json()) as Bundle;
      });
      requests++;
      next = page.link?.find((l) => l.relation === 'next')?.url;
    }
  }
  return requests;
}
