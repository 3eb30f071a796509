import { execFileSync } from 'node:child_process';
import { checkCurb65Artifacts } from '../../scripts/lib/curb65.js';
import { checkDiabetesArtifacts } from '../../scripts/lib/diabetes.js';
import { PACKAGE_ROOT } from '../../src/core/paths.js';

/** The committed models are what scripts/ build: byte for byte, so anyone can rebuild and check them. */
const root = PACKAGE_ROOT;

describe('committed model artefacts are reproducible', () => {
  it('train-diabetes rebuilds model.onnx and model-card.json byte for byte', () => {
    expect(checkDiabetesArtifacts(root)).toEqual([]);
  });

  it('build-curb65 rebuilds model.onnx and model-card.json byte for byte', () => {
    expect(checkCurb65Artifacts(root)).toEqual([]);
  });

  it('npm run train -- --check exits 0', () => {
    const out = execFileSync(process.execPath, ['--import', 'tsx', 'scripts/train-diabetes.ts', '--check'], { cwd: root, encoding: 'utf8' });
    expect(out).toMatch(/match a rebuild/);
  });
});
