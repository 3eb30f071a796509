import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { packagePath } from '../core/paths.js';
import { readModelCard } from './loader.js';
import { loadOodModel, type OodRunner } from './ood.js';
import { editCard, tempModelCopy } from './testing/helpers.js';

interface EvaluationFile {
  modelId: string;
  columns: string[];
  threshold: number;
  sets: { id: string; rows: number[][] }[];
}

describe.each(['diabetes-progression', 'curb65'])('out-of-distribution check of %s', (id) => {
  let runner: OodRunner;
  let evaluation: EvaluationFile;

  beforeAll(async () => {
    const card = await readModelCard(join(packagePath('models'), id));
    runner = (await loadOodModel(join(packagePath('models'), id), card))!;
    evaluation = JSON.parse(await readFile(packagePath(card.ood!.evaluationFile), 'utf8')) as EvaluationFile;
  });
  afterAll(async () => runner?.close());

  it('loads with its sha256 checked and its golden vectors reproduced by onnxruntime', () => {
    expect(runner).toBeDefined();
    expect(runner.threshold).toBe(runner.card.ood.threshold);
    expect(evaluation.threshold).toBe(runner.card.ood.threshold);
    expect(evaluation.columns).toEqual(runner.card.featureIds);
  });

  it('reproduces every flag rate stated in the card, running ood.onnx with onnxruntime', async () => {
    const stated = runner.card.ood.evaluation;
    expect(stated.map((e) => e.id)).toEqual(evaluation.sets.map((s) => s.id));
    for (const e of stated) {
      const rows = evaluation.sets.find((s) => s.id === e.id)!.rows;
      expect(rows).toHaveLength(e.n);
      const { flagged, error } = await runner.run(rows.map((r) => Float32Array.from(r)));
      const count = flagged.filter(Boolean).length;
      expect({ set: e.id, flagged: count }).toEqual({ set: e.id, flagged: e.flagged });
      expect(Math.round((count / e.n) * 1e4) / 1e4).toBe(e.flagRate);
      expect(Array.from(error).every((v) => Number.isFinite(v) && v >= 0)).toBe(true);
    }
    // About 1% of the training rows lie above the threshold, by construction.
    const training = stated.find((e) => e.id === 'training')!;
    expect(training.flagRate).toBeGreaterThan(0);
    expect(training.flagRate).toBeLessThanOrEqual(0.01);
  });

  it('takes the model input layout: one flat Float32Array of n rows', async () => {
    const rows = evaluation.sets[1].rows.slice(0, 5);
    const flat = Float32Array.from(rows.flat());
    const a = await runner.run(flat, 5);
    const b = await runner.run(rows.map((r) => Float32Array.from(r)));
    expect(Array.from(a.error)).toEqual(Array.from(b.error));
  });
});

describe('out-of-distribution check: what it flags', () => {
  it('diabetes-progression: the training-mean vector passes; with glucose in mmol/L read as mg/dL it is flagged', async () => {
    const card = await readModelCard(join(packagePath('models'), 'diabetes-progression'));
    const runner = (await loadOodModel(join(packagePath('models'), 'diabetes-progression'), card))!;
    try {
      const [mean] = card.ood!.goldenVectors; // training mean
      const glucoseCol = card.featureIds.indexOf('glucose');
      const { mean: gMean, std: gStd } = card.preprocessing.columns.glucose!;
      const shifted = Float32Array.from(mean.input);
      shifted[glucoseCol] = (5.5 - gMean) / gStd; // 99 mg/dL reported as 5.5 mmol/L, read as 5.5 mg/dL
      const out = await runner.run([Float32Array.from(mean.input), shifted]);
      expect(out.flagged).toEqual([false, true]);
      expect(out.error[1]).toBeGreaterThan(out.threshold);
    } finally {
      await runner.close();
    }
  });
});

describe('loadOodModel failures', () => {
  it('refuses an ood.onnx whose sha256 differs from the card, naming model and file', async () => {
    const { dir, cleanup } = await tempModelCopy('diabetes-progression');
    try {
      const file = join(dir, 'ood.onnx');
      const bytes = await readFile(file);
      bytes[bytes.length - 10] ^= 0xff;
      await writeFile(file, bytes);
      const card = await readModelCard(dir);
      await expect(loadOodModel(dir, card)).rejects.toMatchObject({ code: 'model-invalid', message: expect.stringMatching(/diabetes-progression.*sha256 mismatch/) });
    } finally {
      await cleanup();
    }
  });

  it('refuses a missing ood.onnx and a wrong golden reconstruction error', async () => {
    const { dir, cleanup } = await tempModelCopy('curb65');
    try {
      await editCard(dir, (c) => (c.ood.goldenVectors[0].reconstructionError *= 1.5));
      await expect(loadOodModel(dir, await readModelCard(dir))).rejects.toMatchObject({ code: 'model-invalid', message: expect.stringMatching(/self-test failed/) });
      await rm(join(dir, 'ood.onnx'));
      await expect(loadOodModel(dir, await readModelCard(dir))).rejects.toMatchObject({ code: 'model-invalid', message: expect.stringMatching(/cannot read ood.onnx/) });
    } finally {
      await cleanup();
    }
  });

  it('a card without an ood section has no check (undefined)', async () => {
    const { dir, cleanup } = await tempModelCopy('curb65');
    try {
      await editCard(dir, (c) => delete c.ood);
      expect(await loadOodModel(dir, await readModelCard(dir))).toBeUndefined();
    } finally {
      await cleanup();
    }
  });
});
