import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import { systemClock, type Clock } from '../../core/clock.js';
import { AdapterError, toAdapterError } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/log.js';
import { writeModeOf, type ServiceConfig } from '../../config/sources.js';
import { CdsHooksStore } from '../../db/cds-hooks.js';
import type { Database } from '../../db/database.js';
import type { MapContext } from '../../features/index.js';
import { scoreBatch, type BatchEntry } from '../../sync/batch.js';
import type { SyncModel } from '../../sync/models.js';
import { pullSpecFor } from '../../sync/pull-step.js';
import { defaultMapContext } from '../../sync/run.js';
import { riskCard, type CardFacts } from './cards.js';
import { createCdsClientVerifier } from './client-auth.js';
import { cdsCors } from './cors.js';
import { gatherRecord, PreconditionFailed, prefetchQueries, prefetchTemplates, requestFhirClient } from './prefetch.js';
import { proposalSuggestions } from './suggestions.js';
import { feedbackSchema, hookRequestSchema, hookResponseSchema, type Card } from './schema.js';

/**
 * CDS Hooks 2.0 on the API: discovery at GET /cds-services, one `patient-view` service per model at
 * POST /cds-services/{model id}, and its feedback endpoint. Every request is authenticated by the EHR's
 * signed JWT (client-auth.ts), with `aud` the URL of the endpoint called. A service call scores the
 * patient with the same batch step as a sync (mapping, intended-use and applicability gates, model,
 * explanation), as a dry run: nothing is written to the chart. Cards are checked against the spec's
 * format before they leave; cards and feedback are recorded by id (src/db/cds-hooks.ts). Logs carry the
 * service, the issuer, counts and outcomes: never the patient id, prefetch data or tokens.
 */

export interface CdsHooksDeps {
  db: Database;
  config: ServiceConfig;
  modelsFor(modelIds: string[]): Promise<SyncModel[]>;
  identifierSystem: string;
  /** The adapter's `sync.shadow` and `sync.carePlans`, for EHRs no source names (a source's own options win). */
  sync: { shadow: boolean; carePlans: boolean };
  mapContext?: MapContext;
  clock?: Clock;
  logger?: Logger;
}

const HOOK = 'patient-view';

