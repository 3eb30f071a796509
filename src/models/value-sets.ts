import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ValueSet, ValueSetComposeInclude, ValueSetExpansionContains } from 'fhir/r4.js';
import { AdapterError } from '../core/errors.js';
import { packagePath } from '../core/paths.js';
import { LEXICAL_HIERARCHY_SYSTEMS, type ConditionCode } from '../clinical/codes.js';

/**
 * ValueSets kept in the repository (mappings/valuesets/*.json), resolved to code lists without a
 * terminology server. Supported: `expansion.contains`, or `compose.include` with `concept` lists and, for
 * code systems with a lexical hierarchy (ICD-10, ICD-10-CM), one `filter` concept `is-a` per include (the
 * code and every code under it); `compose.exclude` with `concept` lists. Anything else (SNOMED CT is-a, imported value
 * sets) is refused at load with the file and the element named.
 */

export const VALUE_SETS_DIR: string = packagePath('mappings', 'valuesets');

/** Value sets by canonical URL (also `url|version`). */
export type ValueSetIndex = ReadonlyMap<string, ValueSet>;

export function loadValueSets(dir: string = VALUE_SETS_DIR): Map<string, ValueSet> {
  const out = new Map<string, ValueSet>();
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  } catch (err) {
    throw new AdapterError('mapping-invalid', `value set folder ${dir} cannot be read`, { cause: err });
  }
  for (const f of files) {
    const file = join(dir, f);
    let vs: ValueSet;
    try {
      vs = JSON.parse(readFileSync(file, 'utf8')) as ValueSet;
    } catch (err) {
      throw new AdapterError('mapping-invalid', `${file}: not JSON (${err instanceof Error ? err.message : String(err)})`, { cause: err });
    }
    if (vs?.resourceType !== 'ValueSet' || typeof vs.url !== 'string')
      throw new AdapterError('mapping-invalid', `${file}: not a ValueSet with a url`);
    if (out.has(vs.url)) throw new AdapterError('mapping-invalid', `${file}: value set ${vs.url} is defined twice`);
    valueSetCodes(vs, file); // refuse what cannot be expanded, at load
    out.set(vs.url, vs);
    if (vs.version) out.set(`${vs.url}|${vs.version}`, vs);
  }
  return out;
}

/** The codes of a value set (see the module comment for what is supported). */
export function valueSetCodes(vs: ValueSet, where: string = vs.url ?? 'ValueSet'): ConditionCode[] {
  if (vs.expansion?.contains?.length) {
    const flat: ConditionCode[] = [];
    const walk = (items: ValueSetExpansionContains[]) => {
      for (const c of items) {
        if (c.system && c.code && !c.abstract) flat.push({ system: c.system, code: c.code, display: c.display });
        if (c.contains) walk(c.contains);
      }
    };
    walk(vs.expansion.contains);
    return flat;
  }
  const include = vs.compose?.include ?? [];
  if (include.length === 0) throw new AdapterError('mapping-invalid', `${where}: value set has neither expansion.contains nor compose.include`);
  const codes = include.flatMap((inc, i) => includeCodes(inc, `${where}: compose.include[${i}]`));
  const excluded = new Set(
    (vs.compose?.exclude ?? []).flatMap((exc, i) => includeCodes(exc, `${where}: compose.exclude[${i}]`)).map((c) => `${c.system}|${c.code}`),
  );
  return codes.filter((c) => !excluded.has(`${c.system}|${c.code}`));
}

function includeCodes(inc: ValueSetComposeInclude, where: string): ConditionCode[] {
  if (inc.valueSet?.length) throw new AdapterError('mapping-invalid', `${where}: imported value sets are not supported; list the codes`);
  if (!inc.system) throw new AdapterError('mapping-invalid', `${where}: system is required`);
  const system = inc.system;
  const out: ConditionCode[] = (inc.concept ?? []).map((c) => ({ system, code: c.code, display: c.display }));
  const filters = inc.filter ?? [];
  // Filters of one include are ANDed (FHIR R4 ValueSet.compose.include.filter): one per include keeps it a union.
  if (filters.length > 1 || (filters.length === 1 && out.length > 0))
    throw new AdapterError('mapping-invalid', `${where}: put each filter in its own include (filters of one include are ANDed, with each other and with concept)`);
  for (const [k, f] of filters.entries()) {
    if (f.property !== 'concept' || f.op !== 'is-a')
      throw new AdapterError('mapping-invalid', `${where}.filter[${k}]: only "concept is-a" filters are supported (got ${f.property} ${f.op})`);
    if (!(LEXICAL_HIERARCHY_SYSTEMS as readonly string[]).includes(system))
      throw new AdapterError(
        'mapping-invalid',
        `${where}.filter[${k}]: is-a on ${system} needs a terminology server; list the codes (supported: ${LEXICAL_HIERARCHY_SYSTEMS.join(', ')})`,
      );
    out.push({ system, code: f.value, descendants: true });
  }
  if (out.length === 0) throw new AdapterError('mapping-invalid', `${where}: no concept and no filter`);
  return out;
}

/** Whether a coding matches a code (one rule, src/clinical/codes.ts). */
export { codeMatches } from '../clinical/codes.js';
