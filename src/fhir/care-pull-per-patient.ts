import type { Resource } from 'fhir/r4.js';
import { silentLogger, type Logger } from '../core/log.js';
import { assembleCare, careSearches, type CareReader } from './care-pull.js';
import type { FhirClient, SearchParams } from './client.js';
import { forEachPatient } from './pull-per-patient.js';
import { keepFirst, settleAll, tokenList } from './pull.js';
import { searchRefusal } from './refusal.js';

/**
 * The care read of the per-patient strategy, for FHIR APIs that refuse a search over several patients:
 * the care searches of care-pull.ts (CarePlans; active ServiceRequests, Procedures and results with the
 * activities' codes), each with exactly one `patient=` per request, the same parameters and paging
 * otherwise, `patientConcurrency` patients at a time; the first failure fails the read. Records are
 * assembled as the batched read assembles them, so the same data gives the same records.
 *
 * Categories: the results searched are those of the activities about to be proposed (an HbA1c result
 * for "HbA1c every 3 months", and whatever else carries an activity's code), and what category a server
 * files them under is not known: a mapping states categories for the codes a model reads, not for
 * activity codes. So results are searched by code alone, as the batched read searches them. A server
 * that refuses an Observation search without a category is then asked again within the standard
 * observation categories (`category=` the HL7 observation-category codes, OR-ed, with any category the
 * run's mapping states), and for the rest of the run asked that way at once: a result filed under no
 * category, or under another system's, is then not found and does not count toward an omission.
 */

export const OBSERVATION_CATEGORY_SYSTEM = 'http://terminology.hl7.org/CodeSystem/observation-category';
/** The codes of the FHIR R4 observation-category value set. */
export const OBSERVATION_CATEGORIES = ['social-history', 'vital-signs', 'imaging', 'laboratory', 'procedure', 'survey', 'exam', 'therapy', 'activity'] as const;

export interface PerPatientCareOptions {
  /** Patients read at the same time. Default 4. */
  patientConcurrency?: number;
  /** `_count` per page. Default 1000. */
  pageSize?: number;
  /** Categories the run's mapping files Observation codes under: searched too when the server requires a category. */
  categories?: { system: string; code: string }[];
  logger?: Logger;
}

/** A reader for one run: it remembers for the run that the server requires a category on Observation searches. */
export function perPatientCareReader(client: FhirClient, asOf: Date, options: PerPatientCareOptions = {}): CareReader {
  const concurrency = options.patientConcurrency ?? 4;
  const pageSize = options.pageSize ?? 1000;
  const logger = (options.logger ?? silentLogger).child({ component: 'fhir-care-pull' });
  const categories = new Map<string, { system: string; code: string }>(OBSERVATION_CATEGORIES.map((code) => [`${OBSERVATION_CATEGORY_SYSTEM}|${code}`, { system: OBSERVATION_CATEGORY_SYSTEM, code }]));
  for (const c of options.categories ?? []) categories.set(`${c.system}|${c.code}`, c);
  const categoryParam = tokenList([...categories.values()]);
  let categoryRequired = false;

  return async (spec) => {
    const searches = careSearches(spec, asOf, pageSize);
    const carePlanPatients = new Set(spec.carePlanPatients);
    const activityPatients = new Set(spec.activityPatients);
    const fetched = new Map<string, Map<string, Resource>>();
    let requests = 0;
    const collect = async (resourceType: string, params: SearchParams) => {
      for await (const page of client.search(resourceType, params)) {
        requests += 1;
        keepFirst(fetched, resourceType, page.resources);
      }
    };
    const results = async (params: SearchParams) => {
      if (!categoryRequired) {
        try {
          return await collect('Observation', params);
        } catch (err) {
          if (!searchRefusal(err)?.categoryRequired) throw err;
          if (!categoryRequired) logger.warn({ categories: categories.size }, 'the FHIR server requires a category on Observation searches: results are searched within the observation categories from now on');
          categoryRequired = true;
        }
      }
      await collect('Observation', { ...params, category: categoryParam });
    };
    const readOne = async (id: string) => {
      const mine = [...(carePlanPatients.has(id) ? searches.carePlans : []), ...(activityPatients.has(id) ? searches.activities : [])];
      // allSettled (settleAll), not all: a failed search must not leave its siblings running after the read has failed.
      await settleAll(mine.map((s) => (s.resourceType === 'Observation' ? results({ patient: id, ...s.fixed }) : collect(s.resourceType, { patient: id, ...s.fixed }))));
    };
    await forEachPatient([...new Set([...spec.carePlanPatients, ...spec.activityPatients])], concurrency, readOne);
    return { byPatient: assembleCare(spec, fetched), requests };
  };
}
