/**
 * Integration: `fhir-ml sync` as a separate process against the embedded FHIR server: stopped midway by
 * SIGTERM or by its reader going away (`| head`), and with a batch the server rejects. Between them sits
 * a pass-through HTTP relay that can hold one batch's transaction until the test has stopped the process
 * (so the stop always lands in the middle of the run), or answer it with a rejection the real server
 * would not produce on demand. Every other request reaches the real server unchanged.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CarePlan, Provenance, RiskAssessment } from 'fhir/r4.js';
import { PACKAGE_ROOT } from '../../src/core/paths.js';
import { loadDiabetesRows } from '../../src/demo/diabetes-rows.js';
import { seedDemo } from '../../src/demo/demo.js';
import { FhirClient } from '../../src/fhir/client.js';
import { startFhirServer, type RunningFhirServer } from '../../src/server/index.js';

const PATIENTS = 40;
const BATCH = 10;
const AS_OF = '2026-01-01T00:00:00Z';

/** Forwards every request to `target`; can hold the n-th RiskAssessment transaction until released. */
class Relay {
  private server: Server;
  private transactions = 0;
  holdTransaction = 0;
  /** The n-th RiskAssessment transaction is answered 422 without reaching the server. */
  rejectTransaction = 0;
  private release?: () => void;
  /** Resolves when the held transaction has arrived (and is being held). */
  held: Promise<void>;
  private onHeld!: () => void;
  private origin = '';

  constructor(private readonly target: URL) {
    this.held = new Promise((resolve) => (this.onHeld = resolve));
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const forward = () => {
          const upstream = request({ host: this.target.hostname, port: this.target.port, method: req.method, path: req.url, headers: req.headers }, (up: IncomingMessage) => {
            const parts: Buffer[] = [];
            up.on('data', (c: Buffer) => parts.push(c));
            up.on('end', () => {
              // Links in the answer (paging) point at the relay, as a proxy in front of a server would make them.
              const text = Buffer.concat(parts).toString('utf8').split(this.target.origin).join(this.origin);
              const { 'content-length': _length, 'transfer-encoding': _encoding, ...headers } = up.headers;
              res.writeHead(up.statusCode ?? 502, { ...headers, 'content-length': Buffer.byteLength(text) });
              res.end(text);
            });
          });
          upstream.end(body);
        };
        const isBatchWrite = req.method === 'POST' && body.includes('"RiskAssessment"') && body.includes('"transaction"');
        const n = isBatchWrite ? ++this.transactions : 0;
        if (n && n === this.rejectTransaction) {
          const outcome = { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'processing' }] };
          res.writeHead(422, { 'content-type': 'application/fhir+json' });
          res.end(JSON.stringify(outcome));
        } else if (n && n === this.holdTransaction) {
          this.release = forward;
          this.onHeld();
        } else forward();
      });
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as AddressInfo;
    this.origin = `http://127.0.0.1:${port}`;
    return `${this.origin}${this.target.pathname}`;
  }

  releaseHeld(): void {
    this.release?.();
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

function startSync(url: string, asOf = AS_OF): ChildProcessWithoutNullStreams {
  return spawn(
    process.execPath,
    ['--import', 'tsx', 'src/cli/main.ts', 'sync', '--fhir-url', url, '--model', 'diabetes-progression', '--all', '--as-of', asOf, '--batch-size', String(BATCH), '--json', '--no-explain'],
    { cwd: PACKAGE_ROOT, env: { ...process.env, FHIR_ML_LOG_LEVEL: 'silent', FHIR_ML_CONFIG: '' } },
  );
}

function collect(stream: NodeJS.ReadableStream): { text: () => string; waitFor: (re: RegExp) => Promise<void> } {
  let text = '';
  const waiters: { re: RegExp; resolve: () => void }[] = [];
  stream.on('data', (c: Buffer) => {
    text += c.toString();
    for (const w of waiters.filter((x) => x.re.test(text))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  });
  return {
    text: () => text,
    waitFor: (re) => (re.test(text) ? Promise.resolve() : new Promise((resolve) => waiters.push({ re, resolve }))),
  };
}

const exited = (child: ChildProcessWithoutNullStreams) => new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));

/** Waits for `event`, failing (instead of hanging) when the process ends first. */
async function before<T>(event: Promise<T>, code: Promise<number | null>, stderr: () => string): Promise<T> {
  return Promise.race([
    event,
    code.then((c) => {
      throw new Error(`sync exited with ${c} before the test could stop it: ${stderr()}`);
    }),
  ]);
}

async function searchAll<T extends fhir4.FhirResource>(client: FhirClient, type: string): Promise<T[]> {
  const out: T[] = [];
  for await (const page of client.search<T>(type, { _count: '1000' })) out.push(...page.resources);
  return out;
}

