import type { CarePlan, Observation, Procedure, Resource, ServiceRequest } from 'fhir/r4.js';
import { byId, dateRange, patientIdOf, searchByPatients, tokenList, type Coding, type PatientSearch } from './pull.js';
import type { FhirClient } from './client.js';

/**
 * The care a batch's patients already have, pulled for CarePlan proposals after they are scored: one
 * search per resource type per chunk of patients (never one per patient), and only what the proposals
 * need:
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

export async function pullCareContext(client: FhirClient, spec: CarePullSpec, asOf: Date, pageSize = 1000): Promise<CarePullResult> {
  const count = String(pageSize);
  const byPatient = new Map<string, CareRecord>();
  const recordOf = (id: string): CareRecord => {
    let r = byPatient.get(id);
    if (!r) byPatient.set(id, (r = { carePlans: [], serviceRequests: [], procedures: [], observations: [] }));
    return r;
  };
  let requests = 0;
  const run = async (patients: string[], searches: PatientSearch[]) => {
    if (patients.length === 0 || searches.length === 0) return new Map<string, Map<string, Resource>>();
    const out = await searchByPatients(client, patients, searches);
    requests += out.requests;
    return out.fetched;
  };
  const activitySearches: PatientSearch[] = [];
  if (spec.activityCodes.length) {
    const code = tokenList(spec.activityCodes);
    activitySearches.push({ resourceType: 'ServiceRequest', fixed: { status: 'active', code, _count: count } });
    activitySearches.push({ resourceType: 'Procedure', fixed: { code, _count: count } });
    if (spec.resultsSince) activitySearches.push({ resourceType: 'Observation', fixed: { code, date: dateRange(spec.resultsSince, `le${asOf.toISOString()}`), _count: count } });
  }
  const [plans, activities] = await Promise.all([
    run(spec.carePlanPatients, [{ resourceType: 'CarePlan', fixed: { _count: count } }]),
    run(spec.activityPatients, activitySearches),
  ]);
  const wanted = new Set([...spec.carePlanPatients, ...spec.activityPatients]);
  const place = <T extends Resource & { subject?: { reference?: string } }>(resources: Map<string, Resource> | undefined, list: (r: CareRecord) => T[]) => {
    for (const resource of (resources?.values() ?? []) as Iterable<T>) {
      const id = patientIdOf(resource.subject);
      if (id !== undefined && wanted.has(id)) list(recordOf(id)).push(resource);
    }
  };
  place<CarePlan>(plans.get('CarePlan'), (r) => r.carePlans);
  place<ServiceRequest>(activities.get('ServiceRequest'), (r) => r.serviceRequests);
  place<Procedure>(activities.get('Procedure'), (r) => r.procedures);
  place<Observation>(activities.get('Observation'), (r) => r.observations);
  for (const r of byPatient.values()) {
    r.carePlans.sort(byId);
    r.serviceRequests.sort(byId);
    r.procedures.sort(byId);
    r.observations.sort(byId);
  }
  return { byPatient, requests };
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
