import { existsSync } from 'node:fs';
import path from 'node:path';
import { AdapterError } from '../core/errors.js';
import { inputColumns, loadMapping, type Mapping } from '../features/index.js';
import { checkMappingAgainstCard, checkModelAgainstMapping, listModels, loadModelById, type OnnxModelRunner } from '../models/index.js';

/** A model ready to run: its checked ONNX session and the mapping that feeds it. */
export interface SyncModel {
  runner: OnnxModelRunner;
  mapping: Mapping;
  columns: string[];
}

/**
 * Loads each model (sha256, tensor names and shapes, golden self-test) and its mapping
 * (`<mappingsDir>/<model id>.yaml`), and checks they agree column for column. Any problem stops here,
 * before any patient is touched, with a message naming the model and the problem.
 */
export async function prepareModels(ids: string[], dirs: { modelsDir: string; mappingsDir: string }): Promise<SyncModel[]> {
  if (ids.length === 0) throw new AdapterError('input-invalid', 'no model given (use --model ID; `fhir-ml models list` shows them)');
  const out: SyncModel[] = [];
  for (const id of [...new Set(ids)]) {
    if (!existsSync(path.join(dirs.modelsDir, id, 'model-card.json'))) {
      const installed = (await listModels(dirs.modelsDir)).map((m) => m.id);
      throw new AdapterError('not-found', `unknown model "${id}" (installed: ${installed.join(', ') || 'none'}; see \`fhir-ml models list\`)`);
    }
    const mappingFile = path.join(dirs.mappingsDir, `${id}.yaml`);
    if (!existsSync(mappingFile)) {
      throw new AdapterError('mapping-invalid', `model ${id}: no mapping file ${mappingFile}`);
    }
    const mapping = loadMapping(mappingFile);
    if (mapping.model !== id) {
      throw new AdapterError('mapping-invalid', `${mappingFile}: model: "${mapping.model}" but the file is for model "${id}"`);
    }
    const runner = await loadModelById(id, dirs.modelsDir);
    const columns = inputColumns(mapping);
    checkModelAgainstMapping(runner, columns, mapping.id);
    checkMappingAgainstCard(runner.card, mapping);
    out.push({ runner, mapping, columns });
  }
  return out;
}
