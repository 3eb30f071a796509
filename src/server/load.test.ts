import { createWriteStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { Bundle, Observation, Resource } from 'fhir/r4.js';
import { AdapterError } from '../core/errors.js';
import { silentLogger } from '../core/log.js';
import { jsonProblem, loadFiles } from './load.js';
import { runFhirServer } from './main.js';
import { validationIssues } from './repository.js';
import { createFhirServer, type FhirServer } from './server.js';

const DATASETS = path.resolve(process.cwd(), '../shared/datasets');
const SYNTHEA = path.join(DATASETS, 'synthea-r4');
const EXAMPLES = path.join(DATASETS, 'fhir-r4-examples');
const haveDatasets = existsSync(SYNTHEA) && existsSync(EXAMPLES);
if (!haveDatasets) console.warn(`[server/load.test] ${DATASETS} not found: skipping the Synthea and HL7 example tests`);
const withData = haveDatasets ? test : test.skip;

describe('loadFiles', () => {
  let server: FhirServer;
  let dir: string;
  beforeEach(() => {
    server = createFhirServer();
    dir = mkdtempSync(path.join(tmpdir(), 'fhir-load-'));
  });
  afterEach(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const patient = (id: string) => ({ resourceType: 'Patient', id });
  const observation = (id: string, subject: string): Observation => ({
    resourceType: 'Observation',
    id,
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '2339-0' }] },
    subject: { reference: subject },
  });

  test('loads NDJSON (ids kept), single resources and collection bundles; walks directories', async () => {
    writeFileSync(path.join(dir, 'a.ndjson'), [patient('p1'), patient('p2'), observation('o1', 'Patient/p1')].map((r) => JSON.stringify(r)).join('\n') + '\n\n');
    writeFileSync(path.join(dir, 'b.json'), JSON.stringify(observation('o2', 'Patient/p2')));
    const collection: Bundle = {
      resourceType: 'Bundle',
      type: 'collection',
      entry: [
        { fullUrl: 'urn:uuid:33333333-3333-4333-8333-333333333333', resource: { resourceType: 'Patient' } },
        { resource: { ...observation('x', 'urn:uuid:33333333-3333-4333-8333-333333333333'), id: undefined } },
      ],
    };
    writeFileSync(path.join(dir, 'c.json'), JSON.stringify(collection));
    writeFileSync(path.join(dir, 'ignored.txt'), 'not loaded');

    const result = await loadFiles(server, [dir]);
    expect(result.files.map((f) => path.basename(f.path))).toEqual(['a.ndjson', 'b.json', 'c.json']);
    expect(result.files[0].counts).toEqual({ Patient: 2, Observation: 1 });
    expect(result.counts).toEqual({ Patient: 3, Observation: 3 });
    expect(result.total).toBe(6);
    expect((await server.repo.readResource('Observation', 'o1')).id).toBe('o1');
    const linked = (await server.repo.searchResources({ resourceType: 'Observation', filters: [{ code: 'code', operator: 'eq' as never, value: 'http://loinc.org|2339-0' }] }))
      .map((o) => (o as Observation).subject?.reference)
      .filter((r) => r && !r.startsWith('Patient/p'));
    expect(linked).toHaveLength(1);
    expect(linked[0]).toMatch(/^Patient\/[0-9a-f-]{36}$/); // urn:uuid rewritten
  });

  test('a bad NDJSON line gives an AdapterError naming file and line; nothing of that file is written', async () => {
    const file = path.join(dir, 'bad.ndjson');
    writeFileSync(file, [JSON.stringify(patient('p1')), JSON.stringify({ resourceType: 'Observation', id: 'o9', code: { text: 'x' } })].join('\n'));
    const err = await loadFiles(server, [file]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdapterError);
    expect((err as AdapterError).code).toBe('input-invalid');
    expect((err as AdapterError).message).toMatch(/bad\.ndjson:2: invalid: status: Missing required property/);
    expect(server.repo.count('Patient')).toBe(0);

    writeFileSync(file, `${JSON.stringify(patient('p1'))}\n{"resourceType": "Patient",\n`);
    await expect(loadFiles(server, [file])).rejects.toThrow(/bad\.ndjson:2: not valid JSON/);
    writeFileSync(path.join(dir, 'broken.json'), '{\n  "resourceType": "Patient",\n  oops\n}');
    await expect(loadFiles(server, [path.join(dir, 'broken.json')])).rejects.toThrow(/broken\.json:3: not valid JSON/);
    await expect(loadFiles(server, [path.join(dir, 'missing.json')])).rejects.toThrow(/no such file/);
  });

  test('continueOnError collects failures per file and loads the rest', async () => {
    writeFileSync(path.join(dir, '1.ndjson'), JSON.stringify(patient('ok')));
    writeFileSync(path.join(dir, '2.ndjson'), JSON.stringify({ resourceType: 'Patient', id: 'bad', gender: 42 }));
    const result = await loadFiles(server, [dir], { continueOnError: true });
    expect(result.total).toBe(1);
    expect(result.failures).toHaveLength(1);
    expect(result.failures[0]).toMatchObject({ path: path.join(dir, '2.ndjson'), line: 1 });
    expect(result.failures[0].message).toMatch(/gender/);
  });

  test('validate:false accepts what validation would refuse', async () => {
    const lax = createFhirServer({ validate: false });
    writeFileSync(path.join(dir, 'x.ndjson'), JSON.stringify({ resourceType: 'Observation', id: 'o', code: { text: 'no status' } }));
    expect((await loadFiles(lax, [dir])).total).toBe(1);
    await lax.close();
  });

  test('NDJSON is streamed: a bad line after many good ones names file and line, quotes nothing, and undoes the file', async () => {
    const file = path.join(dir, 'late.ndjson');
    const good = Array.from({ length: 2500 }, (_, i) => JSON.stringify(observation(`o${i}`, `Patient/p${i % 7}`)));
    // Patient data on the bad line must not reach the message.
    writeFileSync(file, `${good.join('\n')}\n{"resourceType":"Patient","name":[{"family":"Confidential-Family"}] oops\n`);
    const err = (await loadFiles(server, [file], { chunkSize: 100 }).catch((e: unknown) => e)) as AdapterError;
    expect(err).toBeInstanceOf(AdapterError);
    expect(err.message).toMatch(/late\.ndjson:2501: not valid JSON: syntax error/);
    expect(err.message).not.toMatch(/Confidential|oops/);
    // Four chunks were written before the bad line; the file is one unit, so none of them stays.
    expect(server.repo.count('Observation')).toBe(0);
    expect(server.repo.changesSince(undefined)).toHaveLength(0);

    // A resource the validator refuses, late in the file: same, with the element path.
    writeFileSync(file, `${good.join('\n')}\n${JSON.stringify({ resourceType: 'Observation', id: 'x', code: { text: 'Confidential' } })}\n`);
    await expect(loadFiles(server, [file], { chunkSize: 100 })).rejects.toThrow(/late\.ndjson:2501: invalid: status: Missing required property/);
    expect(server.repo.count('Observation')).toBe(0);

    // An unknown type is named by its line too.
    writeFileSync(file, `${JSON.stringify(patient('p1'))}\n{"resourceType":"Patinet","id":"x"}\n`);
    await expect(loadFiles(server, [file])).rejects.toThrow(/late\.ndjson:2: unknown R4 resource type "Patinet"/);
  });

  test('NDJSON with a BOM, CRLF line ends and no final newline loads every line', async () => {
    const file = path.join(dir, 'crlf.ndjson');
    writeFileSync(file, `\uFEFF${JSON.stringify(patient('p1'))}\r\n\r\n${JSON.stringify(patient('p2'))}\r\n${JSON.stringify(observation('o1', 'Patient/p1'))}`);
    const result = await loadFiles(server, [file]);
    expect(result.counts).toEqual({ Patient: 2, Observation: 1 });
  });

  test('JSON syntax errors are described without quoting the input', () => {
    const messageOf = (text: string): string => {
      try {
        JSON.parse(text);
      } catch (err) {
        return jsonProblem(err as Error);
      }
      throw new Error('parsed');
    };
    for (const text of ['Secret-Name', '{"family": Secret-Name}', '{"a":1} Secret-Name', '{"a":']) {
      expect(messageOf(text)).not.toMatch(/Secret/);
    }
    expect(messageOf('{"a":')).toBe('unexpected end of input');
  });

  test('a Bundle file too large for one transaction is refused by name, not with a stack overflow', async () => {
    const file = path.join(dir, 'big.json');
    const bundle = { resourceType: 'Bundle', type: 'collection', entry: [patient('a'), patient('b'), patient('c')].map((resource) => ({ resource })) };
    writeFileSync(file, JSON.stringify(bundle));
    await expect(loadFiles(server, [file], { maxBundleEntries: 2 })).rejects.toThrow(/big\.json: a Bundle of 3 entries is more than 2 loaded as one transaction/);
    expect((await loadFiles(server, [file], { maxBundleEntries: 3 })).total).toBe(3);
  });

  withData('loads a Synthea transaction bundle with validation; references resolve', async () => {
    const file = path.join(SYNTHEA, readdirSync(SYNTHEA).filter((f) => f.endsWith('.json')).sort()[1]);
    const bundle = JSON.parse(readFileSync(file, 'utf8')) as Bundle;
    const result = await loadFiles(server, [file]);
    expect(result.total).toBe(bundle.entry?.length);
    const patients = await server.repo.searchResources({ resourceType: 'Patient' });
    expect(patients).toHaveLength(1);
    const expectedObs = bundle.entry?.filter((e) => e.resource?.resourceType === 'Observation').length;
    expect(result.counts.Observation).toBe(expectedObs);
    const res = await server.repo.search({ resourceType: 'Observation', filters: [{ code: 'patient', operator: 'eq' as never, value: `Patient/${patients[0].id}` }] });
    expect(res.total).toBe(expectedObs);
  });

  withData('every HL7 R4 example validates except two that medplum rejects for whitespace in base64Binary', () => {
    const failures: string[] = [];
    for (const sub of readdirSync(EXAMPLES).sort()) {
      for (const f of readdirSync(path.join(EXAMPLES, sub)).filter((n) => n.endsWith('.json'))) {
        const resource = JSON.parse(readFileSync(path.join(EXAMPLES, sub, f), 'utf8')) as Resource;
        const errors = validationIssues(resource as never).filter((i) => i.severity === 'error');
        if (errors.length) failures.push(`${f}: ${errors.map((e) => `${e.expression?.[0]} ${e.details?.text}`).join('; ')}`);
      }
    }
    // R4's base64Binary regex allows whitespace; medplum's validator does not (a validator limitation).
    expect(failures.sort()).toEqual([
      'diagnosticreport-example-gingival-mass.json: DiagnosticReport.presentedForm[0].data Invalid base64Binary format',
      'media-example.json: Media.content.data Invalid base64Binary format',
    ]);
  });
});

