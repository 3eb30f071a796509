// Test helpers (not exported from the package index).
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packagePath } from '../../core/paths.js';

/** Copies models/<id> into a fresh temp registry; returns the registry and the model folder. */
export async function tempModelCopy(id: string): Promise<{ registry: string; dir: string; cleanup: () => Promise<void> }> {
  const registry = await mkdtemp(join(tmpdir(), 'fhir-ml-models-'));
  const dir = join(registry, id);
  await cp(packagePath('models', id), dir, { recursive: true });
  return { registry, dir, cleanup: () => rm(registry, { recursive: true, force: true }) };
}

/** Card JSON as loosely typed data, for free-form edits in tests. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type CardJson = any;

export async function editCard(dir: string, edit: (card: CardJson) => void): Promise<void> {
  const file = join(dir, 'model-card.json');
  const card = JSON.parse(await readFile(file, 'utf8'));
  edit(card);
  await writeFile(file, JSON.stringify(card, null, 2));
}
