import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package root, found by walking up from this file to package.json, so paths work the same from
 * `src/` (tsx, ts-jest) and from the compiled `dist/`.
 */
function findPackageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'mappings'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('fhir-ml-adapter: package root not found');
    dir = parent;
  }
}

export const PACKAGE_ROOT = findPackageRoot();

export function packagePath(...segments: string[]): string {
  return path.join(PACKAGE_ROOT, ...segments);
}

/** Shared public datasets beside the repository (present in CI, absent on a user's clone). */
export function sharedDatasetsDir(): string | undefined {
  const dir = process.env.FHIR_ML_SHARED_DATASETS ?? path.resolve(PACKAGE_ROOT, '..', 'shared', 'datasets');
  return existsSync(dir) ? dir : undefined;
}
