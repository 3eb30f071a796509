/**
 * The `fhir-ml` command end to end (in-process): exit codes and messages for bad models, mappings and
 * input, and a real sync against the embedded server with --json.
 */
import { jest } from '@jest/globals';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { packagePath } from '../core/paths.js';
import { loadDiabetesRows } from '../demo/diabetes-rows.js';
import { seedDemo } from '../demo/demo.js';
import { FhirClient } from '../fhir/client.js';
import { startFhirServer, type RunningFhirServer } from '../server/index.js';
import { main } from './main.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  let stdout = '';
  let stderr = '';
  const out = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  const err = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  process.exitCode = undefined;
  try {
    const code = await main(['node', 'fhir-ml', ...args]);
    return { code, stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
    process.exitCode = undefined;
    process.env = saved;
  }
}

describe('fhir-ml CLI', () => {
  let tmp: string;
  let server: RunningFhirServer;

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(tmpdir(), 'fhir-ml-cli-'));
    server = await startFhirServer({ port: 0 });
    await seedDemo(server, loadDiabetesRows().slice(0, 12));
  });

  afterAll(async () => {
    await server.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  function copyOf(what: 'models' | 'mappings', name: string): string {
    const dir = path.join(tmp, `${name}-${what}`);
    cpSync(packagePath(what), dir, { recursive: true });
    return dir;
  }

  it('stops on a corrupted model file, naming the model and the problem', async () => {
    const models = copyOf('models', 'corrupt');
    const onnx = path.join(models, 'diabetes-progression', 'model.onnx');
    const bytes = readFileSync(onnx);
    bytes[bytes.length - 5] ^= 0xff;
    writeFileSync(onnx, bytes);
    const r = await run(['sync', '--fhir-url', server.url, '--model', 'diabetes-progression', '--all'], { FHIR_ML_MODELS_DIR: models });
    expect(r.code).toBe(65);
    expect(r.stderr).toMatch(/diabetes-progression/);
    expect(r.stderr).toMatch(/sha256/);
  });

  it('stops on an invalid mapping, naming the file and the path of the bad field', async () => {
    const mappings = copyOf('mappings', 'invalid');
    const file = path.join(mappings, 'diabetes-progression.yaml');
    writeFileSync(file, readFileSync(file, 'utf8').replace('lookback: P1Y', 'lookback: one year'));
    const r = await run(['sync', '--fhir-url', server.url, '--model', 'diabetes-progression', '--all'], { FHIR_ML_MAPPINGS_DIR: mappings });
    expect(r.code).toBe(65);
    expect(r.stderr).toContain('diabetes-progression.yaml');
    expect(r.stderr).toMatch(/features\[\d+\]\.lookback/);

    const validate = await run(['mappings', 'validate', '--dir', mappings]);
    expect(validate.code).toBe(65);
    expect(validate.stdout).toMatch(/FAIL .*diabetes-progression\.yaml/);
  });

  it('stops when the mapping and the model disagree on the input columns', async () => {
    const mappings = copyOf('mappings', 'mismatch');
    const file = path.join(mappings, 'diabetes-progression.yaml');
    // Drop the glucose feature: the mapping now produces 9 columns for a 10-input model.
    const text = readFileSync(file, 'utf8');
    const start = text.indexOf('  - id: glucose');
    writeFileSync(file, text.slice(0, start));
    const r = await run(['sync', '--fhir-url', server.url, '--model', 'diabetes-progression', '--all'], { FHIR_ML_MAPPINGS_DIR: mappings });
    expect(r.code).toBe(65);
    expect(r.stderr).toMatch(/model-mismatch/);
    expect(r.stderr).toMatch(/glucose/);
  });

  it('rejects bad input with a usage exit code', async () => {
    expect((await run(['sync', '--fhir-url', server.url, '--model', 'diabetes-progression'])).stderr).toMatch(/--patient ID \.\.\. or --all/);
    const badDate = await run(['sync', '--fhir-url', server.url, '--model', 'diabetes-progression', '--all', '--as-of', 'yesterday']);
    expect(badDate.code).toBe(64);
    expect(badDate.stderr).toMatch(/--as-of "yesterday"/);
    expect((await run(['sync', '--model', 'diabetes-progression', '--all'])).code).toBe(64);
    expect((await run(['no-such-command'])).code).toBe(64);
    // Every problem of the invocation at once.
    const many = await run(['sync', '--model', 'diabetes-progression', '--as-of', '2999-01-01', '--batch-size', '0']);
    expect(many.code).toBe(64);
    expect(many.stderr).toMatch(/--patient ID \.\.\. or --all/);
    expect(many.stderr).toMatch(/in the future/);
    expect(many.stderr).toMatch(/batchSize/);
    const unknown = await run(['sync', '--fhir-url', server.url, '--model', 'nope', '--all']);
    expect(unknown.code).toBe(66);
    expect(unknown.stderr).toMatch(/unknown model "nope" \(installed: .*diabetes-progression/);
    expect((await run(['sync', '--help'])).code).toBe(0);
  });

  it('takes Patient/<id>, refuses invalid ids by name before any request, and lists unknown patients by id', async () => {
    // Nothing listens there: a request would fail with 69, not 64.
    const down = `http://127.0.0.1:${await closedPort()}/fhir/R4`;
    const bad = await run(['sync', '--fhir-url', down, '--model', 'diabetes-progression', '--patient', 'demo-0001', 'bad id!', 'Patient/x/y']);
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain('--patient: not a patient id');
    expect(bad.stderr).toContain('"bad id!", "Patient/x/y"');
    expect(bad.stdout).toBe('');

    const table = await run(['sync', '--fhir-url', server.url, '--model', 'diabetes-progression', '--as-of', '2026-01-01', '--dry-run', '--patient', 'Patient/demo-0001', 'nobody-1', 'Patient/nobody-2']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/not found: 2;/);
    expect(table.stdout).toMatch(/patients not found: nobody-1, nobody-2/);
    expect(table.stdout).toMatch(/diabetes-progression\s+1\s/); // demo-0001 scored
  });

  it('reports configuration problems all at once with one exit code, whatever the command', async () => {
    const file = path.join(tmp, 'bad-config.yaml');
    writeFileSync(file, 'fhirUrl: https://old.example.org\nsync:\n  batchSize: lots\nlog:\n  level: chatty\n');
    const env = { FHIR_ML_CONFIG: file, FHIR_ML_TOKEN: 't', FHIR_ML_USERNAME: 'u', FHIR_ML_PASSWORD: 'p' };
    for (const args of [['sync', '--fhir-url', server.url, '--model', 'diabetes-progression', '--all'], ['models', 'list'], ['mappings', 'validate']]) {
      const r = await run(args, env);
      expect(r.code).toBe(78);
      expect(r.stderr).toMatch(/4 problems/);
      for (const p of [/fhirUrl: unknown key \(it is now fhir\.url\)/, /sync\.batchSize \(from .*bad-config\.yaml\)/, /log\.level \(from .*bad-config\.yaml\)/, /a bearer token \(FHIR_ML_TOKEN\) and basic credentials/]) {
        expect(r.stderr).toMatch(p);
      }
    }
    // With a usage problem too, everything is still reported at once; the usage problem decides the code.
    const both = await run(['sync', '--model', 'diabetes-progression', '--all', '--as-of', 'soon'], env);
    expect(both.code).toBe(64);
    expect(both.stderr).toMatch(/5 problems/);
  });

  it('--json lines carry the rationale, the applicability and the CarePlans of each patient; the summary counts them per model', async () => {
    const asOf = '2025-12-21';
    const r = await run(['sync', '--fhir-url', server.url, '--model', 'diabetes-progression', '--all', '--as-of', asOf, '--json']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    const scored = lines.filter((l) => l.type === 'patient' && l.status === 'scored');
    expect(scored.length).toBeGreaterThan(5);
    for (const p of scored) {
      // vitals seeded after this as-of are not used: up to 2 imputed inputs still give a final score
      expect(p.applicability.imputed.length).toBeLessThanOrEqual(2);
      expect(p).toMatchObject({ riskAssessmentStatus: 'final', applicability: { decision: 'score', outOfRange: expect.any(Array), ood: { assessed: true } } });
      // values and units behind the contributions; ln_tg in its measured unit
      expect(p.rationale.text).toMatch(/(raises|lowers) the risk \([+-]\d\.\d\d log-odds\)/);
      const tg = p.rationale.items.find((i: { column: string }) => i.column === 'ln_tg');
      if (tg) expect(tg).toMatchObject({ label: 'triglyceride', unit: 'mg/dL' });
      expect(p.carePlans).toEqual({ created: expect.any(Number), alreadyPresent: 0, revoked: 0, untouched: 0 });
    }
    const summary = lines.at(-1);
    const created = scored.reduce((n, p) => n + p.carePlans.created, 0);
    expect(created).toBeGreaterThan(0);
    expect(summary.byModel['diabetes-progression']).toMatchObject({ preliminary: 0, carePlans: { created, alreadyPresent: 0, revoked: 0, untouched: 0 } });
    let onServer = 0;
    for await (const page of new FhirClient({ baseUrl: server.url }).search<fhir4.CarePlan>('CarePlan', { _count: '500' })) {
      onServer += page.resources.filter((c) => c.created === new Date(`${asOf}T23:59:59.999Z`).toISOString()).length;
    }
    expect(onServer).toBe(created);
    // (runs before the sync at 2026-01-01 below: a proposal of an earlier as-of never supersedes a later one)
  });

  it('syncs and prints a machine-readable result per patient with --json, then writes nothing on a re-run', async () => {
    const args = ['sync', '--fhir-url', server.url, '--model', 'diabetes-progression', '--all', '--as-of', '2026-01-01', '--json'];
    type Line = { type: 'patient' | 'summary'; patients?: number; patientId?: string; probability: number; band: string; write: string };
    const lines = (out: string) => out.trim().split('\n').map((l) => JSON.parse(l) as Line);
    const first = await run(args);
    expect(first.code).toBe(0);
    const json = lines(first.stdout);
    const patients = json.filter((l) => l.type === 'patient');
    expect(json.at(-1)).toMatchObject({ type: 'summary', patients: 12 });
    expect(patients).toHaveLength(12);
    for (const p of patients) {
      expect(p.probability).toBeGreaterThan(0);
      expect(p.probability).toBeLessThan(1);
      expect(['negligible', 'low', 'moderate', 'high', 'certain']).toContain(p.band);
      expect(p.write).toBe('created');
    }
    const second = lines((await run(args)).stdout).filter((l) => l.type === 'patient');
    expect(second).toHaveLength(12);
    expect(second.every((p) => p.write === 'already-present')).toBe(true);

    // Naming a model twice runs it once.
    const twice = lines((await run([...args.slice(0, 4), 'diabetes-progression', ...args.slice(4)])).stdout);
    expect(twice.filter((l) => l.type === 'patient')).toHaveLength(12);

    const dry = await run(['sync', '--fhir-url', server.url, '--model', 'diabetes-progression', '--patient', 'demo-0001', '--as-of', '2025-12-01', '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/dry run: nothing written/);
  });

  it('sync --shadow writes every RiskAssessment as preliminary and no CarePlan, and says so', async () => {
    const asOf = '2025-12-20';
    const json = await run(['sync', '--fhir-url', server.url, '--model', 'diabetes-progression', 'curb65', '--all', '--as-of', asOf, '--shadow', '--json']);
    expect(json.code).toBe(0);
    const lines = json.stdout.trim().split('\n').map((l) => JSON.parse(l));
    const scored = lines.filter((l) => l.type === 'patient' && l.status === 'scored');
    expect(scored.length).toBeGreaterThan(5);
    for (const p of scored) {
      expect(p).toMatchObject({ riskAssessmentStatus: 'preliminary', write: 'created' });
      expect(p.carePlans).toBeUndefined();
    }
    expect(lines.at(-1)).toMatchObject({ type: 'summary', shadow: true, byModel: { 'diabetes-progression': { preliminary: scored.filter((p) => p.modelId === 'diabetes-progression').length, carePlans: { created: 0 } } } });
    const client = new FhirClient({ baseUrl: server.url });
    const at = new Date(`${asOf}T23:59:59.999Z`).toISOString();
    const assessments: fhir4.RiskAssessment[] = [];
    for await (const page of client.search<fhir4.RiskAssessment>('RiskAssessment', { _count: '500' })) assessments.push(...page.resources.filter((ra) => ra.occurrenceDateTime === at));
    expect(assessments).toHaveLength(scored.length);
    for (const ra of assessments) {
      expect(ra.status).toBe('preliminary');
      expect(ra.note!.map((n) => n.text)).toContain('Shadow mode: written as preliminary for silent validation before go-live; not for clinical decisions.');
    }
    for await (const page of client.search<fhir4.CarePlan>('CarePlan', { _count: '500' })) expect(page.resources.filter((c) => c.created === at)).toEqual([]);
    const table = await run(['sync', '--fhir-url', server.url, '--model', 'diabetes-progression', '--patient', 'demo-0001', '--as-of', asOf, '--shadow']);
    expect(table.stdout).toMatch(/^SHADOW MODE: RiskAssessments written as preliminary, no CarePlans/m);
    expect(table.stdout).not.toMatch(/CarePlan proposals/);
  });
});

/** A local port nothing listens on. */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

describe('fhir-ml sync always reports', () => {
  it('ends with a summary line naming the failure when the server is down', async () => {
    const url = `http://127.0.0.1:${await closedPort()}/fhir/R4`;
    const env = { FHIR_ML_MAX_RETRIES: '0' };
    const json = await run(['sync', '--fhir-url', url, '--model', 'diabetes-progression', '--all', '--json'], env);
    expect(json.code).toBe(69);
    const summary = JSON.parse(json.stdout.trim().split('\n').at(-1)!);
    expect(summary).toMatchObject({ type: 'summary', patients: 0, batches: 0, aborted: { code: 'fhir-unavailable', stage: 'devices' } });
    expect(json.stderr).toMatch(/fhir-unavailable/);

    // A dry run registers no Device: the patient list is where it fails.
    const dry = await run(['sync', '--fhir-url', url, '--model', 'diabetes-progression', '--all', '--json', '--dry-run'], env);
    expect(dry.code).toBe(69);
    expect(JSON.parse(dry.stdout.trim().split('\n').at(-1)!)).toMatchObject({ type: 'summary', dryRun: true, aborted: { code: 'fhir-unavailable', stage: 'patient-list' } });

    const table = await run(['sync', '--fhir-url', url, '--model', 'diabetes-progression', '--patient', 'p1'], env);
    expect(table.code).toBe(69);
    expect(table.stdout).toMatch(/STOPPED: registering the model Devices failed \(fhir-unavailable\)/);
  });

  it('ends with a summary line when a model cannot be loaded', async () => {
    const r = await run(['sync', '--fhir-url', 'http://127.0.0.1:1/fhir', '--model', 'nope', '--all', '--json']);
    expect(r.code).toBe(66);
    expect(JSON.parse(r.stdout.trim())).toMatchObject({ type: 'summary', aborted: { code: 'not-found', stage: 'models' } });
  });
});

describe('fhir-ml features', () => {
  it("shows one patient's features, inputs and every fetched resource's fate, writing nothing", async () => {
    const server = await startFhirServer({ port: 0 });
    try {
      await seedDemo(server, loadDiabetesRows().slice(0, 4));
      const base = ['features', '--fhir-url', server.url, '--model', 'diabetes-progression', '--patient', 'demo-0004', '--as-of', '2026-01-01T00:00:00Z'];
      const text = await run(base);
      expect(text.code).toBe(0);
      expect(text.stdout).toMatch(/scorable/);
      expect(text.stdout).toMatch(/excluded {2}Observation\/demo-0004-glu-err {2}status \(glucose\)/);
      const json = JSON.parse((await run([...base, '--json'])).stdout) as { counts: { fetched: number; used: number; excluded: number }; columns: string[]; values: number[] };
      expect(json.counts.fetched).toBe(json.counts.used + json.counts.excluded);
      expect(json.values).toHaveLength(json.columns.length);
      let written = 0;
      for await (const page of new FhirClient({ baseUrl: server.url, auth: { type: 'none' } }).search('RiskAssessment', {})) written += page.resources.length;
      expect(written).toBe(0);
      expect((await run(['features', '--fhir-url', server.url, '--model', 'diabetes-progression', '--patient', 'nobody'])).code).toBe(66);

      // A patient the model may not score: the gate's decision first, the resources still accounted for.
      await server.load([
        { resourceType: 'Patient', id: 'gone', birthDate: '1950-02-01', gender: 'female', deceasedDateTime: '2025-10-01' },
        { resourceType: 'Condition', id: 'gone-dm', subject: { reference: 'Patient/gone' }, code: { coding: [{ system: 'http://snomed.info/sct', code: '44054006' }] }, onsetDateTime: '2015-01-01' },
      ] as Parameters<RunningFhirServer['load']>[0]);
      const gone = ['features', '--fhir-url', server.url, '--model', 'diabetes-progression', '--patient', 'gone', '--as-of', '2026-01-01T00:00:00Z'];
      expect((await run(gone)).stdout).toMatch(/^NOT SCORED: deceased \(deceasedDateTime at or before as-of\)$/m);
      const goneJson = JSON.parse((await run([...gone, '--json'])).stdout);
      expect(goneJson).toMatchObject({ skipReason: 'deceased', intendedUse: { eligible: false, reason: 'deceased' }, basis: ['Condition/gone-dm'] });
      const admitted = JSON.parse((await run([...base, '--json'])).stdout);
      expect(admitted.intendedUse).toEqual({ eligible: true, evidence: ['Condition/demo-0004-dm'] });
      expect((await run(base)).stdout).toMatch(/^intended use met by Condition\/demo-0004-dm$/m);
    } finally {
      await server.close();
    }
  });

  it('shows a transformed feature as what was measured, in its unit, and what the transforms make of it', async () => {
    const server = await startFhirServer({ port: 0 });
    try {
      const rows = loadDiabetesRows().slice(0, 1);
      await seedDemo(server, rows);
      const base = ['features', '--fhir-url', server.url, '--model', 'diabetes-progression', '--patient', 'Patient/demo-0001', '--as-of', '2026-01-01T00:00:00Z'];
      const tg = Math.exp(rows[0].ltg); // triglycerides in mg/dL, as seeded
      const json = JSON.parse((await run([...base, '--json'])).stdout) as {
        features: { id: string; unit?: string; transforms: string; columns: { column: string; measured: number | null; transformed?: number }[] }[];
      };
      const lnTg = json.features.find((f) => f.id === 'ln_tg')!;
      expect(lnTg.unit).toBe('mg/dL');
      expect(lnTg.transforms).toMatch(/^log, standardize\(mean 4\.648105, std 0\.5296825\)$/);
      expect(lnTg.columns[0].measured).toBeCloseTo(tg, 4);
      expect(lnTg.columns[0].transformed).toBeCloseTo((Math.log(tg) - 4.648105) / 0.5296825, 5);
      const text = (await run(base)).stdout;
      const line = text.split('\n').find((l) => l.startsWith('ln_tg '))!;
      expect(line).toMatch(/^ln_tg\s+[\d.]+\s+mg\/dL\s+log, standardize/);
      expect(text).toMatch(/^feature\s+measured\s+unit\s+transforms\s+after transforms\s+input$/m);
    } finally {
      await server.close();
    }
  });
});

describe('fhir-ml models list and mappings validate agree with sync', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = mkdtempSync(path.join(tmpdir(), 'fhir-ml-catalog-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  function copyOf(what: 'models' | 'mappings', name: string): string {
    const dir = path.join(tmp, `${name}-${what}`);
    cpSync(packagePath(what), dir, { recursive: true });
    return dir;
  }

  it('lists as ok exactly the models sync accepts, with the fields the README names', async () => {
    const ok = await run(['models', 'list', '--json']);
    expect(ok.code).toBe(0);
    const list = JSON.parse(ok.stdout) as Record<string, unknown>[];
    expect(list.map((m) => [m.id, m.status])).toEqual([
      ['curb65', 'ok'],
      ['diabetes-progression', 'ok'],
    ]);
    expect(Object.keys(list[1]).sort()).toEqual(['horizon', 'id', 'inputs', 'name', 'outcome', 'status', 'version']);
    expect(list[1]).toMatchObject({ version: '1.0.0', inputs: 10, horizon: { value: 1, unit: 'a' } });

    // A golden vector that no longer matches: the card and the ONNX file are intact (sha256 passes),
    // but sync's self-test refuses the model, so the list must too.
    const models = copyOf('models', 'golden');
    const cardFile = path.join(models, 'diabetes-progression', 'model-card.json');
    const card = JSON.parse(readFileSync(cardFile, 'utf8'));
    card.goldenVectors[0].expected.probability = [0.999];
    writeFileSync(cardFile, JSON.stringify(card, null, 2));
    const golden = await run(['models', 'list', '--json'], { FHIR_ML_MODELS_DIR: models });
    expect(golden.code).toBe(65);
    const entry = (JSON.parse(golden.stdout) as { id: string; status: string; version?: string; problem?: { code: string; message: string } }[]).find((m) => m.id === 'diabetes-progression')!;
    expect(entry).toMatchObject({ status: 'invalid', version: '1.0.0', problem: { code: 'model-selftest-failed' } });
    const sync = await run(['sync', '--fhir-url', 'http://127.0.0.1:1/fhir', '--model', 'diabetes-progression', '--all'], { FHIR_ML_MODELS_DIR: models });
    expect(sync.code).toBe(65);
    expect(sync.stderr).toMatch(/self-test failed/);

    // A mapping that disagrees with the model: listed invalid, as sync refuses it.
    const mappings = copyOf('mappings', 'disagree');
    const file = path.join(mappings, 'diabetes-progression.yaml');
    writeFileSync(file, readFileSync(file, 'utf8').replace('mean: 4.648105', 'mean: 4.7'));
    const table = await run(['models', 'list'], { FHIR_ML_MAPPINGS_DIR: mappings });
    expect(table.code).toBe(65);
    expect(table.stdout).toMatch(/diabetes-progression .*INVALID: model diabetes-progression and mapping diabetes-progression disagree on preprocessing/);
    expect(table.stdout).toMatch(/curb65 .* ok$/m);
  });

  it('validates the NLP rules beside the mappings and refuses a directory without mappings', async () => {
    const ok = await run(['mappings', 'validate']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/ok {3}.*nlp \(findings, context rules, sections\)/);

    const mappings = copyOf('mappings', 'nlp');
    const findings = path.join(mappings, 'nlp', 'findings.yaml');
    writeFileSync(findings, readFileSync(findings, 'utf8').replace('system: http://snomed.info/sct', 'system: http://snomed.info/sct\ncolour: red'));
    const bad = await run(['mappings', 'validate', '--dir', mappings]);
    expect(bad.code).toBe(65);
    expect(bad.stdout).toMatch(/FAIL .*nlp\n\s+.*findings\.yaml/);

    const empty = mkdtempSync(path.join(tmp, 'empty-'));
    const none = await run(['mappings', 'validate', '--dir', empty]);
    expect(none.code).toBe(66);
    expect(none.stderr).toMatch(/no mapping files/);
  });
});
