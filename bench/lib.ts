/**
 * Shared pieces of the benchmarks: the FHIR server in its own process, seeding demo patients, the
 * recording client that captures a sync's HTTP work, and the bare replay of that work.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Bundle, FhirResource, Resource } from 'fhir/r4.js';
import { chunk } from '../src/core/chunk.js';
import { packagePath } from '../src/core/paths.js';
import { loadDiabetesRows } from '../src/demo/diabetes-rows.js';
import { buildDemoPatient, DEMO_AS_OF, putTransaction } from '../src/demo/seed.js';
import { FhirClient, type SearchPage, type SearchParams } from '../src/fhir/client.js';

export const TSX = ['--import', 'tsx'];

export interface ServerProcess {
  url: string;
  child: ChildProcess;
}

/** `fhir-ml fhir-server` in a child process; resolves with its base URL once it listens. */
export async function startServerProcess(): Promise<ServerProcess> {
  const child = spawn(process.execPath, [...TSX, packagePath('src/cli/main.ts'), 'fhir-server', '--port', '0'], {
    cwd: packagePath(),
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, FHIR_ML_LOG_LEVEL: 'warn' },
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`FHIR server exited early (${code})`)));
  });
  return { url, child };
}

export async function stopServer(s: ServerProcess): Promise<void> {
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
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(body) });
  const json = (await res.json()) as Bundle;
  if (!res.ok) throw new Error(`POST ${res.status}: ${JSON.stringify(json).slice(0, 500)}`);
  return json;
}

/** Wraps one request (for timing or counting); the default just runs it. */
export type Around = <T>(kind: string, request: () => Promise<T>) => Promise<T>;
const plain: Around = (_kind, request) => request();

/** Seeds n demo patients (rows reused cyclically), 100 per PUT transaction; returns the resources sent. */
export async function seed(url: string, n: number, around: Around = plain): Promise<number> {
  const rows = loadDiabetesRows();
  let resources = 0;
  const ids = Array.from({ length: n }, (_, i) => i);
  for (const part of chunk(ids, 100)) {
    const batch: FhirResource[] = part.flatMap((i) => buildDemoPatient(rows[i % rows.length], i, DEMO_AS_OF));
    resources += batch.length;
    await around('seed PUT transaction (100 patients)', () => post(url, putTransaction(batch)));
  }
  return resources;
}

/** The HTTP work of one sync: the searches it paged and the transaction bundles it posted, in order. */
export interface Recording {
  searches: { resourceType: string; params: SearchParams }[];
  transactions: Bundle[];
}

export class RecordingClient extends FhirClient {
  readonly recording: Recording = { searches: [], transactions: [] };

  override search<T extends Resource>(resourceType: string, params: SearchParams): AsyncGenerator<SearchPage<T>> {
    this.recording.searches.push({ resourceType, params });
    return super.search<T>(resourceType, params);
  }

  override transaction(bundle: Bundle): Promise<Bundle> {
    this.recording.transactions.push(bundle);
    return super.transaction(bundle);
  }
}

function kindOf(type: string, params: SearchParams): string {
  const keys = Object.keys(params).filter((k) => !k.startsWith('_') || k === '_id');
  return `GET ${type}?${keys.join('&') || Object.keys(params).join('&')}`;
}

/**
 * The same HTTP work done by a bare client, sequentially: every search paged to the end, every bundle
 * posted. Searches and transactions interleave as in the sync (each batch's transaction follows its
 * RiskAssessment identifier pre-check), so the pre-checks see the same server state.
 */
export async function replayRecording(url: string, recording: Recording, around: Around = plain): Promise<number> {
  let requests = 0;
  const searchUrl = (type: string, params: SearchParams) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) for (const value of Array.isArray(v) ? v : [v]) q.append(k, value);
    return `${url}/${type}?${q}`;
  };
  const postNext = async (tx: Bundle) => {
    await around(`POST transaction (${tx.entry?.length ?? 0} entries)`, () => post(url, tx));
    requests++;
  };
  let t = 0;
  for (const s of recording.searches) {
    let next: string | undefined = searchUrl(s.resourceType, s.params);
    const kind = kindOf(s.resourceType, s.params);
    while (next) {
      const page: Bundle = await around(kind, async () => {
        const res = await fetch(next!, { headers: { accept: 'application/fhir+json' } });
        if (!res.ok) throw new Error(`GET ${res.status}: ${await res.text()}`);
        return (await res.json()) as Bundle;
      });
      requests++;
      next = page.link?.find((l) => l.relation === 'next')?.url;
    }
    if (s.resourceType === 'RiskAssessment' && t < recording.transactions.length) await postNext(recording.transactions[t++]);
  }
  while (t < recording.transactions.length) await postNext(recording.transactions[t++]);
  return requests;
}
