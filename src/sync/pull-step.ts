import type { Logger } from '../core/log.js';
import type { FhirClient } from '../fhir/client.js';
import { pullBatch, type PullResult, type PullSpec } from '../fhir/pull.js';
import { searchStrategy, type PullStrategy, type PullStrategyFactory } from '../fhir/strategy.js';
import { searchableCodes } from '../clinical/codes.js';
import { resourceNeeds, type Coding } from '../features/index.js';
import { intendedUseConditionCodes } from '../models/index.js';
import type { SyncModel } from './models.js';

/**
 * The orchestrator's pull step: one pull specification covering every model of a run (one search per
 * resource type per batch, the union of the mappings' codes, from the earliest lookback start), and the
 * pull of one batch of patients with it. `sync` and `fhir-ml features` both pull through here.
 * Conditions are pulled when a mapping reads them or a model's intended use names conditions: by code,
 * or every Condition of the patients when some code cannot be searched (ICD-10 prefixes).
 */
export function pullSpecFor(models: SyncModel[], asOf: Date): PullSpec {
  const codes = new Map<string, Coding>();
  let observationSince: Date | undefined;
  let observations = false;
  let reports: PullSpec['reports'];
  let imaging: PullSpec['imaging'];
  let conditions: { codes: Map<string, Coding> | undefined } | undefined;
  const addConditionCodes = (list: Coding[] | undefined) => {
    conditions ??= { codes: new Map() };
    if (!list) conditions.codes = undefined;
    else if (conditions.codes) for (const c of list) conditions.codes.set(`${c.system}|${c.code}`, c);
  };
  const earlier = (a: Date | undefined, b: Date | undefined) => (a && b ? (a < b ? a : b) : undefined);
  for (const { mapping, runner, valueSets } of models) {
    const gateCodes = intendedUseConditionCodes(runner.card, valueSets);
    if (gateCodes.length) addConditionCodes(searchableCodes(gateCodes));
    const needs = resourceNeeds(mapping, asOf);
    if (needs.Condition) addConditionCodes(needs.Condition.codes);
    if (needs.Observation) {
      for (const c of needs.Observation.codes ?? []) codes.set(`${c.system}|${c.code}`, c);
      observationSince = observations ? earlier(observationSince, needs.Observation.since) : needs.Observation.since;
      observations = true;
    }
    if (needs.DiagnosticReport) reports = { since: reports ? earlier(reports.since, needs.DiagnosticReport.since) : needs.DiagnosticReport.since };
    if (needs.ImagingStudy) imaging = { since: imaging ? earlier(imaging.since, needs.ImagingStudy.since) : needs.ImagingStudy.since };
  }
  const conditionSpec = conditions && (conditions.codes ? { codes: [...conditions.codes.values()] } : {});
  return { observationCodes: [...codes.values()], observationSince, reports, imaging, ...(conditionSpec ? { conditions: conditionSpec } : {}) };
}

/**
 * The run's pull strategy (src/fhir/strategy.ts: search, per-patient, bulk or auto) over the models'
 * pull specification; the search strategy unless another is given.
 */
export function pullStrategyFor(models: SyncModel[], asOf: Date, client: FhirClient, factory: PullStrategyFactory = searchStrategy(), logger?: Logger): Promise<PullStrategy> {
  return factory({ client, spec: pullSpecFor(models, asOf), asOf, logger });
}

/** The pull step of a run: pulls one batch of patients with everything the models' mappings need, never after `asOf`. */
export function pullStep(models: SyncModel[], asOf: Date, logger?: Logger): (client: FhirClient, patientIds: string[]) => Promise<PullResult> {
  const spec = pullSpecFor(models, asOf);
  return (client, patientIds) => pullBatch(client, patientIds, spec, asOf, { logger });
}
