import type { CapabilityStatement, CapabilityStatementRestResource } from '@medplum/fhirtypes';
import { getSearchParameters } from '@medplum/core';
import { SUPPORTED_SEARCH_PARAM_TYPES, ensureR4Definitions, r4ResourceTypes } from './definitions.js';

/**
 * medplum's FhirRouter serves no `/metadata`. This one describes what this server really does: every
 * concrete R4 type with the interactions FhirRouter routes, and per type only the search parameters the
 * in-memory matcher evaluates (token, reference, date, string, uri; number/quantity/composite/special
 * are refused by the search layer, so they are not advertised).
 */
const INTERACTIONS = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'history-type', 'create', 'search-type'] as const;

const BULK_EXPORT = 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export';
const BULK_PATIENT_EXPORT = 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export';
const BULK_GROUP_EXPORT = 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export';

let cached: CapabilityStatement | undefined;

export function capabilityStatement(
  baseUrl: string,
  software: { name: string; version: string },
  options: { smartConfiguration?: Record<string, unknown> } = {},
): CapabilityStatement {
  cached ??= build(software);
  const smart = options.smartConfiguration;
  const rest = cached.rest?.[0];
  // With a SMART configuration, say so where R4 clients look: rest.security (oauth-uris extension).
  const security = smart
    ? {
        service: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }] }],
        extension: [
          {
            url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
            extension: (['token', 'authorize'] as const)
              .filter((k) => typeof smart[`${k}_endpoint`] === 'string')
              .map((k) => ({ url: k, valueUri: smart[`${k}_endpoint`] as string })),
          },
        ],
      }
    : undefined;
  return {
    ...cached,
    implementation: { description: 'fhir-ml-adapter embedded FHIR R4 server', url: baseUrl },
    ...(security && rest ? { rest: [{ ...rest, security }] } : {}),
  };
}

function build(software: { name: string; version: string }): CapabilityStatement {
  ensureR4Definitions();
  const resource: CapabilityStatementRestResource[] = r4ResourceTypes().map((type) => {
    const params = Object.values(getSearchParameters(type) ?? {})
      .filter((p) => SUPPORTED_SEARCH_PARAM_TYPES.has(p.type))
      .sort((a, b) => a.code.localeCompare(b.code));
    const operation =
      type === 'Patient'
        ? [{ name: 'export', definition: BULK_PATIENT_EXPORT }]
        : type === 'Group'
          ? [{ name: 'export', definition: BULK_GROUP_EXPORT }]
          : undefined;
    return {
      type: type as CapabilityStatementRestResource['type'],
      ...(operation ? { operation } : {}),
      profile: `http://hl7.org/fhir/StructureDefinition/${type}`,
      interaction: INTERACTIONS.map((code) => ({ code })),
      versioning: 'versioned',
      readHistory: true,
      updateCreate: true,
      conditionalCreate: true,
      conditionalUpdate: true,
      conditionalDelete: 'single',
      searchParam: params.map((p) => ({
        name: p.code,
        type: p.type,
        ...(p.url ? { definition: p.url } : {}),
      })),
    };
  });
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    software,
    fhirVersion: '4.0.1',
    instantiates: ['http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data'],
    format: ['application/fhir+json', 'json'],
    rest: [
      {
        mode: 'server',
        documentation:
          'In-memory server (medplum FhirRouter + MemoryRepository). Writes are validated against the R4 base ' +
          'StructureDefinitions; transactions are all-or-nothing; searches page with _count/_offset; ' +
          'type and system history (with deletions, _since); Bulk Data $export at system, Patient and Group level.',
        resource,
        interaction: [{ code: 'transaction' }, { code: 'batch' }, { code: 'history-system' }],
        operation: [{ name: 'export', definition: BULK_EXPORT }],
        searchParam: [
          { name: '_count', type: 'number', documentation: 'Page size, capped at the server maximum.' },
          { name: '_offset', type: 'number', documentation: 'Zero-based index of the first result.' },
          { name: '_sort', type: 'string' },
          { name: '_summary', type: 'token', documentation: 'Only _summary=count changes the result.' },
        ],
      },
    ],
  };
}