export function mountCdsHooks(app: Express, deps: CdsHooksDeps): void {
  const cds = deps.config.cdsHooks;
  if (!cds) return;
  const logger = (deps.logger ?? silentLogger).child({ component: 'cds-hooks' });
  const clock = deps.clock ?? systemClock;
  const store = new CdsHooksStore(deps.db);
  const verify = createCdsClientVerifier(cds, { jwtIds: store, clock });
  const mapContext = deps.mapContext ?? defaultMapContext();
  const modelIds = cds.models ?? [...new Set(deps.config.sources.flatMap((s) => s.models))];
  const endpoint = `${cds.baseUrl}/cds-services`;
  const consoleBase = cds.consoleUrl ?? cds.baseUrl;

  const router = express.Router();
  router.use('/cds-services', cdsCors(cds.corsOrigins));
  router.use(express.json({ limit: deps.config.api.bodyLimit, type: ['application/json', 'application/fhir+json'] }));

  router.get('/cds-services', async (req, res) => {
    const client = await verify(req.get('authorization'), [endpoint]);
    const models = await deps.modelsFor(modelIds);
    const asOf = clock.now();
    const services = models.map((m) => {
      const card = m.runner.card;
      return {
        hook: HOOK,
        id: card.id,
        title: card.name,
        description: `${card.description} Returns the risk, its band and rationale, and whether the model applies to the patient; writes nothing to the chart.`,
        prefetch: prefetchTemplates(prefetchQueries(pullSpecFor([m], asOf))),
        usageRequirements: card.intendedUse,
      };
    });
    logger.info({ issuer: client.issuer, services: services.length }, 'cds discovery');
    res.json({ services });
  });

  router.post('/cds-services/:id', async (req, res) => {
    const serviceId = String(req.params.id);
    if (!modelIds.includes(serviceId)) throw new AdapterError('not-found', `no CDS service "${serviceId.slice(0, 64)}"`);
    const client = await verify(req.get('authorization'), [`${endpoint}/${serviceId}`]);
    const parsed = hookRequestSchema.safeParse(req.body);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`);
      throw new AdapterError('input-invalid', `not a CDS Hooks request: ${problems.join('; ')}`, { details: { problems } });
    }
    const request = parsed.data;
    if (request.hook !== HOOK) throw new AdapterError('input-invalid', `service ${serviceId} answers the ${HOOK} hook, not ${request.hook.slice(0, 40)}`);

    const [model] = await deps.modelsFor([serviceId]);
    const asOf = clock.now();
    const queries = prefetchQueries(pullSpecFor([model], asOf));
    const patientId = request.context.patientId;
    const fhir = requestFhirClient({ fhirServer: request.fhirServer, accessToken: request.fhirAuthorization?.access_token, client: client.client, timeoutMs: cds.fetchTimeoutMs, logger });
    const gathered = await gatherRecord(queries, { patientId, prefetch: request.prefetch as Record<string, { resourceType: string } | null> | undefined, fhir });
    const scored = await scoreBatch([patientId], gathered.pull, {
      models: [model],
      asOf,
      identifierSystem: deps.identifierSystem,
      explain: true,
      mapContext,
      recorded: asOf,
    });
    const entry = scored.entries.find((e) => e.modelId === serviceId);
    const cards: (Card & { uuid: string })[] = [];
    // The sources of this EHR and model: a source in shadow mode (silent validation) shows clinicians
    // nothing here either, and one without CarePlan proposals gets no suggestions.
    const sources = request.fhirServer
      ? deps.config.sources.filter((s) => s.baseUrl.replace(/\/+$/, '') === request.fhirServer!.replace(/\/+$/, '') && s.models.includes(serviceId))
      : [];
    const modes = sources.length ? sources.map((s) => writeModeOf(s, deps.sync)) : [deps.sync];
    const shadow = modes.some((m) => m.shadow);
    const carePlans = modes.every((m) => m.carePlans);
    if (entry?.status === 'scored' && entry.prediction && !shadow) {
      const outcomeId = await store.latestOutcomeId(sources.map((s) => s.id), patientId, serviceId);
      let proposals: Awaited<ReturnType<typeof proposalSuggestions>>;
      try {
        proposals = carePlans ? await proposalSuggestions(entry, model, { fhir, asOf, identifierSystem: deps.identifierSystem }) : { suggestions: [] };
      } catch (err) {
        // The score stands without proposals when the patient's care cannot be read.
        logger.warn({ service: serviceId, code: toAdapterError(err).code }, 'cds care plan proposals unavailable');
        proposals = { suggestions: [], note: 'The patient\'s current care could not be read; no care plan was proposed.' };
      }
      cards.push(
        riskCard({
          card: model.runner.card,
          prediction: entry.prediction,
          asOf,
          ...cardFactsOf(entry),
          ...(proposals.suggestions.length ? { suggestions: proposals.suggestions } : {}),
          ...(proposals.note ? { proposalNote: proposals.note } : {}),
          ...(outcomeId ? { consoleUrl: `${consoleBase}/console/#/outcomes/${outcomeId}` } : {}),
        }),
      );
    }
    const response = hookResponseSchema.parse({ cards });
    await store.recordCards(
      cards.map((c) => ({
        uuid: c.uuid,
        serviceId,
        hookInstance: request.hookInstance.slice(0, 100),
        modelId: serviceId,
        modelVersion: model.runner.card.version,
        patientId,
        band: entry?.prediction?.band,
        probability: entry?.prediction?.probability,
        suggestionIds: (c.suggestions ?? []).map((s) => s.uuid!).filter(Boolean),
        issuer: client.issuer,
      })),
    );
    logger.info(
      { service: serviceId, issuer: client.issuer, status: entry?.status ?? 'not-found', reason: entry?.reason, shadow, prefetched: gathered.prefetched, fetched: gathered.fetched, cards: cards.length },
      'cds patient-view',
    );
    res.json(response);
  });

  router.post('/cds-services/:id/feedback', async (req, res) => {
    const serviceId = String(req.params.id);
    if (!modelIds.includes(serviceId)) throw new AdapterError('not-found', `no CDS service "${serviceId.slice(0, 64)}"`);
    const client = await verify(req.get('authorization'), [`${endpoint}/${serviceId}/feedback`, `${endpoint}/${serviceId}`]);
    const parsed = feedbackSchema.safeParse(req.body);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`);
      throw new AdapterError('input-invalid', `not CDS Hooks feedback: ${problems.join('; ')}`, { details: { problems } });
    }
    const known = await store.recordFeedback(
      parsed.data.feedback.map((f) => ({
        serviceId,
        card: f.card,
        outcome: f.outcome,
        acceptedSuggestions: (f.acceptedSuggestions ?? []).map((s) => s.id),
        ...(f.overrideReason?.reason ? { overrideReason: { system: f.overrideReason.reason.system, code: f.overrideReason.reason.code } } : {}),
        hasComment: !!f.overrideReason?.userComment,
        outcomeAt: new Date(f.outcomeTimestamp),
        issuer: client.issuer,
      })),
    );
    logger.info(
      { service: serviceId, issuer: client.issuer, accepted: parsed.data.feedback.filter((f) => f.outcome === 'accepted').length, overridden: parsed.data.feedback.filter((f) => f.outcome === 'overridden').length, unknownCards: known.filter((k) => !k).length },
      'cds feedback',
    );
    res.json({});
  });

  router.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (!(err instanceof PreconditionFailed)) return next(err);
    logger.warn({ reason: err.message }, 'cds data unavailable');
    res
      .status(412)
      .type('application/fhir+json')
      .send(JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'processing', details: { text: `Cannot evaluate: ${err.message}` } }] }));
  });
  app.use(router);
}

/** What the batch step says about an entry beyond its prediction: the applicability, rationale, imputed inputs. */
function cardFactsOf(entry: BatchEntry): Pick<CardFacts, 'applicability' | 'rationale' | 'imputed'> {
  const row = entry.row!;
  const rationale = entry.prediction?.rationale?.text;
  return {
    imputed: row.columns.filter((_c, i) => row.imputed[i]),
    ...(entry.applicability ? { applicability: entry.applicability } : {}),
    ...(rationale ? { rationale } : {}),
  };
}
