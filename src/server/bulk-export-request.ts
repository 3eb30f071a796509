import { OperationOutcomeError, parseSearchRequest, type SearchRequest } from '@medplum/core';
import type { OperationOutcomeIssue, Parameters } from '@medplum/fhirtypes';
import { patientCompartment } from './compartment.js';
import { isR4ResourceType } from './definitions.js';
import { normaliseReferences, normaliseSearch, parseInstant } from './search.js';

/**
 * The kick-off request of a Bulk Data export (FHIR Bulk Data Access IG v2, `$export`), parsed and
 * checked before any job exists: GET query parameters or a POST Parameters resource, repeated
 * parameters merged. Unsupported parameters (`_elements`, `includeAssociatedData`, ...) and values this
 * server cannot honour are a 400 naming them, or dropped under `Prefer: handling=lenient`, as the IG
 * describes.
 */

export type ExportLevel = { kind: 'system' } | { kind: 'patient' } | { kind: 'group'; groupId: string };

export interface ExportRequest {
  level: ExportLevel;
  /** Types asked for with `_type` (undefined: the level's default). */
  types?: string[];
  /** `_since` as an ISO instant: only resources changed strictly after it. */
  since?: string;
  /** `_typeFilter` queries per type; several for one type are OR'ed. */
  typeFilters: Map<string, SearchRequest[]>;
  /** `patient` (POST, Patient/Group level): references `Patient/<id>` to restrict the export to. */
  patients?: string[];
}

/** `_outputFormat` values accepted (all mean NDJSON of FHIR resources). */
export const OUTPUT_FORMATS: ReadonlySet<string> = new Set(['application/fhir+ndjson', 'application/ndjson', 'ndjson']);

interface RawParam {
  name: string;
  value: string;
  /** valueReference.reference of a POST parameter. */
  reference?: string;
}

/** GET query or POST Parameters into one list of name/value pairs. */
export function rawExportParams(query: URLSearchParams, body: unknown): RawParam[] {
  const out: RawParam[] = [...query].map(([name, value]) => ({ name, value }));
  const params = body as Parameters | undefined;
  if (params && typeof params === 'object' && params.resourceType === 'Parameters') {
    for (const p of params.parameter ?? []) {
      const value = p.valueString ?? p.valueInstant ?? p.valueDateTime ?? p.valueCode ?? p.valueUri ?? p.valueBoolean?.toString() ?? '';
      out.push({ name: p.name ?? '', value, ...(p.valueReference?.reference ? { reference: p.valueReference.reference } : {}) });
    }
  } else if (body && typeof body === 'object' && Object.keys(body).length > 0) {
    throw new OperationOutcomeError(invalid('A POST $export body must be a Parameters resource', 'Parameters'));
  }
  return out;
}

export function parseExportRequest(level: ExportLevel, params: RawParam[], options: { baseUrl: string; lenient: boolean }): ExportRequest {
  const problems: OperationOutcomeIssue[] = [];
  const refuse = (name: string, text: string): void => {
    if (!options.lenient) problems.push({ severity: 'error', code: 'not-supported', details: { text }, expression: [name] });
  };
  const compartment = patientCompartment();
  const inScope = (type: string): boolean => level.kind === 'system' || compartment.has(type);
  const request: ExportRequest = { level, typeFilters: new Map() };
  const filterTexts: string[] = [];

  for (const p of params) {
    switch (p.name) {
      case '_outputFormat': {
        // An unencoded '+' in a query string arrives as a space.
        const format = p.value.trim().replace(/ /g, '+');
        if (!OUTPUT_FORMATS.has(format)) {
          problems.push({ severity: 'error', code: 'not-supported', details: { text: `_outputFormat ${format} is not supported: use application/fhir+ndjson` }, expression: ['_outputFormat'] });
        }
        break;
      }
      case '_since':
        try {
          request.since = parseInstant('_since', p.value);
        } catch (err) {
          problems.push(...((err as OperationOutcomeError).outcome?.issue ?? []));
        }
        break;
      case '_type':
        for (const type of p.value.split(',').map((t) => t.trim()).filter(Boolean)) {
          if (!isR4ResourceType(type)) refuse('_type', `_type ${type} is not an R4 resource type`);
          else if (!inScope(type)) refuse('_type', `_type ${type} is outside the Patient compartment, which a ${level.kind}-level export covers`);
          else if (!request.types?.includes(type)) (request.types ??= []).push(type);
        }
        break;
      case '_typeFilter':
        // Several queries, comma-separated: a comma starts a new query only where `Type?` follows.
        filterTexts.push(...p.value.split(/,(?=[A-Z][A-Za-z]+\?)/).filter((q) => q.trim() !== ''));
        break;
      case 'patient': {
        if (level.kind === 'system') {
          problems.push(invalidIssue('The patient parameter applies to Patient- and Group-level exports only', 'patient'));
          break;
        }
        const refs = (p.reference ?? p.value).split(',').map((r) => normaliseReferences(r.trim(), ['Patient'], options.baseUrl));
        for (const ref of refs) {
          if (!/^Patient\/[A-Za-z0-9\-.]{1,64}$/.test(ref)) problems.push(invalidIssue('patient must reference a Patient (Patient/<id>)', 'patient'));
          else (request.patients ??= []).push(ref);
        }
        break;
      }
      default:
        refuse(p.name, `$export parameter ${p.name || '(unnamed)'} is not supported by this server`);
    }
  }

  for (const text of filterTexts) {
    const q = text.indexOf('?');
    const type = q > 0 ? text.slice(0, q) : '';
    if (!isR4ResourceType(type)) {
      problems.push(invalidIssue(`_typeFilter "${type || text}" must start with a resource type and '?'`, '_typeFilter'));
      continue;
    }
    if (request.types && !request.types.includes(type)) {
      refuse('_typeFilter', `_typeFilter for ${type}, which _type does not ask for`);
      continue;
    }
    if (!inScope(type)) {
      refuse('_typeFilter', `_typeFilter for ${type}, which is outside the Patient compartment`);
      continue;
    }
    try {
      const paging = normaliseSearch(type, new URLSearchParams(text.slice(q + 1)), {
        baseUrl: options.baseUrl,
        defaultPageSize: 0,
        maxPageSize: 0,
        lenient: options.lenient,
      });
      paging.params.delete('_count');
      paging.params.delete('_offset');
      const search = parseSearchRequest(type, Object.fromEntries(groupParams(paging.params)));
      const list = request.typeFilters.get(type) ?? [];
      list.push(search);
      request.typeFilters.set(type, list);
    } catch (err) {
      if (err instanceof OperationOutcomeError) problems.push(...(err.outcome.issue ?? []).map((i) => ({ ...i, expression: ['_typeFilter'] })));
      else throw err;
    }
  }
  if (problems.length > 0) throw new OperationOutcomeError({ resourceType: 'OperationOutcome', issue: problems });
  return request;
}

/** URLSearchParams into the query-object shape parseSearchRequest takes (repeated names as arrays). */
function groupParams(params: URLSearchParams): Map<string, string | string[]> {
  const out = new Map<string, string | string[]>();
  for (const [k, v] of params) {
    const prev = out.get(k);
    out.set(k, prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v]);
  }
  return out;
}

function invalidIssue(text: string, expression: string): OperationOutcomeIssue {
  return { severity: 'error', code: 'invalid', details: { text }, expression: [expression] };
}

function invalid(text: string, expression: string): { resourceType: 'OperationOutcome'; issue: OperationOutcomeIssue[] } {
  return { resourceType: 'OperationOutcome', issue: [invalidIssue(text, expression)] };
}
