import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AdapterError } from '../core/errors.js';
import { loadModel, sha256Hex } from './loader.js';
import { packagePath } from '../core/paths.js';
import { editCard, tempModelCopy } from './testing/helpers.js';

async function loadError(dir: string): Promise<AdapterError> {
  try {
    const runner = await loadModel(dir);
    await runner.close();
  } catch (err) {
    expect(err).toBeInstanceOf(AdapterError);
    return err as AdapterError;
  }
  throw new Error('expected loadModel to fail');
}

describe('loadModel failures', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of cleanups) await c();
  });
  const copy = async (id: string) => {
    const t = await tempModelCopy(id);
    cleanups.push(t.cleanup);
    return t;
  };

  it('a flipped byte in model.onnx fails the sha256 check, naming the model', async () => {
    const { dir } = await copy('diabetes-progression');
    const file = join(dir, 'model.onnx');
    const bytes = await readFile(file);
    bytes[bytes.length - 20] ^= 0xff;
    await writeFile(file, bytes);
    const err = await loadError(dir);
    expect(err.code).toBe('model-invalid');
    expect(err.message).toMatch(/model diabetes-progression/);
    expect(err.message).toMatch(/sha256 mismatch/);
    expect(err.message).toContain(file);
  });

  it('a card with the wrong input name is a mismatch', async () => {
    const { dir } = await copy('diabetes-progression');
    await editCard(dir, (c) => (c.onnx.input.name = 'input'));
    const err = await loadError(dir);
    expect(err.code).toBe('model-mismatch');
    expect(err.message).toMatch(/model diabetes-progression/);
    expect(err.message).toMatch(/card input input/);
  });

  it('an ONNX file whose declared width differs from featureIds is a mismatch', async () => {
    const { dir } = await copy('diabetes-progression');
    const other = await readFile(packagePath('models', 'curb65', 'model.onnx'));
    await writeFile(join(dir, 'model.onnx'), other);
    await editCard(dir, (c) => (c.sha256 = sha256Hex(other)));
    const err = await loadError(dir);
    expect(err.code).toBe('model-mismatch');
    expect(err.message).toMatch(/declared shape \[N,6\] does not match featureIds.length 10/);
  });

  it('a wrong golden expectation fails the self-test', async () => {
    const { dir } = await copy('diabetes-progression');
    await editCard(dir, (c) => (c.goldenVectors[1].expected.probability[0] += 0.001));
    const err = await loadError(dir);
    expect(err.code).toBe('model-selftest-failed');
    expect(err.message).toMatch(/model diabetes-progression/);
    expect(err.message).toMatch(/golden vector 1/);
  });

  it('a wrong golden score fails the CURB-65 self-test', async () => {
    const { dir } = await copy('curb65');
    await editCard(dir, (c) => (c.goldenVectors[3].expected.score = [2]));
    const err = await loadError(dir);
    expect(err.code).toBe('model-selftest-failed');
    expect(err.message).toMatch(/model curb65 .*score = 1, expected 2/);
  });

  it('an invalid card names the model, the file and the problem', async () => {
    const { dir } = await copy('curb65');
    await editCard(dir, (c) => c.featureIds.pop());
    const err = await loadError(dir);
    expect(err.code).toBe('model-invalid');
    expect(err.message).toMatch(/model curb65 \(.*model-card\.json\): invalid model card: .*featureIds.length/);
  });

  it('a card whose id differs from its folder is invalid', async () => {
    const { dir } = await copy('curb65');
    await editCard(dir, (c) => (c.id = 'curb-65'));
    expect((await loadError(dir)).message).toMatch(/does not match its folder name curb65/);
  });
});