describe('fhir-server --load of a large NDJSON file', () => {
  // 150,000 resources, generated here. Loaded without validation (--no-validate): validating costs
  // ~0.12 ms per resource (~20 s for this file on a shared 2-core machine), and validated loading is
  // covered above; this test is about streaming and chunking, which validation does not change.
  const PATIENTS = 30_000;
  const OBSERVATIONS = 120_000;
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'fhir-load-large-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('loads 150,000 resources from one file through the command\'s load path; the server counts them', async () => {
    const file = path.join(dir, 'population.ndjson');
    const out = createWriteStream(file);
    const write = async (r: object): Promise<void> => {
      if (!out.write(`${JSON.stringify(r)}\n`)) await once(out, 'drain');
    };
    for (let i = 0; i < PATIENTS; i++) await write({ resourceType: 'Patient', id: `p${i}`, gender: i % 2 ? 'male' : 'female', birthDate: `19${50 + (i % 50)}-01-01` });
    for (let i = 0; i < OBSERVATIONS; i++) {
      await write({
        resourceType: 'Observation',
        id: `o${i}`,
        status: 'final',
        code: { coding: [{ system: 'http://loinc.org', code: i % 3 ? '2339-0' : '4548-4' }] },
        subject: { reference: `Patient/p${i % PATIENTS}` },
        effectiveDateTime: `20${10 + (i % 12)}-06-01`,
        valueQuantity: { value: i % 200, unit: 'mg/dL', system: 'http://unitsofmeasure.org', code: 'mg/dL' },
      });
    }
    out.end();
    await once(out, 'finish');

    const stdout = new Writable({ write: (_chunk, _enc, cb) => cb() });
    const running = await runFhirServer({ port: 0, load: [file], validate: false, logger: silentLogger, stdout, handleSignals: false });
    try {
      expect(running.loaded?.total).toBe(PATIENTS + OBSERVATIONS);
      expect(running.loaded?.counts).toEqual({ Patient: PATIENTS, Observation: OBSERVATIONS });
      const total = async (q: string): Promise<number | undefined> => ((await (await fetch(`${running.url}/${q}`)).json()) as Bundle).total;
      expect(await total('Patient?_summary=count')).toBe(PATIENTS);
      expect(await total('Observation?_summary=count')).toBe(OBSERVATIONS);
      expect(await total('Observation?code=http://loinc.org|4548-4&_summary=count')).toBe(OBSERVATIONS / 3);
      expect(await total(`Observation?subject=Patient/p${PATIENTS - 1}&_summary=count`)).toBe(OBSERVATIONS / PATIENTS);
    } finally {
      await running.close();
    }
  });
});
