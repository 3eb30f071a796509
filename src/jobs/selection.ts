import type { Group } from 'fhir/r4.js';
import type { Clock } from '../core/clock.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { SourceConfig } from '../config/sources.js';
import type { PatientScoreStore } from '../db/patient-scores.js';
import type { RunSelection } from '../db/runs.js';
import type { WatermarkStore } from '../db/watermarks.js';
import { findChangedPatients } from '../fhir/changes.js';
import type { FhirClient } from '../fhir/client.js';
import { listPatientIds, patientIdOf } from '../fhir/pull.js';
import { lookbackStart } from '../core/time.js';

/**
 * Which patients a run scores.
 *
 * - Full run (first run of a source and model, a model without a watermark, or `full` asked for): the
 *   whole population.
 * - Incremental run: patients with data changed since the oldest watermark of the run's models minus
 *   the source's overlap window (`_lastUpdated`, plus deletions where the server has history), plus
 *   patients whose last evaluation is older than the re-score interval (data ages out of lookback
 *   windows), plus, for a Group or list population, members never evaluated (new members). Limited to
 *   the population.
 *
 * `changesUntil` is taken before anything is read: it becomes the watermark when the run succeeds, so a
 * change made while the run reads is found again by the next run rather than lost.
 */
export interface Selection {
  mode: 'full' | 'incremental';
  patientIds: string[];
  changesSince?: Date;
  changesUntil: Date;
  selection: RunSelection;
}

export interface SelectionDeps {
  client: FhirClient;
  watermarks: WatermarkStore;
  scores: PatientScoreStore;
  clock: Clock;
  logger?: Logger;
}

export async function selectPatients(deps: SelectionDeps, source: SourceConfig, modelIds: string[], options: { full?: boolean } = {}): Promise<Selection> {
  const logger = (deps.logger ?? silentLogger).child({ component: 'selection', source: source.id });
  const changesUntil = deps.clock.now();
  const marks = await deps.watermarks.get(source.id, modelIds);
  const incremental = !options.full && modelIds.every((m) => marks.has(m));

  if (!incremental) {
    const ids = await populationOf(deps.client, source);
    logger.info({ patients: ids.length }, 'full run selected the population');
    return { mode: 'full', patientIds: ids, changesUntil, selection: { population: ids.length, total: ids.length } };
  }

  const oldest = new Date(Math.min(...modelIds.map((m) => marks.get(m)!.getTime())));
  const changesSince = lookbackStart(source.options.overlap, oldest);
  const scan = await findChangedPatients(deps.client, { since: changesSince, logger: deps.logger });
  const staleCutoff = lookbackStart(source.options.rescoreInterval, changesUntil);
  const stale = await deps.scores.staleBefore(source.id, modelIds, staleCutoff);

  const selected = new Set<string>([...scan.patientIds, ...stale]);
  let neverEvaluated = 0;
  let requests = scan.requests;
  if (source.population.type !== 'all') {
    const members = await populationOf(deps.client, source);
    if (source.population.type === 'group') requests++;
    const inPopulation = new Set(members);
    for (const id of [...selected]) if (!inPopulation.has(id)) selected.delete(id);
    neverEvaluated = await addNeverEvaluated(deps.scores, source.id, modelIds, members, selected);
  }
  const patientIds = [...selected].sort();
  const selection: RunSelection = {
    changed: scan.patientIds.length,
    stale: stale.length,
    deleted: scan.deletions.patientIds.length,
    deletions: scan.deletions.checked ? 'history' : `not checked: ${scan.deletions.reason}`,
    ...(neverEvaluated ? { newMembers: neverEvaluated } : {}),
    total: patientIds.length,
    requests,
  };
  logger.info({ ...selection, deletions: undefined }, 'incremental run selected patients');
  return { mode: 'incremental', patientIds, changesSince, changesUntil, selection };
}

/** The source's population: every Patient (streamed ids), a Group's active Patient members, or a list. */
export async function populationOf(client: FhirClient, source: SourceConfig): Promise<string[]> {
  const population = source.population;
  if (population.type === 'patients') return [...new Set(population.ids)].sort();
  if (population.type === 'group') {
    const group = await client.read<Group>('Group', population.id);
    const ids = (group.member ?? []).filter((m) => !m.inactive).map((m) => patientIdOf(m.entity));
    return [...new Set(ids.filter((id): id is string => !!id))].sort();
  }
  // Offset paging over a changing population can repeat an id; ids only are kept (tens of bytes each).
  const ids = new Set<string>();
  for await (const page of listPatientIds(client, 1000)) for (const id of page) ids.add(id);
  return [...ids].sort();
}

/**
 * Adds to `selected` the members of a Group or list population that no model of the run has evaluated
 * (new members); returns how many were added. Reads the scores a thousand patients at a time.
 */
export async function addNeverEvaluated(scores: Pick<PatientScoreStore, 'get'>, sourceId: string, modelIds: string[], members: string[], selected: Set<string>): Promise<number> {
  let added = 0;
  for (const modelId of modelIds) {
    for (let i = 0; i < members.length; i += 1000) {
      const part = members.slice(i, i + 1000);
      const known = await scores.get(sourceId, modelId, part);
      for (const id of part) {
        if (!known.has(id) && !selected.has(id)) {
          selected.add(id);
          added++;
        }
      }
    }
  }
  return added;
}
