/**
 * The auth seam of the transport: every HTTP attempt asks its AuthProvider for headers, and a 401 asks it
 * once whether fresh credentials can help before the request is replayed, once.
 *
 * Implementations: `none`, `bearer`, `basic` (static.ts) and SMART Backend Services (smart.ts).
 * Header values are credentials: they are never logged, never put in error messages or details.
 */
export interface AuthProvider {
  /** What kind of credentials these are ('none', 'bearer', 'basic', 'smart'), for logs and messages. */
  readonly kind: string;
  /**
   * Headers for one request (e.g. `{ authorization: 'Bearer …' }`). May obtain or renew a token first;
   * concurrent callers share one renewal. Rejects with an AdapterError when no credentials can be had
   * (`fhir-auth` when refused, transient `fhir-unavailable` when the token endpoint is unreachable).
   */
  headers(): Promise<Record<string, string>>;
  /**
   * Called after the server answered 401 to a request sent with `rejected` (the headers it carried).
   * Resolves true when other credentials are now in place and the request should be replayed once:
   * a SMART provider refreshes its token, once for all requests refused with the same token. Resolves
   * false when nothing can change (static credentials): the 401 then stands as a permanent `fhir-auth`.
   */
  refresh(rejected: Record<string, string>): Promise<boolean>;
}
