import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AdapterError } from '../core/errors.js';
import { CARD_FILE, MODEL_FILE, readModelCard, sha256Hex } from './loader.js';
import { MODELS_DIR } from './paths.js';

export interface ModelSummary {
  id: string;
  dir: string;
  valid: boolean;
  version?: string;
  name?: string;
  outcome?: string;
  horizon?: string;
  columns?: number;
  /** Why the folder is not a usable model (card invalid, sha256 mismatch ...). */
  error?: string;
}

/**
 * The models of a registry folder (`<modelsDir>/<id>/model-card.json` + `model.onnx`), sorted by id.
 * Cheap: validates cards and sha256 but creates no ONNX session (`loadModel` does the full check).
 */
export async function listModels(modelsDir: string = MODELS_DIR): Promise<ModelSummary[]> {
  let entries;
  try {
    entries = await readdir(modelsDir, { withFileTypes: true });
  } catch (err) {
    throw new AdapterError('not-found', `models folder ${modelsDir} cannot be read`, { cause: err });
  }
  const dirs = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
  const out: ModelSummary[] = [];
  for (const name of dirs) {
    const dir = join(modelsDir, name);
    const files = await readdir(dir);
    if (!files.includes(CARD_FILE)) continue; // not a model folder
    try {
      const card = await readModelCard(dir);
      const summary: ModelSummary = {
        id: card.id,
        dir,
        valid: true,
        version: card.version,
        name: card.name,
        outcome: card.outcome.text,
        horizon: `${card.horizon.value} ${card.horizon.unit}`,
        columns: card.featureIds.length,
      };
      try {
        const digest = sha256Hex(await readFile(join(dir, MODEL_FILE)));
        if (digest !== card.sha256) Object.assign(summary, { valid: false, error: `sha256 of ${MODEL_FILE} does not match the card` });
      } catch {
        Object.assign(summary, { valid: false, error: `${MODEL_FILE} missing` });
      }
      out.push(summary);
    } catch (err) {
      out.push({ id: name, dir, valid: false, error: err instanceof Error ? err.message : String(err) });
    }
  }
  return out;
}
