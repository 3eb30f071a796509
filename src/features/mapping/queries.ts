import { lookbackStart as windowStart } from '../../core/time.js';
import { sourcePlugin, type ReadType } from '../sources/index.js';
import type { Coding, FeatureFields } from './fields.js';
import type { Mapping } from './schema.js';

/**
 * Questions asked of a mapping, each answered here once: its model input columns and the column
 * keys of a feature, the codes to search for, the lookback, and which resources it needs fetched.
 */

/** The columns a feature's value fills: `<id>=<category>` per one-hot category, else `<id>`. */
export function valueColumns(f: Pick<FeatureFields, 'id' | 'oneHot'>): string[] {
  return f.oneHot ? f.oneHot.map((c) => `${f.id}=${c}`) : [f.id];
}

/** The missing-indicator column of a feature (`<id>__missing`), when it has one. */
export function indicatorColumn(f: Pick<FeatureFields, 'id' | 'missing'>): string | undefined {
  return f.missing?.indicator ? `${f.id}__missing` : undefined;
}

/** A feature's input columns: its value columns, then its indicator (none when it is not an input). */
export function featureColumns(f: Pick<FeatureFields, 'id' | 'oneHot' | 'missing' | 'input'>): string[] {
  if (f.input === false) return [];
  const indicator = indicatorColumn(f);
  return indicator ? [...valueColumns(f), indicator] : valueColumns(f);
}

/** Expanded input column ids, in model order: input features in file order, each with `featureColumns`. */
export function inputColumns(mapping: Pick<Mapping, 'features'>): string[] {
  return mapping.features.flatMap(featureColumns);
}

/**
 * Every code the mapping's sources reading `type` search for (feature and panel codes), unique, in
 * mapping order; undefined when one of them cannot narrow the search by code (every resource of the type).
 */
function searchCodes(mapping: Mapping, type: ReadType): Coding[] | undefined {
  const seen = new Set<string>();
  const out: Coding[] = [];
  for (const f of mapping.features) {
    const plugin = sourcePlugin(f.source.kind);
    if (plugin.reads !== type || !plugin.searchCodes) continue;
    const codes = plugin.searchCodes(f.source) as Coding[] | undefined;
    if (!codes) return undefined;
    for (const c of codes) {
      const key = `${c.system}|${c.code}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({ system: c.system, code: c.code, ...(c.category ? { category: { system: c.category.system, code: c.category.code } } : {}) });
    }
  }
  return out;
}

/** The earliest instant any feature of the mapping looks at for this as-of (the fetch lower bound). */
export function lookbackStart(mapping: Mapping, asOf: Date): Date | undefined {
  let best: Date | undefined;
  for (const f of mapping.features) {
    if (!f.lookback) continue;
    const s = windowStart(f.lookback, asOf);
    if (!best || s < best) best = s;
  }
  return best;
}

/** The clinical resource types a mapping's sources read (Patient is always fetched). */
export type ClinicalType = Exclude<ReadType, 'Patient'>;

/** What to fetch per resource type for one mapping at one as-of: the codes to search (if any) and since when. */
export type ResourceNeeds = Partial<Record<ClinicalType, { codes?: Coding[]; since?: Date }>>;

/**
 * Which resources a mapping needs fetched, from its sources' declarations: a type is searched when a
 * source reads it; Observations only for the codes the sources name (never "all observations"). The
 * lower bound is the mapping's earliest lookback start. Conditions carry codes (absent: every Condition
 * of the patients, when a code cannot be searched) and no lower bound: their state at as-of is read from
 * onset, abatement and status, not from a date window.
 */
export function resourceNeeds(mapping: Mapping, asOf: Date): ResourceNeeds {
  const needs: ResourceNeeds = {};
  const since = lookbackStart(mapping, asOf);
  for (const type of readTypes(mapping)) {
    if (type === 'Observation') needs[type] = { codes: searchCodes(mapping, type) ?? [], since };
    else if (type === 'Condition') needs[type] = { codes: searchCodes(mapping, type) };
    else needs[type] = { since };
  }
  return needs;
}

/** Which clinical resource types the mapping reads (its features' sources). */
export function readTypes(mapping: Mapping): Set<ClinicalType> {
  const out = new Set<ClinicalType>();
  for (const f of mapping.features) {
    const type = sourcePlugin(f.source.kind).reads;
    if (type && type !== 'Patient') out.add(type);
  }
  return out;
}
