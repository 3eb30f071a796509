import type { Bundle, Condition, DiagnosticReport, FhirResource, ImagingStudy, Observation, Patient, Resource } from 'fhir/r4.js';
import { AdapterError, toAdapterError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { PatientRecord } from '../../core/types.js';
import type { CdsClientConfig } from '../../config/cds-hooks.js';
import { FhirClient, type SearchParams } from '../../fhir/client.js';
import { patientIdOf, tokenList, type PullResult, type PullSpec, type UnattributedResource } from '../../fhir/pull.js';

/**
 * What a `patient-view` service needs of the patient, as CDS Hooks prefetch templates derived from the
 * model's mapping (the same pull specification a sync uses: the Patient, the Observations by the
 * mapping's codes, Conditions, DiagnosticReports, ImagingStudies), and the patient's record gathered from
 * the request: prefetched data where the CDS Client gave it, the rest fetched from the request's
 * `fhirServer` with the request's own `fhirAuthorization` token (never our credentials), as the same
 * queries. A key the client could not satisfy (absent, an OperationOutcome, or a paged Bundle) is fetched;
 * when it cannot be, the service answers 412 Precondition Failed, as the spec says.
 *
 * No date bounds in the templates: lookback windows and the as-of are applied by the mapping, as in a sync.
 */

export type PrefetchKey = 'patient' | 'observations' | 'conditions' | 'reports' | 'imaging';

export interface PrefetchQuery {
  key: PrefetchKey;
  resourceType: 'Patient' | 'Observation' | 'Condition' | 'DiagnosticReport' | 'ImagingStudy';
  /** The template as discovery declares it. */
  template: string;
  /** The same query's parameters besides the patient (searches only). */
  params?: SearchParams;
}

const PATIENT_TOKEN = '{{context.patientId}}';

export function prefetchQueries(spec: PullSpec): PrefetchQuery[] {
  const queries: PrefetchQuery[] = [{ key: 'patient', resourceType: 'Patient', template: `Patient/${PATIENT_TOKEN}` }];
  const search = (key: PrefetchKey, resourceType: PrefetchQuery['resourceType'], params: SearchParams) => {
    const query = Object.entries(params)
      .map(([k, v]) => `&${k}=${encodeURIComponent(String(v))}`)
      .join('');
    queries.push({ key, resourceType, params, template: `${resourceType}?patient=${PATIENT_TOKEN}${query}` });
  };
  if (spec.observationCodes.length) search('observations', 'Observation', { code: tokenList(spec.observationCodes) });
  if (spec.conditions) search('conditions', 'Condition', spec.conditions.codes?.length ? { code: tokenList(spec.conditions.codes) } : {});
  if (spec.reports) {
    const params: SearchParams = {};
    if (spec.reports.codes?.length) params.code = tokenList(spec.reports.codes);
    if (spec.reports.categories?.length) params.category = tokenList(spec.reports.categories);
    search('reports', 'DiagnosticReport', params);
  }
  if (spec.imaging) search('imaging', 'ImagingStudy', {});
  return queries;
}

export function prefetchTemplates(queries: PrefetchQuery[]): Record<string, string> {
  return Object.fromEntries(queries.map((q) => [q.key, q.template]));
}

/** The service cannot get the data it needs: 412 Precondition Failed. */
export class PreconditionFailed extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PreconditionFailed';
  }
}

export interface GatherInput {
  patientId: string;
  prefetch?: Record<string, { resourceType: string } | null>;
  /** A client for the request's fhirServer with its token (`requestFhirClient`), when the request gave both. */
  fhir?: FhirClient;
}

export interface Gathered {
  pull: PullResult;
  /** Keys answered from prefetch, and keys fetched. */
  prefetched: PrefetchKey[];
  fetched: PrefetchKey[];
}

/** The patient's record from prefetch and, for what is missing, from the request's FHIR server. */
export async function gatherRecord(queries: PrefetchQuery[], input: GatherInput): Promise<Gathered> {
  const { patientId } = input;
  const results = new Map<PrefetchKey, Resource[] | null>();
  const missing: PrefetchQuery[] = [];
  const prefetched: PrefetchKey[] = [];
  for (const q of queries) {
    const given = input.prefetch && Object.hasOwn(input.prefetch, q.key) ? input.prefetch[q.key] : undefined;
    const usable = usablePrefetch(q, given);
    if (usable === undefined) missing.push(q);
    else {
      results.set(q.key, usable);
      prefetched.push(q.key);
    }
  }

  let requests = 0;
  if (missing.length) {
    if (!input.fhir) {
      throw new PreconditionFailed(
        `prefetch ${missing.map((q) => q.key).join(', ')} missing or incomplete and no fhirServer with fhirAuthorization to fetch it from`,
      );
    }
    const client = input.fhir;
    try {
      await Promise.all(
        missing.map(async (q) => {
          if (q.resourceType === 'Patient') {
            try {
              results.set(q.key, [await client.read<Patient>('Patient', patientId)]);
            } catch (err) {
              if (AdapterError.is(err, 'fhir-not-found')) results.set(q.key, null);
              else throw err;
            }
            requests++;
            return;
          }
          const found: Resource[] = [];
          for await (const page of client.search(q.resourceType, { patient: patientId, ...q.params, _count: '1000' })) {
            requests++;
            found.push(...page.resources);
          }
          results.set(q.key, found);
        }),
      );
    } catch (err) {
      const e = toAdapterError(err, 'internal', 'CDS Hooks fetch');
      throw new PreconditionFailed(`the data could not be fetched from the fhirServer with the request's token (${e.code}${e.status ? `, HTTP ${e.status}` : ''})`);
    }
  }
  return { pull: toPull(patientId, queries, results, requests), prefetched, fetched: missing.map((q) => q.key) };
}

