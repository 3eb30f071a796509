import type { Command } from 'commander';
import { validateMappingsCommand } from '../../features/index.js';
import { listModels } from '../../models/index.js';
import { commandContext } from '../context.js';
import { table } from '../summary.js';

export function registerCatalogCommands(program: Command): void {
  const mappings = program.command('mappings').description('Work with feature mappings');
  mappings
    .command('validate')
    .description('Validate every mapping file; errors name the file and the path of the bad field')
    .option('--dir <dir>', 'mappings directory (default: the bundled mappings/ or FHIR_ML_MAPPINGS_DIR)')
    .action((opts: { dir?: string }) => {
      const ctx = commandContext();
      const result = validateMappingsCommand(opts.dir ?? ctx.config.mappingsDir);
      for (const f of result.files) {
        process.stdout.write(`${f.errors.length ? 'FAIL' : 'ok  '} ${f.file}\n`);
        for (const e of f.errors) process.stdout.write(`     ${e}\n`);
      }
      const bad = result.files.filter((f) => f.errors.length).length;
      process.stdout.write(`${result.files.length} mapping file(s), ${bad} invalid\n`);
      process.exitCode = bad ? 65 : 0;
    });

  const models = program.command('models').description('Work with models');
  models
    .command('list')
    .description('List the installed models with version, outcome, horizon and evaluation')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }) => {
      const ctx = commandContext();
      const list = await listModels(ctx.config.modelsDir);
      if (opts.json) {
        process.stdout.write(JSON.stringify(list, null, 2) + '\n');
        return;
      }
      process.stdout.write(
        table(
          ['id', 'version', 'inputs', 'outcome', 'horizon', 'status'],
          list.map((m) => [m.id, m.version ?? '', m.columns ?? '', truncate(m.outcome ?? '', 60), m.horizon ?? '', m.error ? `INVALID: ${m.error}` : 'ok']),
        ) + '\n',
      );
    });
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
