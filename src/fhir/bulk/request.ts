import { createHash } from 'node:crypto';
import { AdapterError } from '../../core/errors.js';

/**
 * A Bulk Data `$export` kick-off (FHIR Bulk Data Access IG v2): the level (system, all Patients, one
 * Group), and the parameters `_type`, `_since`, `_typeFilter`, `_outputFormat` and, at Patient and Group
 * level, `patient`. Checked before anything is sent; every problem named at once.
 */

export type ExportLevel = { kind: 'system' } | { kind: 'patient' } | { kind: 'group'; groupId: string };

export interface BulkExportRequest {
  level: ExportLevel;
  /** `_type`: resource types to export (absent: the server's default for the level). */
  types?: string[];
  /** `_since`: only resources changed after this instant (an incremental export). */
  since?: Date;
  /** `_typeFilter`: FHIR search queries such as `Observation?code=...`; several for one type are OR'ed. */
  typeFilters?: string[];
  /** `_outputFormat` (default `application/fhir+ndjson`). */
  outputFormat?: string;
  /** `patient` (Patient and Group level): ids of the patients to restrict the export to; sent by POST. */
  patients?: string[];
}

export const NDJSON_FORMAT = 'application/fhir+ndjson';
const OUTPUT_FORMATS = new Set([NDJSON_FORMAT, 'application/ndjson', 'ndjson']);
const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;
const RESOURCE_TYPE = /^[A-Z][A-Za-z]{1,63}$/;

export function validateExportRequest(request: BulkExportRequest): void {
  const problems: string[] = [];
  const { level } = request;
  if (level.kind === 'group' && !FHIR_ID.test(level.groupId)) problems.push('the Group id is not a valid FHIR id');
  for (const type of request.types ?? []) if (!RESOURCE_TYPE.test(type)) problems.push(`_type "${type.slice(0, 64)}" is not a resource type name`);
  if (request.types && request.types.length === 0) problems.push('_type is empty (leave it out to export every type of the level)');
  for (const filter of request.typeFilters ?? []) {
    const type = /^([A-Z][A-Za-z]{1,63})\?./.exec(filter)?.[1];
    if (!type) problems.push('a _typeFilter must look like Type?param=value');
    else if (request.types && !request.types.includes(type)) problems.push(`a _typeFilter for ${type}, which _type does not ask for`);
  }
  if (request.since && Number.isNaN(request.since.getTime())) problems.push('_since is not a valid instant');
  if (request.outputFormat && !OUTPUT_FORMATS.has(request.outputFormat)) problems.push(`_outputFormat ${request.outputFormat.slice(0, 64)} is not NDJSON`);
  if (request.patients) {
    if (level.kind === 'system') problems.push('the patient parameter applies to Patient- and Group-level exports only');
    const bad = request.patients.filter((id) => !FHIR_ID.test(id)).length;
    // A count only: the ids are patient identifiers.
    if (bad) problems.push(`${bad} patient id(s) are not valid FHIR ids`);
    if (request.patients.length === 0) problems.push('the patient list is empty');
  }
  if (problems.length) throw new AdapterError('input-invalid', `Invalid bulk export request: ${problems.join('; ')}`, { details: { problems } });
}

/** The kick-off path relative to the FHIR base: `$export`, `Patient/$export` or `Group/<id>/$export`. */
export function kickOffPath(level: ExportLevel): string {
  return level.kind === 'system' ? '$export' : level.kind === 'patient' ? 'Patient/$export' : `Group/${level.groupId}/$export`;
}

/** The parameters as name/value pairs, in a stable order (repeated `_typeFilter`s are separate pairs). */
export function kickOffParams(request: BulkExportRequest): [string, string][] {
  const out: [string, string][] = [['_outputFormat', request.outputFormat ?? NDJSON_FORMAT]];
  if (request.types?.length) out.push(['_type', request.types.join(',')]);
  if (request.since) out.push(['_since', request.since.toISOString()]);
  for (const filter of request.typeFilters ?? []) out.push(['_typeFilter', filter]);
  return out;
}

/**
 * A FHIR `Parameters` body for a POST kick-off: the parameters above, and `patient` as references. Used
 * when patients are named (they must not travel in a URL, where proxies log them) or the URL would be long.
 */
export function kickOffParameters(request: BulkExportRequest): { resourceType: 'Parameters'; parameter: object[] } {
  const parameter: object[] = kickOffParams(request).map(([name, value]) =>
    name === '_since' ? { name, valueInstant: value } : name === '_outputFormat' ? { name, valueString: value } : { name, valueString: value },
  );
  for (const id of request.patients ?? []) parameter.push({ name: 'patient', valueReference: { reference: `Patient/${id}` } });
  return { resourceType: 'Parameters', parameter };
}

/**
 * Identifies an export request (level, types, since, filters, patients), so a run started again after a
 * crash finds the export it kicked off. A hash: filters and patient lists are not stored in clear.
 */
export function exportRequestKey(request: BulkExportRequest): string {
  const canonical = {
    level: request.level,
    types: [...(request.types ?? [])].sort(),
    since: request.since?.toISOString() ?? null,
    typeFilters: [...(request.typeFilters ?? [])].sort(),
    outputFormat: request.outputFormat ?? NDJSON_FORMAT,
    patients: [...(request.patients ?? [])].sort(),
  };
  return createHash('sha256').update(JSON.stringify(canonical)).digest('hex').slice(0, 32);
}