describe('sync stopped midway (integration, separate process)', () => {
  let server: RunningFhirServer;
  let client: FhirClient;

  beforeEach(async () => {
    server = await startFhirServer({ port: 0 });
    await seedDemo(server, loadDiabetesRows().slice(0, PATIENTS));
    client = new FhirClient({ baseUrl: server.url, auth: { type: 'none' } });
  });
  afterEach(async () => server.close());

  /**
   * A clean re-run completes the population: exactly one RiskAssessment and one Provenance per patient,
   * at most one CarePlan proposal per patient, each with its one Provenance.
   */
  async function expectCompletedWithoutDuplicates(asOf = AS_OF): Promise<void> {
    const child = startSync(server.url, asOf);
    const out = collect(child.stdout);
    expect(await exited(child)).toBe(0);
    const summary = JSON.parse(out.text().trim().split('\n').at(-1)!);
    expect(summary).toMatchObject({ type: 'summary', patients: PATIENTS, failed: 0 });
    const totals = summary.byModel['diabetes-progression'];
    expect(totals.created + totals.alreadyPresent).toBe(PATIENTS);
    const assessments = await searchAll<RiskAssessment>(client, 'RiskAssessment');
    expect(assessments).toHaveLength(PATIENTS);
    expect(new Set(assessments.map((r) => r.identifier![0].value)).size).toBe(PATIENTS);
    expect(new Set(assessments.map((r) => r.subject.reference)).size).toBe(PATIENTS);
    const carePlans = await searchAll<CarePlan>(client, 'CarePlan');
    expect(new Set(carePlans.map((c) => c.subject.reference)).size).toBe(carePlans.length);
    expect(carePlans.length).toBe(totals.carePlans.created + totals.carePlans.alreadyPresent);
    const provenances = await searchAll<Provenance>(client, 'Provenance');
    expect(provenances.filter((p) => p.id!.startsWith('ra-'))).toHaveLength(PATIENTS);
    expect(provenances.filter((p) => p.id!.startsWith('cp-'))).toHaveLength(carePlans.length);
    expect(provenances).toHaveLength(PATIENTS + carePlans.length);
    expect(await searchAll(client, 'Device')).toHaveLength(1);
  }

  it('on SIGTERM finishes the batch in progress, takes no other, prints the summary marked interrupted and exits 143', async () => {
    const relay = new Relay(new URL(server.url));
    relay.holdTransaction = 2;
    const child = startSync(await relay.listen());
    const out = collect(child.stdout);
    const err = collect(child.stderr);
    const code = exited(child);
    try {
      await before(relay.held, code, err.text); // batch 2 is being written
      child.kill('SIGTERM');
      await err.waitFor(/SIGTERM: finishing the batch in progress/);
      relay.releaseHeld();
      expect(await code).toBe(143);
    } finally {
      await relay.close();
    }
    const lines = out.text().trim().split('\n').map((l) => JSON.parse(l));
    const summary = lines.at(-1);
    expect(summary).toMatchObject({ type: 'summary', interrupted: { by: 'SIGTERM', abandonedPatients: 0 }, batches: 2, patients: 2 * BATCH, failed: 0 });
    // Never half-counted: the finished batches' patients, each reported once, all written.
    const patients = lines.filter((l) => l.type === 'patient');
    expect(patients).toHaveLength(2 * BATCH);
    expect(patients.every((p) => p.status === 'scored' && p.write === 'created')).toBe(true);
    expect(summary.byModel['diabetes-progression']).toMatchObject({ scored: 2 * BATCH, created: 2 * BATCH });
    expect(await searchAll(client, 'RiskAssessment')).toHaveLength(2 * BATCH);
    expect(err.text()).toContain(`--as-of ${new Date(AS_OF).toISOString()}`);
    expect(err.text()).not.toMatch(/\n\s+at /);

    await expectCompletedWithoutDuplicates();
  });

  it('ends quietly when its reader goes away (| head): no stack trace, exit 141, nothing half-counted', async () => {
    const relay = new Relay(new URL(server.url));
    relay.holdTransaction = 2;
    const child = startSync(await relay.listen());
    const err = collect(child.stderr);
    const code = exited(child);
    try {
      await before(new Promise<void>((resolve) => child.stdout.once('data', () => resolve())), code, err.text);
      await before(relay.held, code, err.text);
      child.stdout.destroy(); // as `head -1` does once it has its line
      relay.releaseHeld();
      expect(await code).toBe(141);
    } finally {
      await relay.close();
    }
    expect(err.text()).not.toMatch(/EPIPE|Error|\n\s+at /);
    await expectCompletedWithoutDuplicates();
  });

  it('exits 3 when a batch fails, naming the as-of that completes it; today means now, and that re-run adds nothing twice', async () => {
    const relay = new Relay(new URL(server.url));
    relay.rejectTransaction = 2;
    const today = new Date().toISOString().slice(0, 10);
    const child = startSync(await relay.listen(), today);
    const out = collect(child.stdout);
    const err = collect(child.stderr);
    try {
      expect(await exited(child)).toBe(3);
    } finally {
      await relay.close();
    }
    const summary = JSON.parse(out.text().trim().split('\n').at(-1)!);
    expect(summary).toMatchObject({ patients: PATIENTS, failed: BATCH, failures: [{ code: 'fhir-rejected', patientIds: BATCH }] });
    // today's date is now: an instant of today, not the end of the day (which lies in the future)
    expect(summary.asOf.slice(0, 10)).toBe(today);
    expect(new Date(summary.asOf).getTime()).toBeLessThanOrEqual(Date.now());
    const rerun = /re-run with --as-of (\S+) to complete it/.exec(err.text());
    expect(rerun?.[1]).toBe(summary.asOf);
    expect(await searchAll(client, 'RiskAssessment')).toHaveLength(PATIENTS - BATCH);
    await expectCompletedWithoutDuplicates(rerun![1]);
  });
});
