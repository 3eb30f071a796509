import type { Binary, DiagnosticReport } from 'fhir/r4.js';
import type { z } from 'zod';
import type { ExclusionReason, PatientRecord } from '../../core/types.js';
import type { Eligible, ExclusionLog } from '../exclusions.js';
import type { Coding, Feature } from '../mapping/fields.js';

/**
 * The contract of a feature source plug-in (`sources/<kind>.ts`). A source kind declares its part of
 * the mapping format (`schema`), which resources it reads and which codes to search for, its own
 * validation rules, and how it turns a patient's eligible resources into one value. The engine,
 * the validator and the pull planner look plug-ins up by kind (`sources/index.ts`), so a new kind of
 * source is a new file plus one line in the registry.
 */

/** One feature's value before transforms. */
export interface FeatureResult {
  /** Pre-transform value in the feature's unit, null when missing. For one-hot: 1 when a code was found. */
  value: number | null;
  /** One-hot: the chosen code. */
  code?: string | null;
  /** Resources whose values make up `value`. */
  refs: Set<string>;
}

/** What the report-finding source needs from a clinical NLP (src/nlp's `analyzeReport` satisfies it). */
export interface ReportAnalysis {
  /**
   * Findings with their ConText dimensions (negation, temporality, experiencer) and the summary assertion
   * (src/nlp's `analyzeReport` gives them). The dimensions are optional so an analyzer that only knows the
   * summary assertion still serves features that select on it alone.
   */
  findings: { concept: { system: string; code: string; display?: string }; assertion: string; negation?: string; temporality?: string; experiencer?: string }[];
  exclusions: { reason: ExclusionReason; detail?: string }[];
  /** Parts of a report that were dropped while the rest was used (bad attachment, removed script ...). */
  warnings?: { reason: ExclusionReason; detail?: string }[];
}
export type ReportAnalyzer = (report: DiagnosticReport, binaries: Map<string, Binary>) => ReportAnalysis;

/**
 * What the mapper is given besides the mapping, the record and the as-of: the services some sources
 * need. Passed in by the caller (the orchestrator wires src/nlp's analyzer), never a module global.
 */
export interface MapContext {
  /** Needed by mappings with report-finding features. */
  reportAnalyzer?: ReportAnalyzer;
}

/** Resource types a source may read from a PatientRecord. */
export type ReadType = 'Patient' | 'Observation' | 'DiagnosticReport' | 'ImagingStudy' | 'Condition';

/** Everything a source sees while one patient is mapped. */
export interface SourceState<R> {
  record: PatientRecord;
  asOf: Date;
  log: ExclusionLog;
  /** The record's resources of the type the source reads that passed the resource-level checks, by reference. */
  resources: Eligible<R>[];
  /** Values of the features computed so far (a source's `dependsOn` come first). */
  results: ReadonlyMap<string, FeatureResult>;
  context: MapContext;
}

/** Where a source's `validate` reports problems and looks at the rest of the mapping. */
export interface ValidationScope {
  /** Adds a problem at a path below the feature (e.g. ['source', 'codes', 0, 'unit']). */
  add(path: PropertyKey[], message: string): void;
  /** The feature with this id, when it exists and passed its schema (null: exists but invalid). */
  feature(id: string): Feature<{ kind: string }> | null | undefined;
  /** Marks a feature as used by this one (a non-input feature must be used by something). */
  use(id: string): void;
}

export interface SourcePlugin<Schema extends z.ZodType<{ kind: string }>, Compiled, R = never> {
  readonly kind: z.output<Schema>['kind'];
  /** The `source:` object of a feature of this kind. */
  readonly schema: Schema;
  /** The resource type the source reads (none: computed from other features). */
  readonly reads?: ReadType;
  /** Whether a feature of this kind needs a lookback window. */
  readonly lookback: 'required' | 'unused';
  /** Whether the feature's `aggregate` applies (else the source defines its own value). */
  readonly aggregate: boolean;
  /** Whether `molarMass` applies (mass <-> substance conversion of values). */
  readonly molarMass: boolean;
  readonly oneHot: 'required' | 'allowed' | 'unused';
  /**
   * Codes to search for, OR-ed into the search of `reads` (Observation and Condition sources). A
   * Condition source returns undefined when its codes cannot be searched (ICD-10 prefixes): every
   * Condition of the patients is then fetched.
   */
  searchCodes?(source: z.output<Schema>): Coding[] | undefined;
  /** Features this one is computed from, evaluated before it. */
  dependsOn?(source: z.output<Schema>): string[];
  /** True when the value is never missing (0 when nothing is found), so no missing policy is needed. */
  neverMissing(feature: Feature<z.output<Schema>>): boolean;
  /** Checks a schema cannot express, for features of this kind. */
  validate?(feature: Feature<z.output<Schema>>, scope: ValidationScope): void;
  /** Prepared once per mapping (FHIRPath, code sets). */
  compile(feature: Feature<z.output<Schema>>): Compiled;
  /** Whether a fetched resource of type `reads` is considered by this feature (counts as fetched). */
  considers?(compiled: Compiled, resource: R): boolean;
  value(feature: Feature<z.output<Schema>>, compiled: Compiled, state: SourceState<R>): FeatureResult;
}

/** Identity helper that keeps a plug-in's types precise. */
export function defineSource<Schema extends z.ZodType<{ kind: string }>, Compiled, R = never>(
  plugin: SourcePlugin<Schema, Compiled, R>,
): SourcePlugin<Schema, Compiled, R> {
  return plugin;
}

/** Shared window check: before the feature's lookback, the resource is `outside-window` for it. */
export function beforeWindow(featureId: string, lookback: string, ref: string, time: number, start: number, log: ExclusionLog): boolean {
  if (time >= start) return false;
  log.add(ref, 'outside-window', featureId, `before the ${lookback} lookback`);
  return true;
}
