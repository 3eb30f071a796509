import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { AdapterError } from '../../core/errors.js';
import { inputColumns } from './queries.js';
import type { Mapping } from './schema.js';
import { validateMapping } from './validate.js';

/**
 * Reading mapping files: `parseMapping` / `loadMapping(s)` throw one AdapterError('mapping-invalid')
 * listing every problem as `<file>: <path>: <message>`; `validateMappingsDir` reports per file.
 */

function mappingProblems(text: string): { mapping?: Mapping; problems: string[] } {
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (e) {
    const msg = e instanceof YAMLParseError ? `YAML: ${e.message.split('\n')[0]}` : `YAML: ${(e as Error).message}`;
    return { problems: [`(root): ${msg}`] };
  }
  return validateMapping(raw);
}

/** Parses and checks one mapping; throws AdapterError('mapping-invalid') listing every problem. */
export function parseMapping(text: string, file: string): Mapping {
  const { mapping, problems } = mappingProblems(text);
  if (!mapping) throw invalid(problems.map((p) => `${file}: ${p}`));
  return mapping;
}

function invalid(lines: string[]): AdapterError {
  return new AdapterError('mapping-invalid', `invalid mapping:\n  ${lines.join('\n  ')}`, { details: { problems: lines } });
}

export function loadMapping(file: string): Mapping {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new AdapterError('mapping-invalid', `${file}: cannot read mapping (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { cause: e });
  }
  return parseMapping(text, file);
}

export interface MappingFileResult {
  file: string;
  ok: boolean;
  id?: string;
  version?: string;
  model?: string;
  columns?: string[];
  errors: string[];
}

function mappingFiles(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new AdapterError(code === 'ENOENT' ? 'not-found' : 'mapping-invalid', `${dir}: cannot read mapping directory (${code ?? 'error'})`, { cause: e });
  }
  return names
    .filter((n) => /\.ya?ml$/.test(n))
    .map((n) => path.join(dir, n))
    .filter((p) => statSync(p).isFile())
    .sort();
}

/**
 * Checks every `*.yaml` in `dir` (not sub-folders) and reports per file, with mapping ids unique
 * across files. A directory without mapping files is refused (AdapterError 'not-found').
 */
export function validateMappingsDir(dir: string): MappingFileResult[] {
  const files: MappingFileResult[] = [];
  const byId = new Map<string, string>();
  const names = mappingFiles(dir);
  if (names.length === 0) throw new AdapterError('not-found', `${dir}: no mapping files (*.yaml) in this directory`);
  for (const file of names) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      files.push({ file, ok: false, errors: [`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? 'error'})`] });
      continue;
    }
    const { mapping, problems } = mappingProblems(text);
    const errors = problems.map((p) => `${file}: ${p}`);
    if (mapping) {
      const other = byId.get(mapping.id);
      if (other) errors.push(`${file}: id: mapping id "${mapping.id}" is also used by ${other}`);
      else byId.set(mapping.id, file);
    }
    files.push({
      file,
      ok: errors.length === 0,
      ...(mapping ? { id: mapping.id, version: mapping.version, model: mapping.model, columns: inputColumns(mapping) } : {}),
      errors,
    });
  }
  return files;
}
