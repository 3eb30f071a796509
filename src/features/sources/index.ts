import type { z } from 'zod';
import { conditionSource } from './condition.js';
import { derivedSource } from './derived.js';
import { imagingSource } from './imaging.js';
import { observationSource } from './observation.js';
import { patientAgeSource } from './patient-age.js';
import { patientSexSource } from './patient-sex.js';
import type { SourcePlugin } from './plugin.js';
import { reportFindingSource } from './report-finding.js';

/**
 * The registry of feature sources, looked up by `source.kind`. To add a kind of source, write
 * `sources/<kind>.ts` (see `plugin.ts`) and list it here: the mapping schema, its validation, the
 * pull planner and the engine all follow from the plug-in.
 */
export const SOURCE_PLUGINS = [patientAgeSource, patientSexSource, observationSource, derivedSource, reportFindingSource, imagingSource, conditionSource] as const;

/** The `source:` schemas, in registry order (the discriminated union of the mapping schema). */
type SchemasOf<T extends readonly unknown[]> = { -readonly [K in keyof T]: T[K] extends { schema: infer S } ? S : never };
export const SOURCE_SCHEMAS = SOURCE_PLUGINS.map((p) => p.schema) as unknown as SchemasOf<typeof SOURCE_PLUGINS>;

export type FeatureSource = z.output<(typeof SOURCE_PLUGINS)[number]['schema']>;

// The engine and the validator call plug-ins generically, by kind; each plug-in is typed precisely where it is written.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnySourcePlugin = SourcePlugin<any, any, any>;

const byKind = new Map<string, AnySourcePlugin>(SOURCE_PLUGINS.map((p) => [p.kind, p as AnySourcePlugin]));

export function sourcePlugin(kind: string): AnySourcePlugin {
  const plugin = byKind.get(kind);
  if (!plugin) throw new Error(`no feature source of kind "${kind}"`);
  return plugin;
}

/** The kinds of source that use a feature field (`aggregate`, `molarMass`, `oneHot`), for messages. */
export function kindsUsing(field: 'aggregate' | 'molarMass' | 'oneHot'): string {
  const kinds = SOURCE_PLUGINS.filter((p) => (field === 'oneHot' ? p.oneHot !== 'unused' : p[field])).map((p) => p.kind);
  return kinds.join(' and ');
}

export type { FeatureResult, MapContext, ReadType, ReportAnalysis, ReportAnalyzer, SourcePlugin } from './plugin.js';
