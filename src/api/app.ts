import { performance } from 'node:perf_hooks';
import express, { type Request, type Response } from 'express';
import type { Bundle } from 'fhir/r4.js';
import type PgBoss from 'pg-boss';
import { z } from 'zod';
import { parseAsOf } from '../core/time.js';
import { systemClock, type Clock } from '../core/clock.js';
import { AdapterError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { App } from '../app.js';
import { writeModeOf, type ServiceConfig, type SourceConfig } from '../config/sources.js';
import type { Database } from '../db/database.js';
import { isUuid, RunStore, type OutcomeStatus, type RunState } from '../db/runs.js';
import { SessionStore } from '../db/sessions.js';
import { WatermarkStore } from '../db/watermarks.js';
import type { FhirClient } from '../fhir/client.js';
import type { PullStrategyFactory } from '../fhir/strategy.js';
import type { ServiceMetrics } from '../jobs/metrics.js';
import { triggerRun } from '../jobs/trigger.js';
import { createAuthenticator, type Principal } from './auth.js';
import { mountCdsHooks } from './cds-hooks/index.js';
import { mountConsole } from './console.js';
import { mountJwks } from './jwks.js';
import { errorHandler, routeOf } from './errors.js';
import { patientDetail, scoreFromBundle, scoreFromSource } from './scoring.js';

/**
 * The service's HTTP API (express). Every route but /healthz needs a bearer API key, a bearer JWT of a
 * configured issuer, or a console session. Bodies are JSON, size-limited and validated with zod; errors
 * are OperationOutcomes. Logs name the route pattern, status, duration and principal: never the URL (it
 * can carry ids), the body or a token.
 */
export interface ApiDeps {
  db: Database;
  /** Needed to start runs; without it (tests of read-only routes) POST /sources/:id/runs answers 503. */
  boss?: PgBoss;
  config: ServiceConfig;
  /** The composition root: models (loaded once), the mapper's services, the identifier system. */
  app: Pick<App, 'config' | 'models' | 'inspectModels' | 'mapContext'>;
  clientFor(sourceId: string): FhirClient;
  /** How a source's patients are pulled (src/sync/pull-strategies.ts servicePullStrategy); search when absent. */
  pullStrategyFor?(sourceId: string): PullStrategyFactory;
  metrics: ServiceMetrics;
  /** Told when a run was queued here (a worker in this process takes it at once). */
  onRunQueued?: (sourceId: string) => void;
  logger?: Logger;
  clock?: Clock;
}

const runBody = z.strictObject({
  asOf: z.string().optional(),
  /** Ignore the watermarks and score the whole population. */
  full: z.boolean().optional(),
});

const predictBody = z.strictObject({
  source: z.string().optional(),
  patientId: z.string().regex(/^[A-Za-z0-9\-.]{1,64}$/, 'must be a FHIR id').optional(),
  bundle: z.looseObject({ resourceType: z.literal('Bundle') }).optional(),
  asOf: z.string().optional(),
  write: z.boolean().default(false),
});

/** Rules across predict's fields, checked on the raw body so they are reported with the schema's problems. */
function predictProblems(body: unknown): string[] {
  // express.json leaves no body for another content type: say so rather than fail on a missing field.
  if (body === undefined) return ['body: expected a JSON object (Content-Type: application/json or application/fhir+json)'];
  if (!body || typeof body !== 'object') return [];
  const b = body as Record<string, unknown>;
  const fromSource = b.source !== undefined || b.patientId !== undefined;
  const problems: string[] = [];
  if (fromSource && b.bundle !== undefined) problems.push('body: give either source + patientId or bundle, not both');
  if (!fromSource && b.bundle === undefined) problems.push('body: give source + patientId (score from the source) or bundle (score posted resources)');
  if (fromSource && (b.source === undefined || b.patientId === undefined)) problems.push('body: source and patientId go together');
  if (b.write === true && !fromSource) problems.push('body.write: write-back needs the patient from a source (a posted bundle is scored, never written)');
  return problems;
}

const listQuery = z.object({
  source: z.string().optional(),
  state: z.enum(['queued', 'selecting', 'running', 'succeeded', 'failed']).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  before: z.string().optional(),
});

const outcomeQuery = z.object({
  model: z.string().optional(),
  status: z.enum(['scored', 'skipped', 'failed', 'not-found', 'unchanged']).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  offset: z.coerce.number().int().min(0).default(0),
});

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string, more: string[] = []): T {
  const r = schema.safeParse(value ?? {});
  if (r.success && !more.length) return r.data;
  const problems = [...(r.success ? [] : r.error.issues.map((i) => `${what}${i.path.length ? `.${i.path.join('.')}` : ''}: ${i.message}`)), ...more];
  throw new AdapterError('input-invalid', problems.join('; '), { details: { problems } });
}

