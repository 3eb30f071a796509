import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';

/**
 * Reads a YAML file (the config file, the sources file). When it cannot be read or parsed, the problem
 * names the file's position or the system error code, never the parser's message: that message quotes
 * the offending line, which may hold a secret.
 */
export function readYamlFile(file: string): { data: unknown; problem?: undefined } | { data?: undefined; problem: string } {
  try {
    return { data: parseYaml(readFileSync(file, 'utf8')) };
  } catch (err) {
    const pos = (err as { linePos?: { line: number; col: number }[] }).linePos?.[0];
    return { problem: pos ? `YAML syntax error at line ${pos.line}, column ${pos.col}` : ((err as NodeJS.ErrnoException).code ?? 'unreadable') };
  }
}
