import type { BundleEntry, CapabilityStatement, Resource } from 'fhir/r4.js';
import { AdapterError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { FhirClient } from './client.js';
import { patientIdOf } from './pull.js';

/**
 * Changed-patient selection for incremental runs: which patients have data that changed since an
 * instant, found with `_lastUpdated` searches (many resources per request, all pages, only the subject
 * asked for), plus, where the server supports type-level history, the patients whose data was deleted.
 *
 * - Updates, including a status set to `entered-in-error`, are new versions: `_lastUpdated` finds them.
 * - Deletions leave no resource to search. Type history (`GET [type]/_history?_since=`) lists them; the
 *   patient of a deleted resource is read from its previous version (instance history). The server's
 *   CapabilityStatement decides: without `history-type` (or without batch, through which history is
 *   read here), deletions are not detected and the result says so (`deletions.checked = false`); the
 *   re-score interval then brings such patients back, and the run's selection records why.
 *
 * Only the FhirClient's public API is used: `search` for `_lastUpdated`, and `transaction` with a batch
 * of GET entries for history (FHIR batch may carry any read interaction).
 */

export const CHANGE_TYPES = ['Patient', 'Observation', 'DiagnosticReport', 'ImagingStudy', 'Condition'] as const;
export type ChangeType = (typeof CHANGE_TYPES)[number];

export interface ChangeScanOptions {
  /** Lower bound (inclusive) of `_lastUpdated`: the watermark minus the overlap window. */
  since: Date;
  types?: readonly ChangeType[];
  /** `_count` per page. Default 1000. */
  pageSize?: number;
  /** Look for deletions through type history when the server supports it. Default true. */
  deletions?: boolean;
  /** The server's CapabilityStatement, when the caller has it already. */
  capabilities?: CapabilityStatement;
  logger?: Logger;
}

export interface ChangeScan {
  /** Sorted, unique. */
  patientIds: string[];
  /** Per type: unique resource versions seen and patients they belong to. */
  byType: Record<string, { versions: number; patients: number }>;
  /** Changed resources whose subject is not a Patient (a Group, a Location ...) or is missing. */
  unattributed: number;
  deletions: { checked: boolean; reason?: string; patientIds: string[]; resources: number };
  requests: number;
}

export async function findChangedPatients(client: FhirClient, options: ChangeScanOptions): Promise<ChangeScan> {
  const logger = (options.logger ?? silentLogger).child({ component: 'fhir-changes' });
  if (!(options.since instanceof Date) || Number.isNaN(options.since.getTime())) throw new AdapterError('input-invalid', 'change scan: since must be a valid instant');
  const types = options.types ?? CHANGE_TYPES;
  const pageSize = String(options.pageSize ?? 1000);
  const since = options.since.toISOString();
  const patients = new Set<string>();
  const byType: ChangeScan['byType'] = {};
  let unattributed = 0;
  let requests = 0;

  for (const type of types) {
    const versions = new Set<string>();
    const typePatients = new Set<string>();
    // Sorted by _lastUpdated so a resource updated during the scan moves to the end (found again) instead
    // of shifting the offset pages under us and hiding another one.
    const params = { _lastUpdated: `ge${since}`, _elements: type === 'Patient' ? 'id' : 'subject', _sort: '_lastUpdated', _count: pageSize };
    for await (const page of client.search(type, params)) {
      requests++;
      for (const resource of page.resources) {
        const key = `${resource.id}|${resource.meta?.versionId ?? resource.meta?.lastUpdated ?? ''}`;
        if (versions.has(key)) continue;
        versions.add(key);
        const patientId = patientOf(resource);
        if (patientId) {
          typePatients.add(patientId);
          patients.add(patientId);
        } else {
          unattributed++;
        }
      }
    }
    byType[type] = { versions: versions.size, patients: typePatients.size };
  }

  let deletions: ChangeScan['deletions'] = { checked: false, reason: 'disabled', patientIds: [], resources: 0 };
  if (options.deletions !== false) {
    let capabilities = options.capabilities;
    if (!capabilities) {
      capabilities = await client.capabilities();
      requests++;
    }
    const unsupported = historyUnsupported(capabilities, types);
    if (unsupported) {
      deletions = { checked: false, reason: unsupported, patientIds: [], resources: 0 };
      logger.info({ reason: unsupported }, 'deleted data cannot be detected on this server; the re-score interval covers it');
    } else {
      const found = await findDeletions(client, types, options.since, Number(pageSize));
      requests += found.requests;
      for (const id of found.patientIds) patients.add(id);
      deletions = { checked: true, patientIds: found.patientIds, resources: found.resources };
    }
  }

  logger.info({ types: types.length, patients: patients.size, unattributed, deletions: deletions.patientIds.length, requests }, 'change scan done');
  return { patientIds: [...patients].sort(), byType, unattributed, deletions, requests };
}

/** The patient a resource belongs to: a Patient itself, or the Patient its `subject` refers to. */
export function patientOf(resource: Resource): string | undefined {
  if (resource.resourceType === 'Patient') return resource.id;
  return patientIdOf((resource as { subject?: { reference?: string } }).subject);
}

/** Why deletions cannot be looked for on this server, or undefined when they can. */
export function historyUnsupported(capabilities: CapabilityStatement, types: readonly string[]): string | undefined {
  const rest = capabilities.rest?.find((r) => r.mode === 'server') ?? capabilities.rest?.[0];
  if (!rest) return 'no rest section in the CapabilityStatement';
  const missing = types.filter((t) => !rest.resource?.find((r) => r.type === t)?.interaction?.some((i) => i.code === 'history-type'));
  return missing.length ? `no history-type for ${missing.join(', ')}` : undefined;
}

interface Deletions {
  patientIds: string[];
  resources: number;
  requests: number;
}

/**
 * Type history since `since` (every page). Deleted entries (request.method DELETE, or no resource with
 * a 410 response) name only the resource; its patient comes from the latest earlier version with a
 * body: from the same history when it is there, else from the resource's own history.
 */
async function findDeletions(client: FhirClient, types: readonly string[], since: Date, pageSize: number): Promise<Deletions> {
  const lastBody = new Map<string, Resource>();
  const deleted = new Set<string>();
  const params = { _since: since.toISOString(), _count: String(pageSize) };
  let requests = 0;
  await Promise.all(
    types.map(async (type) => {
      for await (const history of client.history(type, params)) {
        requests++;
        for (const entry of history.entry ?? []) {
          const ref = referenceOf(entry);
          if (!ref) continue;
          if (isDeletion(entry)) deleted.add(ref);
          else if (entry.resource && !lastBody.has(ref)) lastBody.set(ref, entry.resource); // history is newest first
        }
      }
    }),
  );
  const patients = new Set<string>();
  const unknown: string[] = [];
  for (const ref of deleted) {
    const body = lastBody.get(ref);
    const patientId = body ? patientOf(body) : undefined;
    if (patientId) patients.add(patientId);
    else if (!body) unknown.push(ref);
  }
  // Deleted resources created before `since`: their earlier versions are only in their own history
  // (one read each, bounded by the client's concurrency; deletions between two runs are few).
  await Promise.all(
    unknown.map(async (ref) => {
      const [type, id] = ref.split('/');
      for await (const history of client.history(type, { _count: '5' }, id)) {
        requests++;
        const body = history.entry?.find((e) => e.resource && !isDeletion(e))?.resource;
        const patientId = body ? patientOf(body) : undefined;
        if (patientId) patients.add(patientId);
        break; // the newest versions are on the first page
      }
    }),
  );
  return { patientIds: [...patients].sort(), resources: deleted.size, requests };
}

function isDeletion(entry: BundleEntry): boolean {
  return entry.request?.method === 'DELETE' || (!entry.resource && /^410/.test(entry.response?.status ?? ''));
}

function referenceOf(entry: BundleEntry): string | undefined {
  if (entry.resource?.id) return `${entry.resource.resourceType}/${entry.resource.id}`;
  const url = entry.request?.url ?? entry.fullUrl ?? '';
  const m = /(?:^|\/)([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(url.split('?')[0]);
  return m ? `${m[1]}/${m[2]}` : undefined;
}