/**
 * A prefetch value as this query's result, or undefined when it must be fetched: absent, an
 * OperationOutcome (the client failed), or a Bundle with more pages. null is "nothing there".
 */
function usablePrefetch(q: PrefetchQuery, value: { resourceType: string } | null | undefined): Resource[] | null | undefined {
  if (value === undefined) return undefined;
  if (value === null) return q.resourceType === 'Patient' ? null : [];
  if (value.resourceType === 'OperationOutcome') return undefined;
  if (value.resourceType === 'Bundle') {
    const bundle = value as Bundle;
    if (bundle.link?.some((l) => l.relation === 'next')) return undefined;
    return (bundle.entry ?? []).filter((e) => e.search?.mode !== 'outcome' && e.resource).map((e) => e.resource as Resource);
  }
  return [value as Resource];
}

/**
 * A client for the request's `fhirServer` with the request's own token (never the adapter's
 * credentials), or undefined when the request gave no token. The server must be one configured for
 * the CDS client, or, when none are, https (http only on this machine).
 */
export function requestFhirClient(input: { fhirServer?: string; accessToken?: string; client: CdsClientConfig; timeoutMs: number; logger: Logger }): FhirClient | undefined {
  if (!input.fhirServer || !input.accessToken) return undefined;
  const server = input.fhirServer.replace(/\/+$/, '');
  const url = new URL(server);
  const allowed = input.client.fhirServers
    ? input.client.fhirServers.includes(server)
    : url.protocol === 'https:' || ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
  if (!allowed) {
    throw new PreconditionFailed(
      input.client.fhirServers ? 'the request\'s fhirServer is not one configured for this CDS client' : 'the request\'s fhirServer must use https',
    );
  }
  return new FhirClient({ baseUrl: server, auth: { type: 'bearer', token: input.accessToken }, timeoutMs: input.timeoutMs, maxRetries: 1, concurrency: 4, logger: input.logger });
}

/** The gathered resources as the pull's result for one patient: attributed by subject, sorted, with counts. */
function toPull(patientId: string, queries: PrefetchQuery[], results: Map<PrefetchKey, Resource[] | null>, requests: number): PullResult {
  const unattributed: UnattributedResource[] = [];
  const fetched: PullResult['fetched'] = { Patient: 0, Observation: 0, DiagnosticReport: 0, ImagingStudy: 0, Condition: 0, Binary: 0 };
  const patients = (results.get('patient') ?? []).filter((r): r is Patient => r.resourceType === 'Patient');
  const patient = patients.find((p) => p.id === patientId);
  for (const p of patients) {
    fetched.Patient += 1;
    if (p !== patient) unattributed.push({ reference: `Patient/${p.id ?? ''}`, reason: 'no-subject', detail: 'outside-batch' });
  }
  const record: PatientRecord | undefined = patient ? { patient, observations: [], diagnosticReports: [], imagingStudies: [], conditions: [] } : undefined;
  const place = <T extends Resource & { subject?: { reference?: string } }>(key: PrefetchKey, type: string, list: (r: PatientRecord) => T[]) => {
    if (!queries.some((q) => q.key === key)) return;
    const seen = new Set<string>();
    for (const r of (results.get(key) ?? []) as T[]) {
      if (r.resourceType !== type || (r.id && seen.has(r.id))) continue;
      if (r.id) seen.add(r.id);
      fetched[type as keyof PullResult['fetched']] += 1;
      const owner = patientIdOf(r.subject as never);
      if (record && owner === patientId) list(record).push(r);
      else unattributed.push({ reference: `${type}/${r.id ?? ''}`, reason: 'no-subject', detail: owner === undefined ? 'missing-subject' : 'outside-batch' });
    }
    if (record) list(record).sort((a, b) => ((a.id ?? '') < (b.id ?? '') ? -1 : (a.id ?? '') > (b.id ?? '') ? 1 : 0));
  };
  place<Observation>('observations', 'Observation', (r) => r.observations);
  place<Condition>('conditions', 'Condition', (r) => r.conditions);
  place<DiagnosticReport>('reports', 'DiagnosticReport', (r) => r.diagnosticReports);
  place<ImagingStudy>('imaging', 'ImagingStudy', (r) => r.imagingStudies);
  return {
    records: record ? new Map([[patientId, record]]) : new Map(),
    missingPatients: record ? [] : [patientId],
    unattributed,
    missingBinaries: [],
    fetched,
    requests,
  };
}

export type { FhirResource };
