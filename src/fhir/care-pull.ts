import type { CarePlan, Observation, Procedure, Resource, ServiceRequest } from 'fhir/r4.js';
import { byId, dateRange, patientIdOf, searchByPatients, tokenList, type Coding, type PatientSearch } from './pull.js';
import type { FhirClient } from './client.js';

/**
 * The care a batch's patients already have, pulled for CarePlan proposals after they are scored, only
 * what the proposals need (the searches and the records are decided here; how many patients go into one
 * request is the run's pull strategy's: `pullCareContext` below for search, care-pull-per-patient.ts):
 * - CarePlans of every patient who may get a proposal (their existing care, and this adapter's earlier
 *   proposals, which a new one may supersede);
 * - active ServiceRequests and Procedures with the codes of the activities about to be proposed, and
 *   final results (Observations) with those codes since the longest "satisfied within" window, only for
 *   the patients with something to propose.
 * Resources whose subject is not one of the patients are dropped here (they cannot be anyone's care).
 */

export interface CareRecord {
  carePlans: CarePlan[];
  serviceRequests: ServiceRequest[];
  procedures: Procedure[];
  observations: Observation[];
}

export interface CarePullSpec {
  /** Patients whose CarePlans are read. */
  carePlanPatients: string[];
  /** Patients whose requests, procedures and results with `activityCodes` are read. */
  activityPatients: string[];
  activityCodes: Coding[];
  /** Results (Observations) are read from here to as-of; absent: none read (no activity is satisfied by a result). */
  resultsSince?: Date;
}

export interface CarePullResult {
  byPatient: Map<string, CareRecord>;
  requests: number;
}

/** Reads the care of patients about to get proposals; how is the run's pull strategy's business (strategy.ts). */
export type CareReader = (spec: CarePullSpec) => Promise<CarePullResult>;

/** The care searches of a spec, by whose patients they are for; the one place their parameters are decided. */
export interface CareSearches {
  /** For `carePlanPatients`. */
  carePlans: PatientSearch[];
  /** For `activityPatients`: ServiceRequests, Procedures, and results when `resultsSince` is given. */
  activities: PatientSearch[];
}

export function careSearches(spec: CarePullSpec, asOf: Date, pageSize = 1000): CareSearches {
  const count = String(pageSize);
  const activities: PatientSearch[] = [];
  if (spec.activityCodes.length) {
    const code = tokenList(spec.activityCodes);
    activities.push({ resourceType: 'ServiceRequest', fixed: { status: 'active', code, _count: count } });
    activities.push({ resourceType: 'Procedure', fixed: { code, _count: count } });
    if (spec.resultsSince) activities.push({ resourceType: 'Observation', fixed: { code, date: dateRange(spec.resultsSince, `le${asOf.toISOString()}`), _count: count } });
  }
  return { carePlans: spec.carePlanPatients.length ? [{ resourceType: 'CarePlan', fixed: { _count: count } }] : [], activities: spec.activityPatients.length ? activities : [] };
}

/**
 * Places what the care searches found (resources by type, each once) in the records of the spec's
 * patients by subject, each list sorted by id, so the same data gives the same records whichever way it
 * was read. Resources of any other subject are dropped: they cannot be these patients' care.
 */
export function assembleCare(spec: CarePullSpec, fetched: ReadonlyMap<string, ReadonlyMap<string, Resource>>): Map<string, CareRecord> {
  const byPatient = new Map<string, CareRecord>();
  const recordOf = (id: string): CareRecord => {
    let r = byPatient.get(id);
    if (!r) byPatient.set(id, (r = { carePlans: [], serviceRequests: [], procedures: [], observations: [] }));
    return r;
  };
  const wanted = new Set([...spec.carePlanPatients, ...spec.activityPatients]);
  const place = <T extends Resource & { subject?: { reference?: string } }>(resourceType: string, list: (r: CareRecord) => T[]) => {
    for (const resource of (fetched.get(resourceType)?.values() ?? []) as Iterable<T>) {
      const id = patientIdOf(resource.subject);
      if (id !== undefined && wanted.has(id)) list(recordOf(id)).push(resource);
    }
  };
  place<CarePlan>('CarePlan', (r) => r.carePlans);
  place<ServiceRequest>('ServiceRequest', (r) => r.serviceRequests);
  place<Procedure>('Procedure', (r) => r.procedures);
  place<Observation>('Observation', (r) => r.observations);
  for (const r of byPatient.values()) {
    r.carePlans.sort(byId);
    r.serviceRequests.sort(byId);
    r.procedures.sort(byId);
    r.observations.sort(byId);
  }
  return byPatient;
}

/** The care read of the search strategy: many patients per request (`searchByPatients`). */
export async function pullCareContext(client: FhirClient, spec: CarePullSpec, asOf: Date, pageSize = 1000): Promise<CarePullResult> {
  const searches = careSearches(spec, asOf, pageSize);
  const [plans, activities] = await Promise.all([
    searchByPatients(client, spec.carePlanPatients, searches.carePlans),
    searchByPatients(client, spec.activityPatients, searches.activities),
  ]);
  const byPatient = assembleCare(spec, new Map([...plans.fetched, ...activities.fetched]));
  return { byPatient, requests: plans.requests + activities.requests };
}

/** CarePlan statuses that record a clinician's decision on a proposal (a draft is undecided). */
export const DECIDED_CAREPLAN_STATUSES = ['active', 'on-hold', 'revoked', 'completed', 'entered-in-error', 'unknown'] as const;

/**
 * This adapter's earlier CarePlan proposals on the server that a clinician has decided on (every patient,
 * all pages): the evidence for ordering new proposals by acceptance. One search per run, by the adapter's
 * identifier system (`identifier=<system>|`) and the decided statuses; streamed page by page so the
 * caller can reduce it to counts without holding every plan.
 */
export async function* decidedProposals(client: FhirClient, identifierSystem: string, pageSize = 1000): AsyncGenerator<{ carePlans: CarePlan[] }> {
  const params = { identifier: `${identifierSystem.replace(/[\\,$|]/g, (ch) => `\\${ch}`)}|`, status: DECIDED_CAREPLAN_STATUSES.join(','), _count: String(pageSize) };
  for await (const page of client.search<CarePlan>('CarePlan', params)) yield { carePlans: page.resources };
}
