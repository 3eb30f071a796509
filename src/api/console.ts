import { createRequire } from 'node:module';
import path from 'node:path';
import express, { type Express, type Request, type Response } from 'express';
import { packagePath } from '../core/paths.js';
import type { Logger } from '../core/log.js';
import type { ServiceConfig } from '../config/sources.js';
import type { SessionStore } from '../db/sessions.js';
import { addDuration, parseDuration } from '../core/time.js';
import { SESSION_COOKIE, cookieValue, type Authenticator } from './auth.js';

/**
 * The web console at /console: static HTML/CSS/JS modules (no build step) and Chart.js from
 * node_modules. A browser cannot send a bearer header when it navigates, so the console has a login
 * form: the API key is exchanged (POST, never in a URL) for a random session id in an HttpOnly,
 * SameSite=Strict cookie; the database keeps only its hash. The console's scripts then call the same API
 * routes with that cookie. Nothing in a console URL names a patient: runs and outcomes are addressed by
 * opaque ids (`#/runs/<uuid>`, `#/outcomes/<uuid>`).
 */
const ASSETS = packagePath('src', 'api', 'console');
const require = createRequire(import.meta.url);
const CHART_JS = path.join(path.dirname(require.resolve('chart.js')), 'chart.umd.min.js');

const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "form-action 'self'",
  "base-uri 'none'",
].join('; ');

export function mountConsole(app: Express, deps: { auth: Authenticator; sessions: SessionStore; config: ServiceConfig; logger: Logger }): void {
  const ttlMs = addDuration(new Date(0), parseDuration(deps.config.api.sessionTtl)).getTime();
  const secure = (req: Request) => deps.config.api.secureCookies === 'always' || (deps.config.api.secureCookies === 'auto' && req.secure);
  const router = express.Router();
  router.use((_req, res, next) => {
    res.set('Content-Security-Policy', CSP);
    res.set('Cache-Control', 'no-store');
    res.set('Referrer-Policy', 'no-referrer');
    next();
  });
  router.use(express.urlencoded({ extended: false, limit: '4kb' }));

  router.get('/login', (_req, res) => res.sendFile(path.join(ASSETS, 'login.html')));
  router.post('/login', async (req: Request, res: Response) => {
    const key = typeof req.body?.apiKey === 'string' ? req.body.apiKey.trim() : '';
    const name = key ? deps.auth.apiKey(key) : undefined;
    if (!name) {
      deps.logger.warn({ route: '/console/login' }, 'console login refused');
      res.redirect(303, '/console/login?failed=1');
      return;
    }
    const session = await deps.sessions.create(`key:${name}`, ttlMs);
    res.cookie(SESSION_COOKIE, session.id, { httpOnly: true, sameSite: 'strict', secure: secure(req), path: '/', expires: session.expiresAt });
    deps.logger.info({ principal: `key:${name}` }, 'console login');
    res.redirect(303, '/console/');
  });
  router.post('/logout', async (req, res) => {
    const id = cookieValue(req.get('cookie'), SESSION_COOKIE);
    if (id) await deps.sessions.delete(id);
    res.clearCookie(SESSION_COOKIE, { path: '/' });
    res.redirect(303, '/console/login');
  });
  router.get('/vendor/chart.umd.min.js', (_req, res) => res.sendFile(CHART_JS));
  // The page itself only for a live session; its data come from the API with the same cookie.
  router.get(['/', '/index.html'], async (req, res) => {
    const id = cookieValue(req.get('cookie'), SESSION_COOKIE);
    if (!id || !(await deps.sessions.principalOf(id))) {
      res.redirect(303, '/console/login');
      return;
    }
    res.sendFile(path.join(ASSETS, 'index.html'));
  });
  router.use(express.static(ASSETS, { index: false, dotfiles: 'ignore', extensions: false }));
  app.use('/console', router);
}