/** What is wrong with a body's `asOf` (none when absent or not a string: the schema names that), listed with the body's other problems. */
function asOfProblems(body: unknown, clock: Clock): string[] {
  const value = body && typeof body === 'object' ? (body as { asOf?: unknown }).asOf : undefined;
  if (typeof value !== 'string') return [];
  let asOf: Date;
  try {
    asOf = parseAsOf(value, clock.now());
  } catch {
    return [`body.asOf: "${value.slice(0, 40)}" is not a date (YYYY-MM-DD) or a dateTime with a time zone`];
  }
  return asOf.getTime() > clock.now().getTime() + 5 * 60_000 ? ['body.asOf: is in the future'] : [];
}

/** The as-of of a body already checked by `asOfProblems`. */
function asOfOf(value: string | undefined, clock: Clock): Date {
  return value === undefined ? clock.now() : parseAsOf(value, clock.now());
}

export function createApiApp(deps: ApiDeps): express.Express {
  const logger = (deps.logger ?? silentLogger).child({ component: 'api' });
  const clock = deps.clock ?? systemClock;
  const runs = new RunStore(deps.db);
  const watermarks = new WatermarkStore(deps.db);
  const sessions = new SessionStore(deps.db);
  const sources = new Map(deps.config.sources.map((s) => [s.id, s]));
  const identifierSystem = deps.app.config.sync.identifierSystem;
  const auth = createAuthenticator({ apiKeys: deps.config.apiKeys, jwtIssuers: deps.config.jwtIssuers, sessions });

  const app = express();
  app.disable('x-powered-by');
  if (deps.config.api.trustProxy) app.set('trust proxy', true);
  app.use((req, res, next) => {
    const started = performance.now();
    res.set('X-Content-Type-Options', 'nosniff');
    res.on('finish', () => {
      const principal = (res.locals.principal as Principal | undefined)?.id;
      logger.info({ method: req.method, route: routeOf(req), status: res.statusCode, ms: Math.round(performance.now() - started), principal }, 'api request');
    });
    next();
  });

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  // Public keys and CDS Hooks authenticate on their own terms (none; the EHR's signed JWT).
  mountJwks(app, { config: deps.config, logger });
  mountCdsHooks(app, { db: deps.db, config: deps.config, modelsFor: (ids) => deps.app.models(ids), identifierSystem, sync: deps.app.config.sync, mapContext: deps.app.mapContext, clock, logger });
  mountConsole(app, { auth, sessions, config: deps.config, logger });

  const api = express.Router();
  api.use(auth.middleware());
  api.use(express.json({ limit: deps.config.api.bodyLimit, type: ['application/json', 'application/fhir+json'] }));

  const sourceOf = (id: string): SourceConfig => {
    const source = sources.get(id);
    if (!source) throw new AdapterError('not-found', `no source "${id.slice(0, 40)}" in the sources file`);
    return source;
  };

  api.get('/readyz', async (_req, res) => {
    const checks: { name: string; ok: boolean; error?: string; ms: number }[] = [];
    const check = async (name: string, fn: () => Promise<unknown>) => {
      const t0 = performance.now();
      try {
        await fn();
        checks.push({ name, ok: true, ms: Math.round(performance.now() - t0) });
      } catch (err) {
        const e = err instanceof AdapterError ? `${err.code}: ${err.message}` : (err as Error).message;
        checks.push({ name, ok: false, error: e, ms: Math.round(performance.now() - t0) });
      }
    };
    await Promise.all([
      check('database', () => deps.db.query('SELECT 1')),
      ...deps.config.sources.map((s) => check(`source:${s.id}`, () => deps.clientFor(s.id).capabilities())),
    ]);
    const ok = checks.every((c) => c.ok);
    res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'not-ready', checks });
  });

  api.get('/metrics', async (_req, res) => {
    res.set('Content-Type', deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });

  api.get('/sources', async (_req, res) => {
    const out = [];
    for (const s of deps.config.sources) {
      const marks = await watermarks.get(s.id, s.models);
      const active = await runs.activeRun(s.id);
      out.push({
        id: s.id,
        name: s.name,
        models: s.models,
        population: s.population.type,
        schedule: s.schedule,
        rescoreInterval: s.options.rescoreInterval,
        watermarks: Object.fromEntries([...marks].map(([m, d]) => [m, d.toISOString()])),
        activeRunId: active?.id ?? null,
      });
    }
    res.json({ sources: out });
  });

  api.post('/sources/:id/runs', async (req, res) => {
    const source = sourceOf(String(req.params.id));
    const body = parse(runBody, req.body, 'body', asOfProblems(req.body, clock));
    if (!deps.boss) throw new AdapterError('fhir-unavailable', 'this API process cannot start runs (no job queue)', { transient: true });
    const result = await triggerRun({ db: deps.db, boss: deps.boss, runs }, source, { trigger: 'api', asOf: asOfOf(body.asOf, clock), full: body.full });
    deps.metrics.runTriggers.inc({ source: source.id, result: result.started ? 'started' : 'already-running' });
    if (!result.started) {
      throw new AdapterError('conflict', `source ${source.id} is already running (run ${result.activeRunId}); try again when it has finished`, { details: { activeRunId: result.activeRunId } });
    }
    deps.onRunQueued?.(source.id);
    res.status(202).location(`${req.baseUrl}/runs/${result.run.id}`).json({ run: result.run });
  });

  api.get('/sources/:id/trend', async (req, res) => {
    const source = sourceOf(String(req.params.id));
    const q = parse(z.object({ model: z.string(), limit: z.coerce.number().int().min(1).max(365).default(30) }), req.query, 'query');
    if (!source.models.includes(q.model)) throw new AdapterError('not-found', `source ${source.id} does not run model ${q.model.slice(0, 60)}`);
    res.json({ source: source.id, model: q.model, runs: await runs.trend(source.id, q.model, q.limit) });
  });

  api.get('/runs', async (req, res) => {
    const q = parse(listQuery, req.query, 'query');
    const items = await runs.list({ sourceId: q.source, state: q.state as RunState | undefined, limit: q.limit, before: q.before });
    const withCounts = await Promise.all(items.map(async (run) => ({ ...run, counts: await runs.counts(run.id) })));
    res.json({ runs: withCounts, next: items.length === q.limit ? items.at(-1)!.id : null });
  });

  api.get('/runs/:id', async (req, res) => {
    const id = String(req.params.id);
    const run = isUuid(id) ? await runs.get(id) : undefined;
    if (!run) throw new AdapterError('not-found', 'no such run');
    const q = parse(outcomeQuery, req.query, 'query');
    const [counts, batches, exclusions, distribution, outcomes] = await Promise.all([
      runs.counts(id),
      runs.batches(id),
      runs.exclusions(id),
      runs.distribution(id),
      runs.outcomes(id, { modelId: q.model, status: q.status as OutcomeStatus | undefined, limit: q.limit, offset: q.offset }),
    ]);
    const errors = batches.filter((b) => b.errorCode).map((b) => ({ batch: b.seq, state: b.state, attempts: b.attempts, code: b.errorCode, message: b.errorMessage }));
    if (run.errorCode) errors.unshift({ batch: -1, state: 'failed', attempts: 0, code: run.errorCode, message: run.errorMessage });
    res.json({ run, counts, batches, errors, exclusions, distribution, outcomes: { ...outcomes, limit: q.limit, offset: q.offset } });
  });

  api.get('/outcomes/:id', async (req, res) => {
    const outcome = await runs.outcome(String(req.params.id));
    if (!outcome) throw new AdapterError('not-found', 'no such outcome');
    const run = (await runs.get(outcome.runId))!;
    const source = sourceOf(run.sourceId);
    const [model] = await deps.app.models([outcome.modelId]);
    const detail = await patientDetail(deps.clientFor(source.id), model, {
      patientId: outcome.patientId,
      asOf: new Date(run.asOf),
      identifierSystem,
      mapContext: deps.app.mapContext,
      pullStrategy: deps.pullStrategyFor?.(source.id),
      logger: deps.logger,
    });
    res.json({ outcome, run: { id: run.id, sourceId: run.sourceId, asOf: run.asOf, state: run.state }, detail });
  });

  api.get('/models', async (_req, res) => {
    const used = new Set(deps.config.sources.flatMap((s) => s.models));
    const models = await deps.app.inspectModels();
    res.json({ models: models.map((m) => ({ ...m, usedBySources: deps.config.sources.filter((s) => s.models.includes(m.id)).map((s) => s.id), configured: used.has(m.id) })) });
  });

  api.post('/models/:id/predict', async (req, res) => {
    const modelId = String(req.params.id);
    const body = parse(predictBody, req.body, 'body', [...predictProblems(req.body), ...asOfProblems(req.body, clock)]);
    const asOf = asOfOf(body.asOf, clock);
    const [model] = await deps.app.models([modelId]);
    if (body.bundle) {
      res.json(await scoreFromBundle(model, body.bundle as unknown as Bundle, { asOf, identifierSystem, mapContext: deps.app.mapContext }));
      return;
    }
    const source = sourceOf(body.source!);
    res.json(
      await scoreFromSource(deps.clientFor(source.id), model, {
        patientId: body.patientId!,
        asOf,
        write: body.write,
        identifierSystem,
        mapContext: deps.app.mapContext,
        ...writeModeOf(source, deps.app.config.sync),
        pullStrategy: deps.pullStrategyFor?.(source.id),
        logger: deps.logger,
        clock,
      }),
    );
  });

  app.use(api);
  app.use((req: Request, _res: Response, next) => next(new AdapterError('not-found', `no route ${req.method} ${req.path.split('/').slice(0, 2).join('/')}`)));
  app.use(errorHandler(logger));
  return app;
}
