import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { AdapterError } from '../core/errors.js';
import { CARD_FILE } from './loader.js';

/**
 * The ids of the models in a registry folder: the sub-folders holding a model card
 * (`<modelsDir>/<id>/model-card.json`), sorted. Whether each model can be used is the loader's
 * question (`loadModel`, and `inspectModels` in src/sync/models.ts for a model with its mapping).
 */
export async function modelIds(modelsDir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(modelsDir, { withFileTypes: true });
  } catch (err) {
    throw new AdapterError('not-found', `models folder ${modelsDir} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  const ids: string[] = [];
  for (const e of entries.filter((x) => x.isDirectory()).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const files = await readdir(join(modelsDir, e.name));
    if (files.includes(CARD_FILE)) ids.push(e.name);
  }
  return ids;
}
