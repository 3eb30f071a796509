import { findPackageRoot, packagePath } from '../core/paths.js';

/** The package root (see core/paths). */
export function packageRoot(from?: string): string {
  return findPackageRoot(from);
}

/** Default model registry: `<package root>/models`, one folder per model id. */
export const MODELS_DIR: string = packagePath('models');
