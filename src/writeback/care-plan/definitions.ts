import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ActivityDefinition, PlanDefinition, PlanDefinitionAction } from 'fhir/r4.js';
import fhirpath from 'fhirpath';
import { AdapterError } from '../../core/errors.js';
import { packagePath } from '../../core/paths.js';
import { SATISFIED_WITHIN_EXTENSION_URL } from '../extensions.js';

/**
 * CarePlan proposal definitions: PlanDefinition + ActivityDefinition resources kept as JSON under
 * mappings/careplans/<model id>/, in the shape of the HL7 CPG IG (computable PlanDefinition with
 * applicability conditions in FHIRPath over the assessment context, actions pointing at
 * ActivityDefinitions by definitionCanonical). Checked at load, every problem at once: conditions must
 * be text/fhirpath and compile, canonicals must resolve, activities must be coded in SNOMED CT or LOINC.
 */

export const CAREPLANS_DIR: string = packagePath('mappings', 'careplans');
export const SNOMED = 'http://snomed.info/sct';
export const LOINC = 'http://loinc.org';
const ACTIVITY_CODE_SYSTEMS = [SNOMED, LOINC];
const DURATION_UNITS = ['s', 'min', 'h', 'd', 'wk', 'mo', 'a'];

export interface CarePlanDefinitions {
  modelId: string;
  planDefinitions: PlanDefinition[];
  /** By url and by url|version. */
  activityDefinitions: Map<string, ActivityDefinition>;
}

/** `url|version` of a definition resource. */
export function canonicalOf(r: { url?: string; version?: string }): string {
  return r.version ? `${r.url}|${r.version}` : r.url!;
}

/** The ActivityDefinition a canonical (`url` or `url|version`) names, or undefined. */
export function resolveActivity(defs: ReadonlyMap<string, ActivityDefinition>, canonical: string): ActivityDefinition | undefined {
  return defs.get(canonical);
}

/** Every action of a PlanDefinition, nested ones included, depth first. */
export function flattenActions(actions: PlanDefinitionAction[] | undefined): PlanDefinitionAction[] {
  return (actions ?? []).flatMap((a) => [a, ...flattenActions(a.action)]);
}

/** Problems of a set of definitions (empty: usable). Pure. */
export function definitionProblems(plans: { file: string; resource: PlanDefinition }[], activities: { file: string; resource: ActivityDefinition }[]): string[] {
  const problems: string[] = [];
  const byCanonical = new Map<string, ActivityDefinition>();
  for (const { file, resource: ad } of activities) {
    const where = `${file} (ActivityDefinition ${ad.id ?? '?'})`;
    if (!ad.url || !ad.version) problems.push(`${where}: url and version are required`);
    if (!ad.kind) problems.push(`${where}: kind is required`);
    if (!ad.code?.coding?.some((c) => ACTIVITY_CODE_SYSTEMS.includes(c.system ?? '') && c.code))
      problems.push(`${where}: code needs a SNOMED CT or LOINC coding`);
    const within = ad.extension?.find((e) => e.url === SATISFIED_WITHIN_EXTENSION_URL)?.valueDuration;
    if (ad.extension?.some((e) => e.url === SATISFIED_WITHIN_EXTENSION_URL) && !(within && typeof within.value === 'number' && within.value > 0 && DURATION_UNITS.includes(within.code ?? '')))
      problems.push(`${where}: ${SATISFIED_WITHIN_EXTENSION_URL} needs a positive valueDuration with a UCUM code (${DURATION_UNITS.join(', ')})`);
    const repeat = ad.timingTiming?.repeat;
    if (repeat && (repeat.period === undefined || !DURATION_UNITS.includes(repeat.periodUnit ?? '')))
      problems.push(`${where}: timingTiming.repeat needs period and periodUnit`);
    if (ad.url) {
      if (byCanonical.has(canonicalOf(ad))) problems.push(`${where}: ${canonicalOf(ad)} is defined twice`);
      byCanonical.set(ad.url, ad);
      byCanonical.set(canonicalOf(ad), ad);
    }
  }
  for (const { file, resource: pd } of plans) {
    const where = `${file} (PlanDefinition ${pd.id ?? '?'})`;
    if (!pd.url || !pd.version) problems.push(`${where}: url and version are required`);
    const actions = flattenActions(pd.action);
    if (actions.length === 0) problems.push(`${where}: no action`);
    const ids = new Set<string>();
    for (const action of actions) {
      const at = `${where}: action ${action.id ?? action.title ?? '?'}`;
      if (!action.id) problems.push(`${at}: id is required (it names the action in results)`);
      else if (ids.has(action.id)) problems.push(`${at}: duplicate action id`);
      else ids.add(action.id);
      for (const c of action.condition ?? []) {
        if (c.kind !== 'applicability') problems.push(`${at}: condition kind ${c.kind} is not supported (applicability only)`);
        if (c.expression?.language !== 'text/fhirpath') problems.push(`${at}: condition language must be text/fhirpath`);
        else if (!c.expression.expression) problems.push(`${at}: condition has no expression`);
        else
          try {
            fhirpath.compile(c.expression.expression);
          } catch (err) {
            problems.push(`${at}: condition does not compile: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
          }
      }
      if (action.definitionCanonical && !byCanonical.has(action.definitionCanonical))
        problems.push(`${at}: definitionCanonical ${action.definitionCanonical} is not an ActivityDefinition of this folder`);
      if (!action.definitionCanonical && !action.action?.length) problems.push(`${at}: needs a definitionCanonical or nested actions`);
    }
  }
  return problems;
}

/**
 * Loads mappings/careplans/<modelId>/*.json (undefined when the model has no folder: it proposes no
 * CarePlans). Throws `mapping-invalid` listing every problem.
 */
export function loadCarePlanDefinitions(modelId: string, dir: string = CAREPLANS_DIR): CarePlanDefinitions | undefined {
  const folder = join(dir, modelId);
  if (!existsSync(folder)) return undefined;
  const plans: { file: string; resource: PlanDefinition }[] = [];
  const activities: { file: string; resource: ActivityDefinition }[] = [];
  const problems: string[] = [];
  for (const f of readdirSync(folder).filter((x) => x.endsWith('.json')).sort()) {
    const file = join(folder, f);
    let r: PlanDefinition | ActivityDefinition | { resourceType?: string };
    try {
      r = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      problems.push(`${file}: not JSON (${err instanceof Error ? err.message : String(err)})`);
      continue;
    }
    if (r.resourceType === 'PlanDefinition') plans.push({ file, resource: r as PlanDefinition });
    else if (r.resourceType === 'ActivityDefinition') activities.push({ file, resource: r as ActivityDefinition });
    else problems.push(`${file}: expected a PlanDefinition or ActivityDefinition, got ${r.resourceType ?? 'no resourceType'}`);
  }
  if (plans.length === 0) problems.push(`${folder}: no PlanDefinition`);
  problems.push(...definitionProblems(plans, activities));
  if (problems.length) throw new AdapterError('mapping-invalid', `care plan definitions of ${modelId}: ${problems.join('; ')}`);
  const activityDefinitions = new Map<string, ActivityDefinition>();
  for (const { resource } of activities) {
    activityDefinitions.set(resource.url!, resource);
    activityDefinitions.set(canonicalOf(resource), resource);
  }
  return { modelId, planDefinitions: plans.map((p) => p.resource), activityDefinitions };
}
