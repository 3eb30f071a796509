import { OperationOutcomeError } from '@medplum/core';
import type { Bundle, BundleEntry, OperationOutcomeIssue } from '@medplum/fhirtypes';
import type { ChangeRecord, IndexedMemoryRepository } from './repository.js';
import { pagingLinks, parseInstant, parseNonNegative, type SearchPaging } from './search.js';

/**
 * Type- and system-level history (`GET [base]/Observation/_history?_since=...`, `GET [base]/_history`),
 * which medplum's FhirRouter does not route, and the history of a resource the change log knows (a
 * deleted one included, which medplum's own instance history no longer finds). Answered from the repository's change log, so deletions
 * are in it (entry.request.method DELETE, no resource): an incremental reader learns what was deleted
 * since its last run, not only what changed. Newest first, paged with `_count`/`_offset` like search.
 */
export interface HistoryOptions {
  /** undefined: system-level history (every type). */
  resourceType?: string;
  /** With resourceType: the history of one resource (`GET [base]/Observation/123/_history`). */
  id?: string;
  baseUrl: string;
  defaultPageSize: number;
  maxPageSize: number;
  lenient: boolean;
}

const STATUS = { POST: '201 Created', PUT: '200 OK', DELETE: '204 No Content' } as const;

export function historyBundle(repo: IndexedMemoryRepository, params: URLSearchParams, options: HistoryOptions): Bundle {
  let since: string | undefined;
  let count = options.defaultPageSize;
  let offset = 0;
  const problems: OperationOutcomeIssue[] = [];
  for (const [key, value] of params) {
    if (key === '_since') since = parseInstant(key, value);
    else if (key === '_count') count = Math.min(parseNonNegative(key, value), options.maxPageSize);
    else if (key === '_offset') offset = parseNonNegative(key, value);
    else if (key !== '_format' && key !== '_pretty' && !options.lenient) {
      problems.push({ severity: 'error', code: 'not-supported', details: { text: `History parameter ${key} is not supported (only _since, _count, _offset)` }, expression: [key] });
    }
  }
  if (problems.length > 0) throw new OperationOutcomeError({ resourceType: 'OperationOutcome', issue: problems });

  const all = repo.changesSince(since, { inclusive: true, resourceType: options.resourceType });
  const changes = options.id === undefined ? all : all.filter((c) => c.id === options.id);
  const total = changes.length;
  // Newest first: the page starting `offset` from the end of the (oldest-first) log.
  const page: ChangeRecord[] = [];
  for (let i = total - 1 - offset; i >= 0 && page.length < count; i--) page.push(changes[i]);
  // Links carry only what the server honoured, `_since` normalised.
  const kept = new URLSearchParams({ ...(since ? { _since: since } : {}), _count: String(count) });
  const paging: SearchPaging = { params: kept, count, offset, summaryCount: false };
  const path = options.resourceType
    ? `${options.baseUrl}/${options.resourceType}${options.id === undefined ? '' : `/${options.id}`}/_history`
    : `${options.baseUrl}/_history`;
  const entry: BundleEntry[] = page.map((c) => ({
    fullUrl: `${options.baseUrl}/${c.resourceType}/${c.id}`,
    // The stored version itself: it is serialised as it is sent, never changed.
    ...(c.resource ? { resource: c.resource } : {}),
    request: { method: c.method, url: c.method === 'POST' ? c.resourceType : `${c.resourceType}/${c.id}` },
    response: { status: STATUS[c.method], etag: `W/"${c.versionId}"`, lastModified: c.lastUpdated },
  }));
  return { resourceType: 'Bundle', type: 'history', total, link: pagingLinks(path, paging, total), ...(entry.length ? { entry } : {}) };
}
