import { performance } from 'node:perf_hooks';
import type { Binary, Condition, DiagnosticReport, ImagingStudy, Observation, Patient, Reference, Resource } from 'fhir/r4.js';
import { AdapterError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { PatientRecord } from '../core/types.js';
import type { FhirClient, SearchParams } from './client.js';

/**
 * Batched pulling: one search per resource type per chunk of patients (all pages), never one request
 * per patient. Results are grouped per patient by `subject`; whatever cannot be attributed is returned,
 * not dropped, so counts reconcile: for each type, fetched = attributed + unattributed.
 */

export interface Coding {
  system: string;
  code: string;
  /**
   * Observation codes: the category the code is filed under (e.g. observation-category laboratory),
   * when the mapping states it. The per-patient strategy searches each category separately with
   * `category=`, as FHIR APIs that require a category ask.
   */
  category?: { system: string; code: string };
}

export interface PullSpec {
  /** OR-ed into one `code` parameter. Empty: no Observation search at all (never "all observations"). */
  observationCodes: Coding[];
  observationSince?: Date;
  /** Absent: no DiagnosticReport search. */
  reports?: { since?: Date; codes?: Coding[]; categories?: Coding[] };
  /** Absent: no ImagingStudy search. */
  imaging?: { since?: Date };
  /**
   * Absent: no Condition search. `codes` OR-ed into one `code` parameter; absent codes: every Condition
   * of the patients (when the codes wanted cannot be searched, e.g. ICD-10 prefixes). Never bounded by
   * date: a Condition's state at as-of depends on onset, abatement and recordedDate together
   * (src/clinical/condition-state.ts decides), and a search by date would drop undated ones.
   */
  conditions?: { codes?: Coding[] };
}

export interface PullOptions {
  /** Patients per search request. Default 50. */
  maxIdsPerRequest?: number;
  /** Budget for a search URL; chunks shrink below maxIdsPerRequest to stay under it. Default 6000. */
  maxUrlLength?: number;
  /** `_count` per page. Default 1000. */
  pageSize?: number;
  logger?: Logger;
}

export type UnattributedDetail = 'missing-subject' | 'outside-batch' | 'patient-not-found';

export interface UnattributedResource {
  /** Relative reference of the resource itself, e.g. `Observation/123`. */
  reference: string;
  reason: 'no-subject';
  detail: UnattributedDetail;
}

export type PulledType = 'Patient' | 'Observation' | 'DiagnosticReport' | 'ImagingStudy' | 'Condition' | 'Binary';
export const PULLED_TYPES: readonly PulledType[] = ['Patient', 'Observation', 'DiagnosticReport', 'ImagingStudy', 'Condition', 'Binary'];

/**
 * Result of one batch pull.
 * - `records`: one entry per requested patient the server returned, keyed by patient id; each list sorted
 *   by resource id so the same data always gives the same record whatever order the server paged in.
 * - `missingPatients`: requested ids the server did not return (deleted, merged, or not visible to us).
 * - `unattributed`: fetched resources not placed in any record, with why.
 * - `missingBinaries`: same-server `Binary/<id>` attachment references that could not be read (404, 403, ...): the report stage counts them as bad attachments.
 * - `fetched`: unique resources received per type (duplicates across pages counted once).
 *   For every type, fetched = placed in records + unattributed.
 * - `requests`: HTTP exchanges that returned a page or a Binary (retries not counted).
 */
export interface PullResult {
  records: Map<string, PatientRecord>;
  missingPatients: string[];
  unattributed: UnattributedResource[];
  missingBinaries: string[];
  fetched: Record<PulledType, number>;
  requests: number;
}

const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;
// `Patient/x`, `Patient/x/_history/2`, or any absolute URL ending in one of those.
const PATIENT_REFERENCE = /(?:^|\/)Patient\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/;

export async function pullBatch(
  client: FhirClient,
  patientIds: string[],
  spec: PullSpec,
  asOf: Date,
  options: PullOptions = {},
): Promise<PullResult> {
  const started = performance.now();
  const maxIds = options.maxIdsPerRequest ?? 50;
  const maxUrlLength = options.maxUrlLength ?? 6000;
  const pageSize = options.pageSize ?? 1000;
  const logger = (options.logger ?? silentLogger).child({ component: 'fhir-pull' });
  validatePull(patientIds, spec, asOf, maxIds, pageSize);

  const ids = [...new Set(patientIds)];
  // Each search type builds its fixed parameters; the patient list is added per chunk.
  const searches: PatientSearch[] = [{ resourceType: 'Patient', fixed: { _count: String(pageSize) }, by: '_id' }, ...plannedSearches(spec, asOf, pageSize)];
  const searched = await searchByPatients(client, ids, searches, { maxIdsPerRequest: maxIds, maxUrlLength });
  const fetched = newFetched();
  for (const type of PULLED_TYPES) {
    const found = searched.fetched.get(type);
    if (found) fetched.set(type, found);
  }
  return assembleBatch(client, ids, fetched, searched.requests, { logger, started });
}

/** One search of a pull besides the Patient's: its fixed parameters (the patients are added by the strategy). */
export interface PlannedSearch {
  resourceType: PulledType;
  fixed: SearchParams;
}

/**
 * The searches a PullSpec asks for, by type: the codes OR-ed into one `code`, dates from the lookback
 * start up to as-of, `_count`. The one place these parameters are decided: the search and per-patient
 * strategies send them, the bulk strategy sends them as `_typeFilter`. With `byCategory`, Observation
 * codes filed under a stated category get one search per category with `category=` (per-patient APIs
 * that require it); codes without a category stay in a search without one.
 */
export function plannedSearches(spec: PullSpec, asOf: Date, pageSize: number, options: { byCategory?: boolean } = {}): PlannedSearch[] {
  const asOfParam = `le${asOf.toISOString()}`;
  const count = String(pageSize);
  const out: PlannedSearch[] = [];
  if (spec.observationCodes.length > 0) {
    const groups = new Map<string, { category?: { system: string; code: string }; codes: Coding[] }>();
    for (const c of spec.observationCodes) {
      const key = options.byCategory && c.category ? `${c.category.system}|${c.category.code}` : '';
      const group = groups.get(key) ?? { ...(options.byCategory && c.category ? { category: c.category } : {}), codes: [] };
      group.codes.push(c);
      groups.set(key, group);
    }
    for (const g of groups.values()) {
      const fixed: SearchParams = { code: tokenList(g.codes), date: dateRange(spec.observationSince, asOfParam), _count: count };
      if (g.category) fixed.category = tokenList([g.category]);
      out.push({ resourceType: 'Observation', fixed });
    }
  }
  if (spec.reports) {
    const fixed: SearchParams = { date: dateRange(spec.reports.since, asOfParam), _count: count };
    if (spec.reports.codes?.length) fixed.code = tokenList(spec.reports.codes);
    if (spec.reports.categories?.length) fixed.category = tokenList(spec.reports.categories);
    out.push({ resourceType: 'DiagnosticReport', fixed });
  }
  if (spec.imaging) {
    out.push({ resourceType: 'ImagingStudy', fixed: { started: dateRange(spec.imaging.since, asOfParam), _count: count } });
  }
  if (spec.conditions) {
    const fixed: SearchParams = { _count: count };
    if (spec.conditions.codes?.length) fixed.code = tokenList(spec.conditions.codes);
    out.push({ resourceType: 'Condition', fixed });
  }
  return out;
}

/** Resources per type by id, as a pull collects them. */
export type Fetched = Map<PulledType, Map<string, Resource>>;

export function newFetched(): Fetched {
  const fetched: Fetched = new Map();
  for (const type of PULLED_TYPES) fetched.set(type, new Map());
  return fetched;
}

/** Adds resources of a type; paging over a changing result set can repeat a resource: the first copy is kept. */
export function keepFirst<T extends string>(fetched: Map<T, Map<string, Resource>>, resourceType: T, resources: Resource[]): void {
  let into = fetched.get(resourceType);
  if (!into) fetched.set(resourceType, (into = new Map()));
  for (const resource of resources) {
    const key = resource.id ?? `#${into.size}`;
    if (!into.has(key)) into.set(key, resource);
  }
}

/**
 * What every strategy does once it has the batch's resources: places each in its patient's record by
 * `subject` (each list sorted by id, so the same data gives the same record whatever order it came in),
 * reports whatever cannot be attributed (so fetched = attributed + unattributed per type), and reads the
 * Binaries report attachments point to on this server.
 */
export async function assembleBatch(
  client: FhirClient,
  patientIds: string[],
  fetched: Fetched,
  requestsSoFar: number,
  options: { logger?: Logger; started?: number; strategy?: string; unattributed?: UnattributedResource[] } = {},
): Promise<PullResult> {
  const logger = options.logger ?? silentLogger;
  const started = options.started ?? performance.now();
  const ids = [...new Set(patientIds)];
  const inBatch = new Set(ids);
  let requests = requestsSoFar;
  const records = new Map<string, PatientRecord>();
  const unattributed: UnattributedResource[] = [...(options.unattributed ?? [])];
  for (const patient of fetched.get('Patient')!.values() as Iterable<Patient>) {
    if (patient.id && inBatch.has(patient.id)) {
      records.set(patient.id, { patient, observations: [], diagnosticReports: [], imagingStudies: [], conditions: [] });
    } else {
      unattributed.push({ reference: `Patient/${patient.id ?? ''}`, reason: 'no-subject', detail: 'outside-batch' });
    }
  }
  const missingPatients = ids.filter((id) => !records.has(id));

  const place = <T extends Observation | DiagnosticReport | ImagingStudy | Condition>(
    resourceType: PulledType,
    list: (record: PatientRecord) => T[],
  ): void => {
    for (const resource of fetched.get(resourceType)!.values() as Iterable<T>) {
      const reference = `${resourceType}/${resource.id ?? ''}`;
      const patientId = patientIdOf(resource.subject);
      const record = patientId === undefined ? undefined : records.get(patientId);
      if (record) list(record).push(resource);
      else {
        const detail: UnattributedDetail =
          patientId === undefined ? 'missing-subject' : inBatch.has(patientId) ? 'patient-not-found' : 'outside-batch';
        unattributed.push({ reference, reason: 'no-subject', detail });
      }
    }
  };
  place<Observation>('Observation', (r) => r.observations);
  place<DiagnosticReport>('DiagnosticReport', (r) => r.diagnosticReports);
  place<ImagingStudy>('ImagingStudy', (r) => r.imagingStudies);
  place<Condition>('Condition', (r) => r.conditions);
  for (const record of records.values()) {
    record.observations.sort(byId);
    record.diagnosticReports.sort(byId);
    record.imagingStudies.sort(byId);
    record.conditions.sort(byId);
  }

  const missingBinaries = await pullBinaries(client, records, fetched.get('Binary')!, () => (requests += 1));

  const counts = Object.fromEntries([...fetched].map(([type, map]) => [type, map.size])) as Record<PulledType, number>;
  logger.info(
    {
      patients: ids.length,
      found: records.size,
      missingPatients: missingPatients.length,
      unattributed: unattributed.length,
      missingBinaries: missingBinaries.length,
      fetched: counts,
      requests,
      durationMs: Math.round(performance.now() - started),
      strategy: options.strategy ?? 'search',
    },
    'pulled batch',
  );
  return { records, missingPatients, unattributed, missingBinaries, fetched: counts, requests };
}

/** One search of a batched pull: its fixed parameters; the patients go into `subject` (default) or `_id`. */
export interface PatientSearch {
  resourceType: string;
  fixed: SearchParams;
  by?: 'subject' | '_id';
}

/**
 * Runs each search for every chunk of the patients (at most `maxIdsPerRequest` ids per request, URLs
 * within `maxUrlLength`), all pages, concurrently within the client's bound. Resources are kept per type
 * by id, the first copy of a resource repeated across pages. Shared by the batch pull and the care
 * context pull (`care-pull.ts`): one search per resource type per chunk of patients, never per patient.
 */
export async function searchByPatients(
  client: FhirClient,
  patientIds: string[],
  searches: PatientSearch[],
  options: { maxIdsPerRequest?: number; maxUrlLength?: number } = {},
): Promise<{ fetched: Map<string, Map<string, Resource>>; requests: number }> {
  const maxIds = options.maxIdsPerRequest ?? 50;
  const maxUrlLength = options.maxUrlLength ?? 6000;
  const ids = [...new Set(patientIds)];
  const fetched = new Map<string, Map<string, Resource>>();
  let requests = 0;
  const collect = async (resourceType: string, params: SearchParams): Promise<void> => {
    for await (const page of client.search(resourceType, params)) {
      requests += 1;
      keepFirst(fetched, resourceType, page.resources);
    }
  };
  const idKey = (search: PatientSearch) => (search.by === '_id' ? '_id' : 'subject');
  const idValue = (search: PatientSearch) => (search.by === '_id' ? (id: string) => id : (id: string) => `Patient/${id}`);
  const idParam = (search: PatientSearch, chunk: string[]): SearchParams => ({ [idKey(search)]: chunk.map(idValue(search)).join(',') });
  const tasks: Promise<void>[] = [];
  for (const search of searches) {
    if (!fetched.has(search.resourceType)) fetched.set(search.resourceType, new Map());
    if (ids.length === 0) continue;
    const urlLength = searchUrlLength(client.baseUrl, search.resourceType, search.fixed, idKey(search), idValue(search));
    for (const chunk of chunkIds(ids, maxIds, maxUrlLength, urlLength, search.resourceType)) {
      tasks.push(collect(search.resourceType, { ...idParam(search, chunk), ...search.fixed }));
    }
  }
  // The client's semaphore bounds what is actually in flight. allSettled, not all: a failed search must
  // not leave siblings running after the batch has already been reported failed.
  await settleAll(tasks);
  return { fetched, requests };
}

/**
 * Fetches the Binaries that reports' `presentedForm.url` point to on this server, one read each.
 * Reads, not one `Binary?_id=` search: many servers (HAPI and Medplum among them) do not offer search
 * on Binary, while read is universal. Concurrency is bounded by the client's semaphore. URLs on other
 * servers are never fetched (they would get our credentials); the report stage decides about them.
 */
async function pullBinaries(
  client: FhirClient,
  records: Map<string, PatientRecord>,
  fetchedBinaries: Map<string, Resource>,
  countRequest: () => void,
): Promise<string[]> {
  const owners = new Map<string, PatientRecord[]>();
  for (const record of records.values()) {
    for (const report of record.diagnosticReports) {
      for (const form of report.presentedForm ?? []) {
        if (!form.url || form.data) continue;
        const id = client.binaryIdOf(form.url);
        if (id === undefined) continue;
        const list = owners.get(id) ?? [];
        if (!list.includes(record)) list.push(record);
        owners.set(id, list);
      }
    }
  }
  const missing: string[] = [];
  const ids = [...owners.keys()].sort();
  const results = await Promise.allSettled(ids.map((id) => client.read<Binary>('Binary', id)));
  results.forEach((result, i) => {
    const id = ids[i];
    if (result.status === 'rejected') {
      // A Binary we may not read (403), that is gone (404/410) or otherwise refused is one report's
      // problem: the report stage counts the attachment as bad. Only transient errors fail the batch.
      if (AdapterError.is(result.reason) && !result.reason.transient) missing.push(`Binary/${id}`);
      return;
    }
    countRequest();
    fetchedBinaries.set(id, result.value);
    for (const record of owners.get(id)!) {
      record.binaries ??= new Map();
      record.binaries.set(`Binary/${id}`, result.value);
    }
  });
  const failure = results.find(
    (r): r is PromiseRejectedResult => r.status === 'rejected' && !(AdapterError.is(r.reason) && !r.reason.transient),
  );
  if (failure) throw failure.reason;
  return missing;
}

/**
 * Streams every Patient id on the server, one page at a time (`_elements=id`), so an `--all` sync never
 * holds the whole population in memory.
 */
export async function* listPatientIds(client: FhirClient, pageSize = 500): AsyncGenerator<string[], void, undefined> {
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 10_000) {
    throw new AdapterError('input-invalid', 'pageSize must be an integer between 1 and 10000');
  }
  for await (const page of client.search<Patient>('Patient', { _elements: 'id', _count: String(pageSize) })) {
    const ids = page.resources.map((p) => p.id).filter((id): id is string => typeof id === 'string' && FHIR_ID.test(id));
    if (ids.length > 0) yield ids;
  }
}

