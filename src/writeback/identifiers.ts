import { createHash } from 'node:crypto';

/** Default identifier system of the adapter; configurable per installation (FHIR_ML_IDENTIFIER_SYSTEM). */
export const DEFAULT_IDENTIFIER_SYSTEM = 'https://fhir-ml-adapter.dev/fhir/identifier';
/** Code system under which models are coded in `RiskAssessment.method` and `Device.type`. */
export const MODEL_REGISTRY_SYSTEM = 'https://fhir-ml-adapter.dev/fhir/CodeSystem/model';

/**
 * Deterministic identifier of one model run for one patient at one as-of instant. The same inputs always
 * give the same value, which makes conditional creates idempotent: a re-run writes nothing new.
 */
export function assessmentIdentifierValue(modelId: string, modelVersion: string, patientId: string, asOf: Date): string {
  return createHash('sha256')
    .update(`${modelId}\u0000${modelVersion}\u0000Patient/${patientId}\u0000${asOf.toISOString()}`)
    .digest('hex')
    .slice(0, 40);
}

export function deviceIdentifierValue(modelId: string, modelVersion: string): string {
  return `${modelId}@${modelVersion}`;
}

/** A urn:uuid derived from a string, so transaction fullUrls are stable across runs (RFC 4122 v5-like layout). */
export function stableUuid(seed: string): string {
  const h = createHash('sha256').update(seed).digest('hex');
  const variant = ((parseInt(h[16], 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
