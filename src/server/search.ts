import { OperationOutcomeError, splitSearchOnComma } from '@medplum/core';
import type { Bundle, BundleLink, OperationOutcomeIssue } from '@medplum/fhirtypes';
import { SUPPORTED_SEARCH_PARAM_TYPES, searchParameterFor } from './definitions.js';

/**
 * What sits between an HTTP search and medplum's parser/matcher. medplum parses any parameter, but its
 * matcher answers `false` for parameters it has no definition for, for number/quantity/composite
 * parameters and for chains, so such a search would come back silently empty (or silently unfiltered,
 * for `_include`/`_has`). Those are refused with 400 (or dropped under `Prefer: handling=lenient`, as
 * FHIR allows, and then absent from the self link). Reference values are normalised because medplum
 * matches the reference string exactly: `patient=123` becomes `Patient/123`, `subject=123` every target
 * type (`Patient/123,Group/123,...`), `subject:Patient=123` becomes `subject=Patient/123`, and absolute
 * references to this server lose their base URL.
 */

export interface SearchPaging {
  params: URLSearchParams;
  count: number;
  offset: number;
  /** `_summary=count`: no entries, only the total. */
  summaryCount: boolean;
}

export interface NormaliseOptions {
  baseUrl: string;
  defaultPageSize: number;
  maxPageSize: number;
  lenient: boolean;
}

/** Result parameters the server honours (or may ignore, as FHIR permits for _elements/_summary). */
const RESULT_PARAMS = new Set(['_count', '_offset', '_sort', '_summary', '_elements', '_total', '_format', '_pretty']);

/** Modifiers medplum's matcher implements per parameter type; others would be ignored or misread. */
const MODIFIERS: Record<string, Set<string>> = {
  token: new Set(['missing', 'not']),
  reference: new Set(['missing']),
  date: new Set(['missing']),
  string: new Set(['missing', 'contains']),
  uri: new Set(['missing']),
};

export function normaliseSearch(resourceType: string, input: URLSearchParams, options: NormaliseOptions): SearchPaging {
  const out = new URLSearchParams();
  const problems: OperationOutcomeIssue[] = [];
  const reject = (name: string, why: string): void => {
    if (!options.lenient) problems.push({ severity: 'error', code: 'not-supported', details: { text: `Search parameter ${name}: ${why}` }, expression: [name] });
  };
  let count = options.defaultPageSize;
  let offset = 0;
  let summaryCount = false;

  for (const [key, value] of input) {
    if (key === '_count') {
      count = parseNonNegative(key, value);
      continue;
    }
    if (key === '_offset') {
      offset = parseNonNegative(key, value);
      continue;
    }
    if (key === '_format' && value !== '' && !/json/i.test(value)) {
      throw new OperationOutcomeError(badRequestOutcome(`_format=${value} is not supported: this server speaks JSON only`, '_format'));
    }
    if (key === '_summary' && value === 'count') summaryCount = true;
    if (key === '_sort') {
      const unknown = value.split(',').map((c) => c.replace(/^-/, '')).filter((c) => !isSupported(resourceType, c));
      if (unknown.length > 0) {
        reject(key, `cannot sort by ${unknown.join(', ')}`);
        continue;
      }
    }
    if (RESULT_PARAMS.has(key)) {
      out.append(key, value);
      continue;
    }
    if (key.includes('.') || key.startsWith('_has')) {
      reject(key, 'chained and reverse-chained searches are not supported');
      continue;
    }
    const [name, modifier] = splitModifier(key);
    const def = searchParameterFor(resourceType, name);
    if (!def) {
      reject(key, `unknown for ${resourceType} (or not supported: _include, _revinclude, _cursor, _text, _content, _list, _filter)`);
      continue;
    }
    if (!SUPPORTED_SEARCH_PARAM_TYPES.has(def.type)) {
      reject(key, `${def.type} parameters are not supported by the embedded server`);
      continue;
    }
    if (def.type === 'reference' && modifier && /^[A-Z]/.test(modifier)) {
      // Type modifier (subject:Patient=123) means subject=Patient/123.
      out.append(name, normaliseReferences(value, [modifier], options.baseUrl));
      continue;
    }
    if (modifier && !MODIFIERS[def.type]?.has(modifier)) {
      reject(key, `modifier :${modifier} is not supported for ${def.type} parameters`);
      continue;
    }
    if (def.type === 'reference' && !modifier) {
      out.append(name, normaliseReferences(value, def.target ?? [], options.baseUrl));
      continue;
    }
    out.append(key, value);
  }
  if (problems.length > 0) throw new OperationOutcomeError({ resourceType: 'OperationOutcome', issue: problems });

  count = Math.min(count, options.maxPageSize);
  if (summaryCount) count = 0;
  // medplum reads _count/_offset from the query; set them explicitly so the default page size applies.
  out.set('_count', String(count));
  out.set('_offset', String(offset));
  return { params: out, count, offset, summaryCount };
}

