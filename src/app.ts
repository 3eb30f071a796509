import { existsSync } from 'node:fs';
import path from 'node:path';
import { loadConfig, type AdapterConfig, type ConfigOverrides, type FhirSourceConfig } from './config/index.js';
import { AdapterError } from './core/errors.js';
import { createLogger, type Logger } from './core/log.js';
import { FhirClient, type ExchangeEvent } from './fhir/client.js';
import { createMapContext, type MapContext as MapContext } from './features/index.js';
import { createNlpAnalyzer, defaultRulesDir, loadNlpRules, nlpRules } from './nlp/index.js';
import { inspectModels, prepareModel, type ModelStatus, type SyncModel } from './sync/models.js';

/**
 * The composition root: configuration -> logger, FHIR clients, models, the mapper's services. Built
 * once per process (a CLI command, later the service); commands, routes and job handlers take what
 * they need from it and stay thin. Models are loaded and checked once and cached by id.
 */
export interface App {
  readonly config: AdapterConfig;
  readonly logger: Logger;
  /** Services of the mapper (src/nlp's report analyzer). */
  readonly mapContext: MapContext;
  /** The client of the configured FHIR server (`fhir` section), built once. Throws when no URL is configured. */
  fhirClient(): FhirClient;
  /**
   * A client for one FHIR source: the `fhir` section or an entry of the service's sources file
   * (`fhirSourceOf`). Each call builds a new client; callers keep the ones they reuse.
   */
  fhirClientFor(source: FhirSourceConfig, options?: FhirClientExtras): FhirClient;
  /** Models with their mappings, loaded and checked once per id (see `prepareModel`). */
  models(ids: string[]): Promise<SyncModel[]>;
  /** Every installed model, checked as `models()` checks it. */
  inspectModels(): Promise<ModelStatus[]>;
  /** Releases the models' ONNX sessions. */
  close(): Promise<void>;
}

/** What a caller adds to a source's client. */
export interface FhirClientExtras {
  /** Observer of every HTTP attempt (the service's request metrics); never carries URLs. */
  onExchange?: (event: ExchangeEvent) => void;
}

export interface AppOptions {
  overrides?: ConfigOverrides;
  /** The environment to configure from (default: the process's). */
  env?: Record<string, string | undefined>;
  /** An already validated configuration (tests, or a service reloading sources). */
  config?: AdapterConfig;
  logger?: Logger;
}

export function createApp(options: AppOptions = {}): App {
  const config = options.config ?? loadConfig(options.overrides, options.env);
  const logger = options.logger ?? createLogger({ level: config.log.level });
  const mapContext = mapContextFor(config.models.mappingsDir);
  const dirs = { modelsDir: config.models.dir, mappingsDir: config.models.mappingsDir };
  const loaded = new Map<string, Promise<SyncModel>>();
  let client: FhirClient | undefined;
  let tracingWarned = false;

  const fhirClientFor = (source: FhirSourceConfig, extras: FhirClientExtras = {}): FhirClient => {
    if (!source.url) throw new AdapterError('input-invalid', 'no FHIR server given: use --fhir-url URL or FHIR_ML_FHIR_URL');
    if (config.log.fhirClientTracing && !tracingWarned) {
      tracingWarned = true;
      logger.warn('DEBUG enables fhir-kit-client tracing, which writes URLs, credentials and bodies to stderr');
    }
    return new FhirClient({
      baseUrl: source.url,
      auth: source.auth,
      timeoutMs: source.timeoutMs,
      maxRetries: source.maxRetries,
      concurrency: source.concurrency,
      backoff: source.backoff,
      maxRetryAfterMs: source.maxRetryAfterMs,
      logger,
      onExchange: extras.onExchange,
    });
  };

  return {
    config,
    logger,
    mapContext,
    fhirClient: () => (client ??= fhirClientFor(config.fhir)),
    fhirClientFor,
    async models(ids) {
      if (ids.length === 0) throw new AdapterError('input-invalid', 'no model given (use --model ID; `fhir-ml models list` shows them)');
      const unique = [...new Set(ids)];
      for (const id of unique) {
        if (!loaded.has(id)) {
          const p = prepareModel(id, dirs);
          loaded.set(id, p);
          p.catch(() => loaded.delete(id)); // a failed load is retried on the next call
        }
      }
      const out: SyncModel[] = [];
      for (const id of unique) out.push(await loaded.get(id)!); // the first problem in the order given
      return out;
    },
    inspectModels: () => inspectModels(dirs),
    async close() {
      const models = await Promise.allSettled(loaded.values());
      loaded.clear();
      await Promise.all(models.map((m) => (m.status === 'fulfilled' ? m.value.runner.close().catch(() => undefined) : undefined)));
    },
  };
}

/**
 * The mapper's services. The NLP rules live beside the mappings (`<mappingsDir>/nlp/`, the folder
 * `fhir-ml mappings validate` checks); a mappings folder without one uses the bundled rules.
 */
export function mapContextFor(mappingsDir: string): MapContext {
  const dir = path.resolve(mappingsDir, 'nlp');
  const bundled = !existsSync(dir) || dir === path.resolve(defaultRulesDir());
  const rules = bundled ? nlpRules() : loadNlpRules(dir);
  return createMapContext({ reportAnalyzer: createNlpAnalyzer(rules).analyzeReport });
}
