/**
 * Trains the diabetes-progression model and writes models/diabetes-progression/{model.onnx,model-card.json}.
 *
 *   npm run train                        # rebuild the committed files
 *   npm run train -- --check             # exit 1 when the committed files differ from a rebuild
 *   npm run train -- --import-fixture DIR  # (re)create fixtures/diabetes/diabetes.csv from sklearn's raw files in DIR
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { PACKAGE_ROOT } from '../src/core/paths.js';
import { buildDiabetesArtifacts, checkDiabetesArtifacts, diabetesPaths, fixtureCsvFromSklearn } from './lib/diabetes.js';

const root = PACKAGE_ROOT;
const paths = diabetesPaths(root);
const args = process.argv.slice(2);

if (args[0] === '--import-fixture') {
  const dir = args[1];
  if (!dir) throw new Error('--import-fixture needs the directory holding diabetes_data_raw.csv.gz');
  const csv = fixtureCsvFromSklearn(readFileSync(join(dir, 'diabetes_data_raw.csv.gz')), readFileSync(join(dir, 'diabetes_target.csv.gz')));
  mkdirSync(dirname(paths.csv), { recursive: true });
  writeFileSync(paths.csv, csv);
  console.log(`wrote ${relative(root, paths.csv)}`);
} else if (args.includes('--check')) {
  const differ = checkDiabetesArtifacts(root);
  if (differ.length > 0) {
    console.error(`not reproducible, differs from a rebuild: ${differ.map((f) => relative(root, f)).join(', ')}`);
    process.exit(1);
  }
  console.log('diabetes-progression: committed model.onnx, model-card.json, ood.onnx and its evaluation rows match a rebuild');
} else {
  const built = buildDiabetesArtifacts(readFileSync(paths.csv, 'utf8'));
  mkdirSync(dirname(paths.onnx), { recursive: true });
  writeFileSync(paths.onnx, built.onnx);
  writeFileSync(paths.card, built.card);
  writeFileSync(paths.ood, built.oodOnnx);
  mkdirSync(dirname(paths.oodEvaluation), { recursive: true });
  writeFileSync(paths.oodEvaluation, built.oodEvaluation);
  console.log(`wrote ${[paths.onnx, paths.card, paths.ood, paths.oodEvaluation].map((f) => relative(root, f)).join(', ')}`);
  console.log(JSON.stringify(built.metrics));
}
