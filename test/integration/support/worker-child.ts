/**
 * A worker process for the crash test: it runs batches for real, and after its first batch has written
 * its RiskAssessments (before the batch is recorded as done) it says so on stdout and hangs, waiting to
 * be killed with SIGKILL.
 */
import { startService } from '../../../src/api/service.js';
import { FhirClient } from '../../../src/fhir/client.js';
import { createModelCache, createSyncExecutor } from '../../../src/jobs/sync-executor.js';
import { ADAPTER, serviceConfig } from './service.js';

const databaseUrl = process.env.TEST_DATABASE_URL!;
const fhirUrl = process.env.TEST_FHIR_URL!;
const config = serviceConfig(fhirUrl, { databaseUrl, service: { worker: { heartbeatSeconds: 1, heartbeatTimeoutSeconds: 5, retryLimit: 3, retryDelaySeconds: 1, pollingIntervalSeconds: 0.5, batchConcurrency: 1 } } });
const client = new FhirClient({ baseUrl: fhirUrl });
const real = createSyncExecutor({ clientFor: () => client, modelsFor: createModelCache(ADAPTER), identifierSystem: ADAPTER.identifierSystem });
let first = true;
await startService({
  config,
  adapter: ADAPTER,
  mode: 'worker',
  executor: async (input) => {
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