function isSupported(resourceType: string, code: string): boolean {
  const def = searchParameterFor(resourceType, code);
  return !!def && SUPPORTED_SEARCH_PARAM_TYPES.has(def.type);
}

function splitModifier(key: string): [string, string | undefined] {
  const i = key.indexOf(':');
  return i < 0 ? [key, undefined] : [key.slice(0, i), key.slice(i + 1)];
}

export function parseNonNegative(name: string, value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) {
    throw new OperationOutcomeError(badRequestOutcome(`${name} must be a non-negative integer, got "${value}"`, name));
  }
  return n;
}

export function normaliseReferences(value: string, targets: readonly string[], baseUrl: string): string {
  const out: string[] = [];
  for (let ref of splitSearchOnComma(value)) {
    if (ref.startsWith(`${baseUrl}/`)) ref = ref.slice(baseUrl.length + 1);
    if (ref !== '' && !ref.includes('/') && !ref.includes(':') && targets.length > 0) {
      for (const t of targets) out.push(`${t}/${ref}`);
    } else {
      out.push(ref);
    }
  }
  return out.map((v) => v.replace(/[\\,$|]/g, (c) => `\\${c}`)).join(',');
}

/** Adds fullUrl, search mode and self/first/previous/next links (offset paging) to a searchset. */
export function decorateSearchset(bundle: Bundle, resourceType: string, paging: SearchPaging, baseUrl: string): Bundle {
  const total = bundle.total ?? 0;
  const links = pagingLinks(`${baseUrl}/${resourceType}`, paging, total);
  const entry = bundle.entry?.map((e) => ({
    fullUrl: e.resource ? `${baseUrl}/${e.resource.resourceType}/${e.resource.id}` : undefined,
    resource: e.resource,
    search: { mode: 'match' as const },
  }));
  return { resourceType: 'Bundle', type: 'searchset', total, link: links, ...(entry?.length ? { entry } : {}) };
}

/**
 * self/first/previous/next links of an offset-paged result at `url` (the server's own base URL plus
 * the path: never the request's Host header, which a client controls).
 */
export function pagingLinks(url: string, paging: SearchPaging, total: number): BundleLink[] {
  const link = (relation: string, offset: number): BundleLink => {
    const params = new URLSearchParams(paging.params);
    params.set('_offset', String(offset));
    return { relation, url: `${url}?${formatQuery(params)}` };
  };
  const links: BundleLink[] = [link('self', paging.offset)];
  if (!paging.summaryCount && paging.count > 0) {
    links.push(link('first', 0));
    if (paging.offset > 0) links.push(link('previous', Math.max(0, paging.offset - paging.count)));
    if (paging.offset + paging.count < total) links.push(link('next', paging.offset + paging.count));
  }
  return links;
}

/** Like URLSearchParams.toString(), but leaves `/ | : ,` readable (they are safe in a query string). */
export function formatQuery(params: URLSearchParams): string {
  const enc = (v: string): string =>
    encodeURIComponent(v).replace(/%2F/gi, '/').replace(/%7C/gi, '|').replace(/%3A/gi, ':').replace(/%2C/gi, ',');
  return [...params].map(([k, v]) => `${enc(k)}=${enc(v)}`).join('&');
}

export function badRequestOutcome(text: string, expression: string): { resourceType: 'OperationOutcome'; issue: OperationOutcomeIssue[] } {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid', details: { text }, expression: [expression] }] };
}

/**
 * A FHIR instant parameter (`_since`) as an ISO UTC string; a date means its start (UTC). A `+` of a
 * time-zone offset that arrived unencoded (as a space) is taken back. Anything else is a 400.
 */
export function parseInstant(name: string, value: string): string {
  const v = value.trim().replace(/ (\d{2}:\d{2})$/, '+$1');
  const ok = /^\d{4}-\d{2}-\d{2}$/.test(v) || /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(v);
  const t = ok ? Date.parse(/T/.test(v) ? v : `${v}T00:00:00Z`) : NaN;
  if (Number.isNaN(t)) {
    throw new OperationOutcomeError(badRequestOutcome(`${name} must be an instant with a time zone (e.g. 2024-01-31T00:00:00Z), got "${value}"`, name));
  }
  return new Date(t).toISOString();
}
