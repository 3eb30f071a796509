// Test helper: checks an extension instance against its StructureDefinition's differential
// (slice names, cardinalities, value types, closed slicing), as our validator does not read profiles.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ElementDefinition, Extension, StructureDefinition } from 'fhir/r4.js';
import { EXTENSION_DEFINITIONS_DIR } from '../extensions.js';

export function extensionDefinition(id: string): StructureDefinition {
  return JSON.parse(readFileSync(join(EXTENSION_DEFINITIONS_DIR, `${id}.json`), 'utf8')) as StructureDefinition;
}

const cap = (s: string) => s[0].toUpperCase() + s.slice(1);

/** Problems of `ext` against the definition (empty: conforms). */
export function extensionProblems(ext: Extension, sd: StructureDefinition): string[] {
  const els = sd.differential!.element;
  const problems: string[] = [];
  if (ext.url !== sd.url) problems.push(`url ${ext.url} is not ${sd.url}`);
  check(ext, 'Extension', els, problems);
  return problems;
}

function check(ext: Extension, id: string, els: ElementDefinition[], problems: string[]): void {
  const valueEl = els.find((e) => e.id === `${id}.value[x]`);
  const valueKeys = Object.keys(ext).filter((k) => k.startsWith('value'));
  if (valueEl?.max === '0' && valueKeys.length) problems.push(`${id}: has ${valueKeys.join(', ')} but allows no value`);
  if (valueEl?.type) {
    const allowed = valueEl.type.map((t) => `value${cap(t.code)}`);
    if ((valueEl.min ?? 0) > 0 && valueKeys.length === 0) problems.push(`${id}: value required (${allowed.join(' | ')})`);
    for (const k of valueKeys) if (!allowed.includes(k)) problems.push(`${id}: ${k} not allowed (${allowed.join(' | ')})`);
  }
  const slices = els.filter((e) => e.sliceName && e.id === `${id}.extension:${e.sliceName}`);
  const subs = ext.extension ?? [];
  if (slices.length === 0 && subs.length) problems.push(`${id}: allows no sub-extensions`);
  for (const s of slices) {
    const n = subs.filter((x) => x.url === s.sliceName).length;
    if (n < (s.min ?? 0)) problems.push(`${id}: ${s.sliceName} needs at least ${s.min}`);
    if (s.max !== '*' && n > Number(s.max)) problems.push(`${id}: ${s.sliceName} at most ${s.max}`);
  }
  for (const x of subs) {
    const slice = slices.find((s) => s.sliceName === x.url);
    if (!slice) problems.push(`${id}: sub-extension ${x.url} is not defined (slicing is closed)`);
    else check(x, slice.id!, els, problems);
  }
}
