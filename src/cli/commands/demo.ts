import type { Command } from 'commander';
import { startServiceForFhirServer } from '../../api/service.js';
import type { App } from '../../app.js';
import { EXIT_OK, EXIT_PARTIAL } from '../../core/error-mapping.js';
import { AdapterError } from '../../core/errors.js';
import { RunStore, type RunRow } from '../../db/runs.js';
import { DEMO_MODELS, runDemo, type DemoRun } from '../../demo/demo.js';
import { DEMO_AS_OF } from '../../demo/seed.js';
import { formatShowcase } from '../../demo/showcase.js';
import { commandContext } from '../context.js';
import { stdout } from '../output.js';
import { formatSyncSummary } from '../summary.js';
import { untilStopped } from './serve.js';

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('Start the embedded FHIR server, seed demo patients, score them all, write back and print a summary')
    .option('--serve', 'then keep the demo FHIR server, the API and the web console running (until Ctrl-C) and print their URLs and a session API key')
    .option('--port <n>', 'with --serve: port of the API and console (default 8787; 0 picks a free one)', '8787')
    .action(async (opts: DemoOptions) => {
      process.exitCode = await demoCommand(opts);
    });
}

interface DemoOptions {
  serve?: boolean;
  port?: string;
}

export async function demoCommand(opts: DemoOptions = {}): Promise<number> {
  const port = Number(opts.port ?? 8787);
  if (opts.serve && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new AdapterError('input-invalid', `--port ${opts.port} is not a port number`);
  const app = commandContext();
  try {
    stdout.write(`Starting the embedded FHIR server and seeding demo patients (as-of ${DEMO_AS_OF.toISOString()}) ...\n`);
    const demo = await runDemo(app);
    try {
      const extra = demo.result.patients - demo.rows.length;
      stdout.write(
        `Seeded ${demo.result.patients} patients (${demo.rows.length} from the diabetes data set, ${extra} more that show what the safety gates refuse or flag; ${demo.seeded} resources) into ${demo.server.url}\n\n`,
      );
      stdout.write(formatSyncSummary(demo.result) + '\n\n');
      stdout.write(formatShowcase(demo.result, demo.showcase) + '\n');
      if (opts.serve) await serveDemo(app, demo, port);
    } finally {
      await demo.server.close();
    }
    return demo.result.failed > 0 ? EXIT_PARTIAL : EXIT_OK;
  } finally {
    await app.close();
  }
}

/**
 * `demo --serve`: the service (API, console, worker; an embedded database in memory) over the demo's
 * FHIR server. The console shows the service's runs, so the demo population goes through the service once
 * at the demo's as-of: a full run whose RiskAssessments are the ones the demo just wrote (found by their
 * identifiers, not written again). Then the URLs and the session's API key are printed and everything
 * keeps running until SIGINT or SIGTERM.
 */
async function serveDemo(app: App, demo: DemoRun, port: number): Promise<void> {
  stdout.write('\nStarting the API and the web console on the demo data (their database lives in memory for this session) ...\n');
  const service = await startServiceForFhirServer({ fhirUrl: demo.server.url, models: DEMO_MODELS, app, port });
  try {
    const response = await fetch(`${service.url}/sources/demo/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${service.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ asOf: DEMO_AS_OF.toISOString(), full: true }),
    });
    if (response.status !== 202) throw new AdapterError('internal', `the demo service refused its run (HTTP ${response.status})`);
    const { run } = (await response.json()) as { run: RunRow };
    const runs = new RunStore(service.db);
    let done: RunRow | undefined;
    while (!(done = await runs.get(run.id)) || (done.state !== 'succeeded' && done.state !== 'failed')) await new Promise((r) => setTimeout(r, 250));
    stdout.write(
      [
        `The service ran the demo population as run ${done.id}: ${done.state}, ${done.patientsTotal} patients in ${done.batchesTotal} batches.`,
        '',
        'Serving the demo (Ctrl-C stops it):',
        `  FHIR server  ${demo.server.url}`,
        `  API          ${service.url}   (Authorization: Bearer <API key>)`,
        `  Console      ${service.consoleUrl}   (sign in with the API key)`,
        `  API key      ${service.apiKey}   (generated for this session)`,
        '',
      ].join('\n'),
    );
    await untilStopped(async (signal) => {
      stdout.write(`fhir-ml demo: ${signal}, stopping\n`);
      await service.stop({ graceSeconds: 5 });
    }, app.logger);
  } catch (err) {
    await service.stop({ graceSeconds: 1 }).catch(() => undefined);
    throw err;
  }
}
