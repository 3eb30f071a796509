import { readFileSync } from 'node:fs';

/** Returns the paths whose on-disk bytes differ from `expected` (missing files count as different). */
export function differingFiles(expected: [path: string, bytes: Uint8Array | string][]): string[] {
  return expected
    .filter(([path, bytes]) => {
      try {
        return !readFileSync(path).equals(typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : Buffer.from(bytes));
      } catch {
        return true;
      }
    })
    .map(([path]) => path);
}
