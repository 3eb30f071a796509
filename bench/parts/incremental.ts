/**
 * Bench part: an incremental run against a full run, through the service (change scan, batch jobs on
 * pg-boss, the sync executor, the input hash), for 5,000 patients with 1% of them changed. Goal: the
 * incremental run takes at most 5% of the full run's time (printed as the ratio).
 *
 * The embedded FHIR server runs in its own process, seeded with the demo population (rows reused
 * cyclically, data as of the demo's as-of). The service (API and worker in one process, the default 2
 * batches at a time, 100 patients per batch) keeps its state on PostgreSQL (a fresh database on
 * DATABASE_URL's server or 127.0.0.1:5432) or, without one, on the embedded PGlite. Both runs score as of
 * the demo's as-of; the re-score interval is set beyond it, so only changes select patients. Then 1% of
 * the patients get a new glucose result and the incremental run is timed from the trigger to its end:
 * the scan of five resource types by `_lastUpdated` (and type history for deletions), the per-patient
 * score lookup, and the batches of the changed patients.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Observation } from 'fhir/r4.js';
import { startService, type RunningService } from '../../src/api/service.js';
import { createApp } from '../../src/app.js';
import { parseServiceConfig } from '../../src/config/sources.js';
import { RunStore, type RunRow } from '../../src/db/runs.js';
import { demoPatientId, DEMO_AS_OF, putTransaction } from '../../src/demo/seed.js';
import { seed, startServerProcess, stopServer } from '../lib.js';
import { freshPostgres, untilFinished, type BenchRow } from './jobs.js';

export interface IncrementalBenchOptions {
  patients?: number;
  /** Share of the patients changed before the incremental run (default 0.01). */
  changed?: number;
  log?: (line: string) => void;
}

export async function incrementalBench(options: IncrementalBenchOptions = {}): Promise<BenchRow[]> {
  const patients = options.patients ?? 5000;
  const changedCount = Math.max(1, Math.round(patients * (options.changed ?? 0.01)));
  const log = options.log ?? ((line: string) => console.log(line));
  const server = await startServerProcess();
  const postgres = await freshPostgres('incremental', log);
  const app = createApp({ env: { FHIR_ML_LOG_LEVEL: 'warn' } });
  let service: RunningService | undefined;
  try {
    const t0 = performance.now();
    const resources = await seed(server.url, patients);
    log(`seeded ${patients} patients (${resources} resources) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const apiKey = randomBytes(24).toString('base64url');
    const config = parseServiceConfig(
      {
        service: {
          apiKeys: [{ name: 'bench', sha256: createHash('sha256').update(apiKey).digest('hex') }],
          api: { port: 0 },
          database: { dataDir: 'memory://' },
        },
        // The data are as of the demo's as-of, long before now: a re-score interval shorter than that
        // would bring everyone back as stale.
        sources: [{ id: 'bench', baseUrl: server.url, models: ['diabetes-progression'], options: { batchSize: 100, overlap: 'PT0S', rescoreInterval: 'P10Y' } }],
      },
      { env: postgres ? { DATABASE_URL: postgres.url } : {} },
    );
    service = await startService({ config, app });
    const database = postgres ? 'PostgreSQL' : 'embedded PGlite';
    const runs = new RunStore(service.db);
    const timedRun = async (): Promise<{ run: RunRow; seconds: number }> => {
      const started = performance.now();
      const response = await fetch(`${service!.url}/sources/bench/runs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ asOf: DEMO_AS_OF.toISOString() }),
      });
      if (response.status !== 202) throw new Error(`the bench run was refused (HTTP ${response.status})`);
      const { run } = (await response.json()) as { run: RunRow };
      const done = await untilFinished(runs, run.id);
      if (done.state !== 'succeeded') throw new Error(`the bench run ${done.id} ended ${done.state} (${done.errorCode ?? ''})`);
      return { run: done, seconds: (performance.now() - started) / 1000 };
    };

    const full = await timedRun();
    const fullCounts = await runs.counts(full.run.id);
    log(
      `full run (${database}): ${full.run.patientsTotal} patients in ${full.run.batchesTotal} batches, ${full.seconds.toFixed(2)} s ` +
        `(${(full.run.patientsTotal / full.seconds).toFixed(0)} patients/s, ${fullCounts.requests} FHIR requests in batches)`,
    );

    // 1% of the patients, spread over the population, get a new glucose result before the as-of.
    const step = Math.floor(patients / changedCount);
    const changed = Array.from({ length: changedCount }, (_, i) => demoPatientId(i * step));
    // Values inside the model's training range: a value its out-of-distribution check refuses would be skipped, not scored.
    const glucose = changed.map(
      (id, i): Observation => ({
        resourceType: 'Observation',
        id: `${id}-glu-bench`,
        status: 'final',
        code: { coding: [{ system: 'http://loinc.org', code: '2339-0', display: 'Glucose [Mass/volume] in Blood' }] },
        subject: { reference: `Patient/${id}` },
        effectiveDateTime: new Date(DEMO_AS_OF.getTime() - 2 * 3_600_000).toISOString(),
        valueQuantity: { value: 95 + (i % 20), unit: 'mg/dL', system: 'http://unitsofmeasure.org', code: 'mg/dL' },
      }),
    );
    const posted = await fetch(server.url, { method: 'POST', headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(putTransaction(glucose)) });
    if (!posted.ok) throw new Error(`changing ${changedCount} patients failed (HTTP ${posted.status})`);

    const incremental = await timedRun();
    const counts = await runs.counts(incremental.run.id);
    log(
      `incremental run (${database}): ${incremental.run.mode}, ${incremental.run.patientsTotal} patients selected ` +
        `(${JSON.stringify(incremental.run.selection)}), ${incremental.seconds.toFixed(2)} s; outcomes ${JSON.stringify(counts.outcomes['diabetes-progression'])}`,
    );
    if (incremental.run.mode !== 'incremental' || incremental.run.patientsTotal !== changedCount) {
      throw new Error(`the incremental run selected ${incremental.run.patientsTotal} patients (${incremental.run.mode}), not the ${changedCount} changed`);
    }
    const ratio = incremental.seconds / full.seconds;
    log(`incremental / full: ${ratio.toFixed(4)} (goal <= 0.05)`);
    return [
      { name: `service full run, ${patients.toLocaleString('en-US')} patients (${database})`, value: full.seconds, unit: 's' },
      { name: `service incremental run, ${changedCount} of ${patients.toLocaleString('en-US')} patients changed (${database})`, value: incremental.seconds, unit: 's' },
      { name: 'incremental / full run time', value: ratio, unit: 'ratio', goal: '<= 0.05' },
    ];
  } finally {
    await service?.stop({ graceSeconds: 5 });
    await app.close();
    await postgres?.drop();
    await stopServer(server);
  }
}
