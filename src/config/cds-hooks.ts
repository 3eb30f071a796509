import { z } from 'zod';
import { SMART_SIGNING_ALGS } from '../fhir/auth/smart-options.js';

/**
 * The `service.cdsHooks` and `service.jwks` sections of the sources file.
 *
 * ```yaml
 * service:
 *   cdsHooks:
 *     baseUrl: https://adapter.hospital.example     # as the EHR calls it: JWT aud = {baseUrl}/cds-services/{id}
 *     models: [diabetes-progression]                # default: every model of the sources
 *     clients:                                      # the EHRs allowed to call (CDS Hooks "Trusting CDS Clients")
 *       - issuer: https://ehr.hospital.example
 *         jwksUrl: https://ehr.hospital.example/cds-jwks.json   # or jwksFile (the JWK Set exchanged out of band)
 *         fhirServers: [https://ehr.hospital.example/fhir/R4]  # where its fhirAuthorization tokens may be used
 *     corsOrigins: [https://ehr.hospital.example]   # browser origins that may call (default *)
 *   jwks:
 *     keys: [{ privateKeyFile: keys/next.pem }]     # served at /.well-known/jwks.json beside the sources' SMART keys
 * ```
 */

const httpUrl = z
  .url({ protocol: /^https?$/, error: 'must be an http(s) URL' })
  .refine((u) => !/[?#]/.test(u), 'must not have a query or fragment')
  .transform((u) => u.replace(/\/+$/, ''));

/** Asymmetric JWS algorithms only: the spec forbids `none` and shared-secret (HMAC) algorithms. */
export const CDS_JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'] as const;

export const cdsClientSchema = z
  .strictObject({
    issuer: z.string().min(1),
    jwksUrl: httpUrl.optional(),
    jwksFile: z.string().min(1).optional(),
    algorithms: z.array(z.enum(CDS_JWT_ALGORITHMS)).min(1).default(['RS384', 'ES384']),
    /** FHIR servers (base URLs) whose tokens this client may hand us; absent: any https server (http only on loopback). */
    fhirServers: z.array(httpUrl).optional(),
  })
  .refine((c) => !!c.jwksUrl !== !!c.jwksFile, 'give exactly one of jwksUrl or jwksFile');

export const cdsHooksSchema = z.strictObject({
  baseUrl: httpUrl,
  models: z.array(z.string().min(1)).min(1).optional(),
  clients: z.array(cdsClientSchema).min(1, 'list at least one CDS client (an EHR that may call)'),
  /** Where the console is reached from a clinician's browser (default: baseUrl). */
  consoleUrl: httpUrl.optional(),
  /**
   * Browser origins that may call the CDS Services (CORS; `*` for any, the default: calls are
   * authenticated by the EHR's signed JWT, never by cookies). An empty list answers no browser origin.
   */
  corsOrigins: z
    .array(z.union([z.literal('*'), z.string().refine((o) => URL.canParse(o) && new URL(o).origin === o, 'must be an origin such as https://ehr.example.org (scheme, host and port only) or *')]))
    .default(['*']),
  /** Leeway for exp/iat between the EHR's clock and ours. */
  clockToleranceSeconds: z.number().int().min(0).max(300).default(30),
  /** Timeout of each FHIR request made with a request's fhirAuthorization (a hook must answer fast). */
  fetchTimeoutMs: z.number().int().min(500).max(60_000).default(10_000),
});
export type CdsHooksConfig = z.infer<typeof cdsHooksSchema>;
export type CdsClientConfig = z.infer<typeof cdsClientSchema>;

export const jwksSchema = z.strictObject({
  keys: z
    .array(z.strictObject({ privateKeyFile: z.string().min(1), kid: z.string().min(1).optional(), alg: z.enum(SMART_SIGNING_ALGS).optional() }))
    .default([]),
});
