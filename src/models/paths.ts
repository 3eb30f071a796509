import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package root: the nearest ancestor of this file holding our package.json. Works from `src/`
 * (tsx, ts-jest) and from `dist/` alike, whatever the layout of the compiled output.
 */
export function packageRoot(from: string = fileURLToPath(import.meta.url)): string {
  let dir = dirname(from);
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'fhir-ml-adapter') return dir;
      } catch {
        // not ours / unreadable: keep walking
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`package root of fhir-ml-adapter not found above ${from}`);
    dir = parent;
  }
}

/** Default model registry: `<package root>/models`, one folder per model id. */
export const MODELS_DIR: string = join(packageRoot(), 'models');
