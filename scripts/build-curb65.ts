/**
 * Builds models/curb65/{model.onnx,model-card.json}.
 *   node --import tsx scripts/build-curb65.ts           # write
 *   node --import tsx scripts/build-curb65.ts --check   # exit 1 when the committed files differ
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import { PACKAGE_ROOT } from '../src/core/paths.js';
import { buildCurb65Artifacts, checkCurb65Artifacts, curb65Paths } from './lib/curb65.js';

const root = PACKAGE_ROOT;
const paths = curb65Paths(root);

if (process.argv.includes('--check')) {
  const differ = checkCurb65Artifacts(root);
  if (differ.length > 0) {
    console.error(`not reproducible, differs from a rebuild: ${differ.map((f) => relative(root, f)).join(', ')}`);
    process.exit(1);
  }
  console.log('curb65: committed model.onnx, model-card.json, ood.onnx and its evaluation rows match a rebuild');
} else {
  const built = buildCurb65Artifacts();
  mkdirSync(dirname(paths.onnx), { recursive: true });
  writeFileSync(paths.onnx, built.onnx);
  writeFileSync(paths.card, built.card);
  writeFileSync(paths.ood, built.oodOnnx);
  mkdirSync(dirname(paths.oodEvaluation), { recursive: true });
  writeFileSync(paths.oodEvaluation, built.oodEvaluation);
  console.log(`wrote ${[paths.onnx, paths.card, paths.ood, paths.oodEvaluation].map((f) => relative(root, f)).join(', ')}`);
}