/** The patient id a subject points to, from `Patient/x` or an absolute URL ending in `/Patient/x`. */
export function patientIdOf(subject: Reference | undefined): string | undefined {
  const reference = subject?.reference;
  if (!reference) return undefined;
  return PATIENT_REFERENCE.exec(reference.split(/[?#]/)[0])?.[1];
}

/**
 * Splits ids into chunks of at most `maxIds` whose URL stays within `maxUrlLength`. Throws when even a
 * single id does not fit: the fixed parameters (e.g. a very long code list) are then the problem.
 */
export function chunkIds(
  ids: string[],
  maxIds: number,
  maxUrlLength: number,
  urlLength: (chunk: string[]) => number,
  resourceType = 'search',
): string[][] {
  const chunks: string[][] = [];
  let current: string[] = [];
  for (const id of ids) {
    const candidate = [...current, id];
    if (candidate.length <= maxIds && urlLength(candidate) <= maxUrlLength) {
      current = candidate;
      continue;
    }
    if (current.length === 0) {
      throw new AdapterError(
        'input-invalid',
        `${resourceType} search URL exceeds ${maxUrlLength} characters even for one patient; shorten the code list`,
      );
    }
    chunks.push(current);
    current = [id];
    if (urlLength(current) > maxUrlLength) {
      throw new AdapterError(
        'input-invalid',
        `${resourceType} search URL exceeds ${maxUrlLength} characters even for one patient; shorten the code list`,
      );
    }
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

export function validatePull(patientIds: string[], spec: PullSpec, asOf: Date, maxIds: number, pageSize: number): void {
  const problems: string[] = [];
  const bad = patientIds.filter((id) => typeof id !== 'string' || !FHIR_ID.test(id)).length;
  // Count only: the offending ids are patient identifiers.
  if (bad > 0) problems.push(`${bad} patient id(s) are not valid FHIR ids`);
  if (!(asOf instanceof Date) || Number.isNaN(asOf.getTime())) problems.push('asOf is not a valid date');
  if (!Number.isInteger(maxIds) || maxIds < 1) problems.push('maxIdsPerRequest must be a positive integer');
  if (!Number.isInteger(pageSize) || pageSize < 1) problems.push('pageSize must be a positive integer');
  const dates = [spec.observationSince, spec.reports?.since, spec.imaging?.since];
  if (dates.some((d) => d !== undefined && (!(d instanceof Date) || Number.isNaN(d.getTime())))) {
    problems.push('a since date is not a valid date');
  }
  const codings = [...spec.observationCodes, ...(spec.reports?.codes ?? []), ...(spec.reports?.categories ?? []), ...(spec.conditions?.codes ?? [])];
  if (codings.some((c) => !c?.system || !c?.code)) problems.push('every code needs a system and a code');
  if (problems.length > 0) throw new AdapterError('input-invalid', `Invalid pull request: ${problems.join('; ')}`);
}

/** `system|code` tokens OR-ed with commas, with FHIR search escaping of the separators. */
export function tokenList(codings: Coding[]): string {
  return codings.map((c) => `${escapeSearchValue(c.system)}|${escapeSearchValue(c.code)}`).join(',');
}

function escapeSearchValue(value: string): string {
  return value.replace(/[\\,$|]/g, (ch) => `\\${ch}`);
}

/** Repeated parameter = AND: `date=ge<since>&date=le<asOf>`. */
export function dateRange(since: Date | undefined, asOfParam: string): string | string[] {
  return since ? [`ge${since.toISOString()}`, asOfParam] : asOfParam;
}

/**
 * Measures `base/Type?query` for a search of the `fixed` parameters plus `idKey` = the chunk's
 * `idValue`s joined by commas, exactly as URLSearchParams encodes it, without building the query:
 * `chunkIds` measures a growing chunk once per id, and encoding the whole query each time was the
 * pull's largest CPU cost. Form encoding is per character, so the length is a sum of parts: the fixed
 * parameters (once), the key, each id's value (once per id) and the encoded commas between them.
 */
export function searchUrlLength(
  baseUrl: string,
  resourceType: string,
  fixed: SearchParams,
  idKey: string,
  idValue: (id: string) => string,
): (chunk: string[]) => number {
  const fixedLength = queryLength(fixed);
  const head = baseUrl.length + resourceType.length + 2 + fixedLength + (fixedLength > 0 ? 1 : 0) + encodedLength(idKey) + 1;
  const comma = encodedLength(',');
  const lengths = new Map<string, number>();
  return (chunk) => {
    let length = head + comma * Math.max(0, chunk.length - 1);
    for (const id of chunk) {
      let l = lengths.get(id);
      if (l === undefined) lengths.set(id, (l = encodedLength(idValue(id))));
      length += l;
    }
    return length;
  };
}

/** Length of `value` form-encoded as URLSearchParams encodes a parameter value. */
function encodedLength(value: string): number {
  return new URLSearchParams([['', value]]).toString().length - 1;
}

function queryLength(params: SearchParams): number {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const v of Array.isArray(value) ? value : [value]) query.append(key, v);
  }
  return query.toString().length;
}

export function byId(a: Resource, b: Resource): number {
  const x = a.id ?? '';
  const y = b.id ?? '';
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Waits for every task, then throws the first failure (in task order), so none is left running after a failure is reported. */
export async function settleAll(tasks: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(tasks);
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) throw failure.reason;
}

/**
 * How many Patients the server holds (`_summary=count`), for a progress bar; undefined when the server
 * does not say. Never fails a sync: any error gives undefined.
 */
export async function countPatients(client: FhirClient): Promise<number | undefined> {
  try {
    for await (const page of client.search('Patient', { _summary: 'count' })) return page.total;
  } catch {
    return undefined;
  }
  return undefined;
}
