import type { Command } from 'commander';
import { EXIT_OK, EXIT_PARTIAL } from '../../core/error-mapping.js';
import { runDemo } from '../../demo/demo.js';
import { DEMO_AS_OF } from '../../demo/seed.js';
import { formatShowcase } from '../../demo/showcase.js';
import { commandContext } from '../context.js';
import { stdout } from '../output.js';
import { formatSyncSummary } from '../summary.js';

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('Start the embedded FHIR server, seed demo patients, score them all, write back and print a summary')
    .action(async () => {
      process.exitCode = await demoCommand();
    });
}

export async function demoCommand(): Promise<number> {
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
    } finally {
      await demo.server.close();
    }
    return demo.result.failed > 0 ? EXIT_PARTIAL : EXIT_OK;
  } finally {
    await app.close();
  }
}
