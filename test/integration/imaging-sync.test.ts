/**
 * Integration: the imaging path end to end. No bundled model takes ImagingStudy features, so this test
 * brings its own (as a hospital would: a model folder with an ONNX file and card, and a mapping), built
 * here with onnx-proto: a logistic model over a chest-imaging count, the days since the last chest study
 * and a pneumonia finding in a report. Synced against the embedded server seeded with the demo patients,
 * it must pull ImagingStudies in the same batched way, and every RiskAssessment's basis must list the
 * studies and reports whose values were used.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import type { RiskAssessment } from 'fhir/r4.js';
import { buildModel, floatTensor, FLOAT, node, valueInfo } from '../../scripts/lib/onnx-build.js';
import { packagePath } from '../../src/core/paths.js';
import { loadDiabetesRows } from '../../src/demo/diabetes-rows.js';
import { seedDemo } from '../../src/demo/demo.js';
import { DEMO_AS_OF, demoPatientId } from '../../src/demo/seed.js';
import { chestReportFor, hasChestImaging } from '../../src/demo/seed-imaging.js';
import { FhirClient } from '../../src/fhir/client.js';
import { startFhirServer, type RunningFhirServer } from '../../src/server/index.js';
import { prepareModels } from '../../src/sync/index.js';
import { runSync, type SyncResult } from '../../src/sync/index.js';
import { DEFAULT_IDENTIFIER_SYSTEM } from '../../src/writeback/identifiers.js';

const MAPPING = `
id: chest-imaging-test
version: 1.0.0
model: chest-imaging-test
description: Test mapping over ImagingStudy and report features.
features:
  - id: chest_studies
    source: { kind: imaging, measure: count, modalities: [CT, DX, CR], bodySites: [{ system: http://snomed.info/sct, code: '51185008' }] }
    lookback: P7D
  - id: days_since_chest
    source: { kind: imaging, measure: days-since-last, modalities: [CT, DX, CR], bodySites: [{ system: http://snomed.info/sct, code: '51185008' }] }
    lookback: P30D
    missing: { strategy: constant, value: 30 }
  - id: pneumonia
    source:
      kind: report-finding
      findings: [{ system: http://snomed.info/sct, code: '233604007' }]
      assertion: affirmed
    lookback: P7D
`;

const WEIGHTS = [0.8, -0.05, 1.5];
const BIAS = -2;

function buildOnnx(): Uint8Array {
  return buildModel({
    graphName: 'chest_imaging_test',
    docString: 'test model: sigmoid(x W + b)',
    opset: 13,
    inputs: [valueInfo('features', FLOAT, ['N', 3])],
    outputs: [valueInfo('probability', FLOAT, ['N', 1])],
    initializers: [floatTensor('W', [3, 1], WEIGHTS), floatTensor('B', [1], [BIAS])],
    nodes: [node('MatMul', ['features', 'W'], ['xw'], 'matmul'), node('Add', ['xw', 'B'], ['logit'], 'add'), node('Sigmoid', ['logit'], ['probability'], 'sigmoid')],
    metadata: [],
  });
}

describe('a model over ImagingStudy and report features (integration)', () => {
  let dir: string;
  let server: RunningFhirServer;
  let result: SyncResult;
  let client: FhirClient;
  const rows = loadDiabetesRows().slice(0, 18);

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'fhir-ml-imaging-'));
    const modelDir = path.join(dir, 'models', 'chest-imaging-test');
    mkdirSync(modelDir, { recursive: true });
    mkdirSync(path.join(dir, 'mappings'));
    writeFileSync(path.join(dir, 'mappings', 'chest-imaging-test.yaml'), MAPPING);
    const onnx = buildOnnx();
    writeFileSync(path.join(modelDir, 'model.onnx'), onnx);
    // The card: CURB-65's as a template, with this model's tensors, columns and golden vectors.
    const session = await ort.InferenceSession.create(onnx);
    const golden = [[1, 0, 1], [0, 30, 0]];
    const expected = await session.run({ features: new ort.Tensor('float32', Float32Array.from(golden.flat()), [2, 3]) });
    const p = expected.probability.data as Float32Array;
    const card = JSON.parse(readFileSync(packagePath('models', 'curb65', 'model-card.json'), 'utf8'));
    Object.assign(card, {
      id: 'chest-imaging-test',
      name: 'Chest imaging test model',
      sha256: createHash('sha256').update(onnx).digest('hex'),
      featureIds: ['chest_studies', 'days_since_chest', 'pneumonia'],
      preprocessing: { description: 'none', columns: { chest_studies: null, days_since_chest: null, pneumonia: null } },
      goldenVectors: golden.map((input, i) => ({ input, expected: { probability: [p[i]] } })),
      explanation: { ...card.explanation, baseline: [0, 30, 0] },
    });
    card.onnx = { ...card.onnx, input: { ...card.onnx.input, shape: ['N', 3] }, additionalOutputs: [] };
    delete card.ood; // CURB-65's out-of-distribution check is for its own 6 columns
    writeFileSync(path.join(modelDir, 'model-card.json'), JSON.stringify(card, null, 2));

    server = await startFhirServer({ port: 0 });
    await seedDemo(server, rows);
    client = new FhirClient({ baseUrl: server.url, auth: { type: 'none' } });
    const models = await prepareModels(['chest-imaging-test'], { modelsDir: path.join(dir, 'models'), mappingsDir: path.join(dir, 'mappings') });
    result = await runSync(client, models, { asOf: DEMO_AS_OF, identifierSystem: DEFAULT_IDENTIFIER_SYSTEM });
  }, 300_000);

  afterAll(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('scores everyone and reconciles what it fetched', () => {
    expect(result.failed).toBe(0);
    const totals = result.byModel['chest-imaging-test'];
    expect(totals.scored).toBe(rows.length);
    expect(totals.fetched).toBe(totals.used + totals.excluded);
  });

  it('lists the ImagingStudies and reports whose values were used in each RiskAssessment basis', async () => {
    const byPatient = new Map<string, RiskAssessment>();
    for await (const page of client.search<RiskAssessment>('RiskAssessment', { _count: '100' })) {
      for (const ra of page.resources) byPatient.set(ra.subject.reference!, ra);
    }
    let withImaging = 0;
    rows.forEach((_, i) => {
      const id = demoPatientId(i);
      const ra = byPatient.get(`Patient/${id}`)!;
      const basis = ra.basis?.map((b) => b.reference) ?? [];
      const probability = ra.prediction![0].probabilityDecimal!;
      if (hasChestImaging(i)) {
        withImaging++;
        expect(basis).toContain(`ImagingStudy/${id}-chest-study`);
        const affirmed = chestReportFor(i).labels.pneumonia === 'affirmed';
        expect(basis.includes(`DiagnosticReport/${id}-chest-report`)).toBe(affirmed);
        // The study is within a day of as-of: 1 study, 0 days.
        const logit = WEIGHTS[0] * 1 + WEIGHTS[1] * 0 + WEIGHTS[2] * (affirmed ? 1 : 0) + BIAS;
        expect(Math.abs(probability - 1 / (1 + Math.exp(-logit)))).toBeLessThan(1e-5);
      } else {
        expect(basis.some((b) => b?.startsWith('ImagingStudy/'))).toBe(false);
        // No study: count 0, days since imputed as 30, no report.
        const logit = WEIGHTS[1] * 30 + BIAS;
        expect(Math.abs(probability - 1 / (1 + Math.exp(-logit)))).toBeLessThan(1e-5);
      }
    });
    expect(withImaging).toBeGreaterThanOrEqual(3);
  });
});
