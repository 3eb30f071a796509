import type { AuthProvider } from './provider.js';
import { SmartBackendAuth, type SmartAuthContext } from './smart.js';
import type { SmartAuth } from './smart-options.js';
import { basicAuth, bearerAuth, noAuth } from './static.js';

export type { AuthProvider } from './provider.js';
export { basicAuth, bearerAuth, noAuth } from './static.js';
export { SmartBackendAuth, type SmartAuthContext } from './smart.js';
export { loadSigningKey, publicJwks, type SigningKey } from './keys.js';
export {
  DEFAULT_SMART_SCOPES,
  SMART_SIGNING_ALGS,
  isSmartSystemScope,
  smartAuthOptionsSchema,
  smartAuthSchema,
  type SmartAuth,
  type SmartAuthOptions,
  type SmartSigningAlg,
} from './smart-options.js';

/** Credentials as configuration gives them; `createAuthProvider` turns them into an AuthProvider. */
export type FhirAuth =
  | { type: 'none' }
  | { type: 'bearer'; token: string }
  | { type: 'basic'; username: string; password: string }
  | SmartAuth;

export function createAuthProvider(auth: FhirAuth, context: SmartAuthContext): AuthProvider {
  switch (auth.type) {
    case 'none':
      return noAuth();
    case 'bearer':
      return bearerAuth(auth.token);
    case 'basic':
      return basicAuth(auth.username, auth.password);
    case 'smart': {
      const { type: _type, ...options } = auth;
      return new SmartBackendAuth(options, context);
    }
  }
}

export function isAuthProvider(value: unknown): value is AuthProvider {
  const v = value as Partial<AuthProvider> | null;
  return !!v && typeof v === 'object' && typeof v.headers === 'function' && typeof v.refresh === 'function' && typeof v.kind === 'string';
}
