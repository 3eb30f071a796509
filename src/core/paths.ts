import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package root: the nearest ancestor of `from` holding our package.json, so paths work the same from
 * `src/` (tsx, ts-jest) and from the compiled `dist/`, whatever the layout of the compiled output.
 */
export function findPackageRoot(from: string = fileURLToPath(import.meta.url)): string {
  let dir = path.dirname(from);
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'fhir-ml-adapter') return dir;
      } catch {
        // not ours or unreadable: keep walking
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`package root of fhir-ml-adapter not found above ${from}`);
    dir = parent;
  }
}

export const PACKAGE_ROOT = findPackageRoot();

export function packagePath(...segments: string[]): string {
  return path.join(PACKAGE_ROOT, ...segments);
}
