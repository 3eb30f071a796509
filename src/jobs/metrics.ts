import client from 'prom-client';
import type { Database } from '../db/database.js';
import type { ExchangeEvent } from '../fhir/client.js';

/**
 * The service's Prometheus metrics, on a registry of its own (several services in one process, as in
 * tests, do not collide). Counters count what this process did; the queue gauges are read from the
 * database at scrape time, so any API process reports the whole queue. Labels carry source ids, model
 * ids, statuses, reason and error codes, operation names and resource types: never patient ids.
 */
export interface ServiceMetrics {
  registry: client.Registry;
  runsFinished: client.Counter<'source' | 'state'>;
  runTriggers: client.Counter<'source' | 'result'>;
  patients: client.Counter<'model' | 'status' | 'reason'>;
  batches: client.Counter<'result'>;
  batchDuration: client.Histogram<string>;
  fhirRequests: client.Counter<'source' | 'op' | 'resource_type' | 'outcome'>;
  fhirRetries: client.Counter<'source' | 'op' | 'resource_type'>;
  fhirLatency: client.Histogram<'source' | 'op' | 'resource_type'>;
}

export function createServiceMetrics(options: { db?: Database; queues?: () => string[]; defaultMetrics?: boolean } = {}): ServiceMetrics {
  const registry = new client.Registry();
  if (options.defaultMetrics !== false) client.collectDefaultMetrics({ register: registry, prefix: 'fhirml_' });
  const metrics: ServiceMetrics = {
    registry,
    runsFinished: new client.Counter({ name: 'fhirml_runs_total', help: 'Runs finished, by source and final state', labelNames: ['source', 'state'], registers: [registry] }),
    runTriggers: new client.Counter({
      name: 'fhirml_run_triggers_total',
      help: 'Run triggers (schedule, API), by whether a run started or one was already running',
      labelNames: ['source', 'result'],
      registers: [registry],
    }),
    patients: new client.Counter({
      name: 'fhirml_patients_total',
      help: 'Patient outcomes of completed batches, by model, status (scored, skipped, failed, not-found, unchanged) and reason',
      labelNames: ['model', 'status', 'reason'],
      registers: [registry],
    }),
    batches: new client.Counter({ name: 'fhirml_batches_total', help: 'Batch attempts, by result (succeeded, retried, failed)', labelNames: ['result'], registers: [registry] }),
    batchDuration: new client.Histogram({
      name: 'fhirml_batch_duration_seconds',
      help: 'Duration of successful batches',
      buckets: [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900],
      registers: [registry],
    }),
    fhirRequests: new client.Counter({
      name: 'fhirml_fhir_requests_total',
      help: 'FHIR HTTP attempts, by source, operation, resource type and outcome (ok, retry, failed)',
      labelNames: ['source', 'op', 'resource_type', 'outcome'],
      registers: [registry],
    }),
    fhirRetries: new client.Counter({
      name: 'fhirml_fhir_retries_total',
      help: 'FHIR HTTP attempts that failed and were retried (or replayed), by source, operation and resource type',
      labelNames: ['source', 'op', 'resource_type'],
      registers: [registry],
    }),
    fhirLatency: new client.Histogram({
      name: 'fhirml_fhir_request_duration_seconds',
      help: 'FHIR HTTP attempt latency, by source, operation and resource type',
      labelNames: ['source', 'op', 'resource_type'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
  };
  if (options.db) {
    const db = options.db;
    const rows = async () =>
      (
        await db.query<{ name: string; depth: number; active: number; oldest: number | null }>(
          `SELECT name, count(*) FILTER (WHERE state IN ('created', 'retry'))::int AS depth, count(*) FILTER (WHERE state = 'active')::int AS active,
             EXTRACT(EPOCH FROM now() - min(created_on) FILTER (WHERE state IN ('created', 'retry', 'active')))::float8 AS oldest
           FROM pgboss.job WHERE name NOT LIKE '\\_\\_pgboss%' GROUP BY name`,
        )
      ).rows;
    let cached: Promise<Awaited<ReturnType<typeof rows>>> | undefined;
    // One query per scrape for all three gauges.
    const snapshot = () => (cached ??= rows().finally(() => setTimeout(() => (cached = undefined), 0)));
    new client.Gauge({
      name: 'fhirml_queue_depth',
      help: 'Jobs waiting (created or retry) per queue',
      labelNames: ['queue'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const r of await snapshot().catch(() => [])) this.set({ queue: r.name }, Number(r.depth));
      },
    });
    new client.Gauge({
      name: 'fhirml_queue_active',
      help: 'Jobs being worked on per queue',
      labelNames: ['queue'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const r of await snapshot().catch(() => [])) this.set({ queue: r.name }, Number(r.active));
      },
    });
    new client.Gauge({
      name: 'fhirml_queue_oldest_job_age_seconds',
      help: 'Age of the oldest unfinished job per queue',
      labelNames: ['queue'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const r of await snapshot().catch(() => [])) if (r.oldest !== null) this.set({ queue: r.name }, Number(r.oldest));
      },
    });
  }
  return metrics;
}

/**
 * The FhirClient `onExchange` observer of one source's client: `app.fhirClientFor(source, { onExchange:
 * fhirExchangeRecorder(metrics, sourceId) })`. Every HTTP attempt (token requests of SMART auth too) is
 * counted with its outcome and latency. Events carry no URL, so nothing here can leak a query string.
 */
export function fhirExchangeRecorder(metrics: ServiceMetrics, sourceId: string): (event: ExchangeEvent) => void {
  return (e) => {
    const labels = { source: sourceId, op: e.op, resource_type: e.resourceType };
    metrics.fhirRequests.inc({ ...labels, outcome: e.outcome });
    if (e.outcome === 'retry') metrics.fhirRetries.inc(labels);
    metrics.fhirLatency.observe(labels, e.durationMs / 1000);
  };
}
