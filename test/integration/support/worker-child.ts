/**
 * A worker process for the crash tests: it runs batches for real, and after its first batch has written
 * its RiskAssessments (before the batch is recorded as done) it says so on stdout and hangs, waiting to
 * be killed with SIGKILL. TEST_SOURCE_PULL (JSON) sets the source's `pull:` (a bulk source's selection
 * step exports, and is killed there).
 */
import { startService } from '../../../src/api/service.js';
import { serviceConfig, testApp } from './service.js';

const databaseUrl = process.env.TEST_DATABASE_URL!;
const fhirUrl = process.env.TEST_FHIR_URL!;
const pull = process.env.TEST_SOURCE_PULL ? { pull: JSON.parse(process.env.TEST_SOURCE_PULL) as Record<string, unknown> } : {};
const config = serviceConfig(fhirUrl, {
  databaseUrl,
  service: { worker: { heartbeatSeconds: 1, heartbeatTimeoutSeconds: 5, retryLimit: 3, retryDelaySeconds: 1, pollingIntervalSeconds: 0.5, batchConcurrency: 1 } },
  source: pull,
});
let first = true;
await startService({
  config,
  app: testApp(),
  mode: 'worker',
  metricsListen: { port: 0 },
  wrapExecutor: (real) => async (input) => {
    const report = await real(input);
    if (first) {
      first = false;
      process.stdout.write(`BATCH_WRITTEN ${input.runId} ${input.batchSeq}\n`);
      await new Promise(() => undefined);
    }
    return report;
  },
  boss: { maintenanceIntervalSeconds: 1 },
});
process.stdout.write('WORKER_READY\n');
