import path from 'node:path';
import type { Express } from 'express';
import type { Logger } from '../core/log.js';
import type { ServiceConfig } from '../config/sources.js';
import { publicJwks } from '../fhir/auth/index.js';

/**
 * GET /.well-known/jwks.json: the adapter's public keys (no authentication), so an EHR can register the
 * adapter for SMART Backend Services by JWKS URL: the key of every source authenticating with SMART, and
 * any extra key (`service.jwks.keys`, e.g. the next key of a rotation). Built from the private key files
 * at start (only the public halves leave the process); a key that cannot be read fails the route with
 * the file named, never the key.
 */
export function mountJwks(app: Express, deps: { config: ServiceConfig; logger: Logger }): void {
  const baseDir = deps.config.file ? path.dirname(path.resolve(deps.config.file)) : process.cwd();
  const keys: { privateKeyFile: string; kid?: string; alg?: 'RS384' | 'ES384' }[] = [...deps.config.jwks.keys];
  for (const source of deps.config.sources) {
    if (source.auth.type !== 'smart') continue;
    const s = (source.auth as { settings?: Record<string, unknown> }).settings ?? (source.auth as unknown as Record<string, unknown>);
    if (typeof s.privateKeyFile !== 'string') continue;
    keys.push({
      privateKeyFile: path.resolve(baseDir, s.privateKeyFile),
      ...(typeof s.kid === 'string' ? { kid: s.kid } : {}),
      ...(s.alg === 'RS384' || s.alg === 'ES384' ? { alg: s.alg } : {}),
    });
  }
  let jwks: Promise<{ keys: object[] }> | undefined;
  app.get('/.well-known/jwks.json', async (_req, res, next) => {
    try {
      jwks ??= publicJwks(keys);
      const body = await jwks;
      res.set('Cache-Control', 'public, max-age=300').type('application/json').send(JSON.stringify(body));
    } catch (err) {
      jwks = undefined; // a key file fixed later is picked up on the next request
      deps.logger.error({ route: '/.well-known/jwks.json' }, 'public keys unavailable');
      next(err);
    }
  });
}
