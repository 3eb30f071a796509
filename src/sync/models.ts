import { existsSync } from 'node:fs';
import path from 'node:path';
import { AdapterError, toAdapterError } from '../core/errors.js';
import { inputColumns, loadMapping, type Mapping } from '../features/index.js';
import {
  checkMappingAgainstCard,
  checkModelAgainstMapping,
  compileIntendedUse,
  loadModelById,
  loadOodModel,
  loadValueSets,
  modelIds,
  rationaleFeaturesFromMapping,
  readModelCard,
  type ModelCard,
  type OnnxModelRunner,
  type OodRunner,
  type RationaleFeature,
  type ValueSetIndex,
} from '../models/index.js';
import { loadCarePlanDefinitions, type CarePlanDefinitions } from '../writeback/care-plan/index.js';

/**
 * A model ready to run: its checked ONNX session, the mapping that feeds it, and what makes its scores
 * safe to write: the value sets of its intended-use criteria (resolved and checked), its
 * out-of-distribution check, how its inputs read for clinicians, and its CarePlan proposal definitions.
 */
export interface SyncModel {
  runner: OnnxModelRunner;
  mapping: Mapping;
  columns: string[];
  /** Value sets the card's intended-use criteria name (`<mappingsDir>/valuesets`). */
  valueSets: ValueSetIndex;
  /** The out-of-distribution check (`ood.onnx`), when the card has one; released with the runner. */
  ood?: OodRunner;
  /** How each input column reads for clinicians (label, measured unit), for the rationale. */
  rationaleFeatures: RationaleFeature[];
  /** Measured unit by feature id (the mapping's `unit`), for the CarePlan assessment context. */
  units: Record<string, string | undefined>;
  /** PlanDefinitions and ActivityDefinitions of its CarePlan proposals (`<mappingsDir>/careplans/<id>/`), when it has any. */
  carePlans?: CarePlanDefinitions;
}

export interface ModelDirs {
  /** The model registry (`<dir>/<id>/model-card.json` + `model.onnx`). */
  modelsDir: string;
  /** Mapping files (`<dir>/<model id>.yaml`). */
  mappingsDir: string;
}

/**
 * Loads one model (sha256, ONNX decode, tensor names and shapes, golden self-test) and its mapping
 * (`<mappingsDir>/<model id>.yaml`), and checks they agree column for column and on preprocessing; then
 * its safety parts: the value sets of its intended-use criteria, its out-of-distribution check (sha256,
 * names, golden errors) and its CarePlan definitions. Any problem stops here, before any patient is
 * touched, with a message naming the model and the problem.
 */
export async function prepareModel(id: string, dirs: ModelDirs): Promise<SyncModel> {
  if (!existsSync(path.join(dirs.modelsDir, id, 'model-card.json'))) {
    const installed = await modelIds(dirs.modelsDir);
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
  try {
    const columns = inputColumns(mapping);
    checkModelAgainstMapping(runner, columns, mapping.id);
    checkMappingAgainstCard(runner.card, mapping);
    const valueSetsDir = path.join(dirs.mappingsDir, 'valuesets');
    const valueSets: ValueSetIndex = existsSync(valueSetsDir) ? loadValueSets(valueSetsDir) : new Map();
    // A criterion naming a value set that is not there stops the run here, before any patient.
    compileIntendedUse(runner.card, valueSets);
    const ood = await loadOodModel(path.join(dirs.modelsDir, id), runner.card);
    if (ood) runner.closeWith(ood);
    const carePlans = loadCarePlanDefinitions(id, path.join(dirs.mappingsDir, 'careplans'));
    const units = Object.fromEntries(mapping.features.map((f) => [f.id, f.unit]));
    return { runner, mapping, columns, valueSets, ood, rationaleFeatures: rationaleFeaturesFromMapping(mapping), units, ...(carePlans ? { carePlans } : {}) };
  } catch (err) {
    await runner.close().catch(() => undefined);
    throw err;
  }
}

/** `prepareModel` for each id (each once, in the order given). */
export async function prepareModels(ids: string[], dirs: ModelDirs): Promise<SyncModel[]> {
  if (ids.length === 0) throw new AdapterError('input-invalid', 'no model given (use --model ID; `fhir-ml models list` shows them)');
  const out: SyncModel[] = [];
  try {
    for (const id of [...new Set(ids)]) out.push(await prepareModel(id, dirs));
  } catch (err) {
    await Promise.all(out.map((m) => m.runner.close().catch(() => undefined)));
    throw err;
  }
  return out;
}

/** One installed model as `fhir-ml models list` reports it. */
export interface ModelStatus {
  id: string;
  /** From the model card, when the card can be read. */
  version?: string;
  name?: string;
  /** Number of model input columns. */
  inputs?: number;
  outcome?: string;
  horizon?: { value: number; unit: string };
  /** `ok`: sync would run it; `invalid`: sync refuses it, for `problem`. */
  status: 'ok' | 'invalid';
  problem?: { code: string; message: string };
}

/**
 * Every model of the registry, each checked exactly as `sync` checks it (`prepareModel`: card, sha256,
 * ONNX decode, tensor names and shapes, golden self-test, mapping agreement), so a model sync would
 * refuse is never listed as ok.
 */
export async function inspectModels(dirs: ModelDirs): Promise<ModelStatus[]> {
  const out: ModelStatus[] = [];
  for (const id of await modelIds(dirs.modelsDir)) {
    const describe = (card: ModelCard | undefined) =>
      card ? { version: card.version, name: card.name, inputs: card.featureIds.length, outcome: card.outcome.text, horizon: card.horizon } : {};
    try {
      const model = await prepareModel(id, dirs);
      out.push({ id, ...describe(model.runner.card), status: 'ok' });
      await model.runner.close();
    } catch (err) {
      const e = toAdapterError(err);
      // What the card says, when it can be read at all, helps to tell which copy of a model is broken.
      const card = await readModelCard(path.join(dirs.modelsDir, id)).catch(() => undefined);
      out.push({ id, ...describe(card), status: 'invalid', problem: { code: e.code, message: e.message } });
    }
  }
  return out;
}
