import { performance } from 'node:perf_hooks';
import { AdapterError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { FhirClient, SearchParams } from './client.js';
import { assembleBatch, keepFirst, newFetched, plannedSearches, validatePull, type PullResult, type PullSpec, type PulledType } from './pull.js';

/**
 * The per-patient pull, for FHIR APIs that refuse a search over several patients (many EHR vendors'):
 * every search names exactly one patient (`patient=<id>`), Observations once per category the mapping
 * files its codes under (`category=`), with the same parameters as the batched search otherwise (codes,
 * dates up to as-of, `_count`, all pages, retries through the client). Patients are pulled a few at a
 * time (`patientConcurrency`), each with its searches in parallel within the client's own bound; the
 * batch is then assembled exactly as the batched pull assembles it, so records, exclusions and
 * unattributed accounting are the same.
 */

export interface PerPatientOptions {
  /** Patients pulled at the same time. Default 4. */
  patientConcurrency?: number;
  /** `_count` per page. Default 1000. */
  pageSize?: number;
  logger?: Logger;
}

export async function pullPerPatient(client: FhirClient, patientIds: string[], spec: PullSpec, asOf: Date, options: PerPatientOptions = {}): Promise<PullResult> {
  const started = performance.now();
  const pageSize = options.pageSize ?? 1000;
  const concurrency = options.patientConcurrency ?? 4;
  const logger = (options.logger ?? silentLogger).child({ component: 'fhir-pull' });
  validatePull(patientIds, spec, asOf, 1, pageSize);

  const ids = [...new Set(patientIds)];
  const searches = [{ resourceType: 'Patient' as PulledType, fixed: { _count: '1' } as SearchParams }, ...plannedSearches(spec, asOf, pageSize, { byCategory: true })];
  const fetched = newFetched();
  let requests = 0;

  const pullOne = async (id: string) => {
    await Promise.all(
      searches.map(async (search) => {
        const params: SearchParams = search.resourceType === 'Patient' ? { _id: id, ...search.fixed } : { patient: id, ...search.fixed };
        for await (const page of client.search(search.resourceType, params)) {
          requests += 1;
          keepFirst(fetched, search.resourceType, page.resources);
        }
      }),
    );
  };

  await forEachPatient(ids, concurrency, pullOne);
  return assembleBatch(client, ids, fetched, requests, { logger, started, strategy: 'per-patient' });
}

/**
 * Runs `one` for every patient, at most `concurrency` at a time: a small pool over the patients. The
 * first failure stops taking new patients and is thrown once those in flight are done.
 */
export async function forEachPatient(ids: readonly string[], concurrency: number, one: (id: string) => Promise<void>): Promise<void> {
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new AdapterError('input-invalid', 'patientConcurrency must be a positive integer');
  let next = 0;
  let failure: unknown;
  const worker = async () => {
    while (failure === undefined && next < ids.length) {
      const id = ids[next++];
      try {
        await one(id);
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, ids.length) }, worker));
  if (failure !== undefined) throw failure;
}
