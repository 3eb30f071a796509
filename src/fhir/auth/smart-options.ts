import { z } from 'zod';

/**
 * Options of SMART Backend Services auth (client-confidential-asymmetric, client-credentials grant),
 * as a zod schema for the configuration to embed. Secrets stay in files: the schema holds the private
 * key's path, never the key.
 */

/** Signing algorithms the SMART App Launch IG requires servers to support for asymmetric client auth. */
export const SMART_SIGNING_ALGS = ['RS384', 'ES384'] as const;
export type SmartSigningAlg = (typeof SMART_SIGNING_ALGS)[number];

/**
 * What this adapter reads and writes, as SMART v2 system scopes: the pull's searches (and the Binaries of
 * report attachments), and the write-back: RiskAssessment and Device by conditional create after a
 * search on their identifier, Provenance by PUT under a derived id (create or update), CarePlan
 * proposals (read, conditional create, revoke by update) and the care they check (ServiceRequest, Procedure).
 */
export const DEFAULT_SMART_SCOPES: readonly string[] = [
  'system/Patient.rs',
  'system/Observation.rs',
  'system/Condition.rs',
  'system/DiagnosticReport.rs',
  'system/ImagingStudy.rs',
  'system/Binary.r',
  'system/Device.crs',
  'system/RiskAssessment.crs',
  'system/Provenance.cu',
  // CarePlan proposals: existing care is read, proposals are created, superseded drafts revoked.
  'system/CarePlan.crus',
  'system/ServiceRequest.rs',
  'system/Procedure.rs',
];

// v2: system/<Type|*>.<c?r?u?d?s?> (letters in this order, at least one), optionally with ?param=value;
// v1: system/<Type|*>.(read|write|*).
const V2_SCOPE = /^system\/(\*|[A-Z][A-Za-z]{1,63})\.(?=[cruds])c?r?u?d?s?(\?[^\s]+)?$/;
const V1_SCOPE = /^system\/(\*|[A-Z][A-Za-z]{1,63})\.(read|write|\*)$/;

export function isSmartSystemScope(scope: string): boolean {
  return V2_SCOPE.test(scope) || V1_SCOPE.test(scope);
}

const scopeSchema = z.string().superRefine((scope, ctx) => {
  if (isSmartSystemScope(scope)) return;
  ctx.addIssue({
    code: 'custom',
    message: /^(patient|user)\//.test(scope)
      ? `"${scope}": a backend service asks for system/ scopes, not patient/ or user/ ones`
      : `"${scope}" is not a SMART system scope (system/<Type>.<cruds> such as system/Observation.rs, or v1 system/<Type>.read|write)`,
  });
});

export const smartAuthOptionsSchema = z.strictObject({
  /** The client id the EHR assigned when the adapter was registered. */
  clientId: z.string().min(1, 'the SMART client id must not be empty'),
  /** A private key in a file: PEM (PKCS#8, PKCS#1 RSA or SEC1 EC) or JSON (a private JWK, or a JWKS holding one). */
  privateKeyFile: z.string().min(1, 'the SMART private key file must be named'),
  /** The key id registered with the EHR. Default: the JWK's own `kid`, else its RFC 7638 thumbprint. */
  kid: z.string().min(1).max(256).optional(),
  /** RS384 (RSA, at least 2048 bits) or ES384 (EC P-384). Default: the one the key's type allows. */
  alg: z.enum(SMART_SIGNING_ALGS).optional(),
  /** Scopes to request; default DEFAULT_SMART_SCOPES. */
  scopes: z.array(scopeSchema).min(1, 'at least one scope is needed').optional(),
  /** The token endpoint; when set, `{base}/.well-known/smart-configuration` is not read. */
  tokenEndpoint: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional(),
});
export type SmartAuthOptions = z.infer<typeof smartAuthOptionsSchema>;

/** The same options inside an `auth` section: `{ type: 'smart', ... }`. */
export const smartAuthSchema = smartAuthOptionsSchema.extend({ type: z.literal('smart') });
export type SmartAuth = z.infer<typeof smartAuthSchema>;
