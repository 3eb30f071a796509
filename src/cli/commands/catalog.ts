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
    .description('List the installed models: id, version, number of inputs, outcome, horizon and status (ok, or why the model cannot be used)')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }) => {
      const ctx = commandContext();
      const list = await listModels(ctx.config.modelsDir);
      if (opts.json) {
        process.stdout.write(JSON.stringify(list, null, 2) + '\n');
        process.exitCode = list.some((m) => m.error) ? 65 : 0;
        return;
      }
      process.stdout.write(
        table(
          ['id', 'version', 'inputs', 'outcome', 'horizon', 'status'],
          list.map((m) => [m.id, m.version ?? '', m.columns ?? '', truncate(m.outcome ?? '', 60), readableHorizon(m.horizon), m.error ? `INVALID: ${truncate(m.error.split('\n')[0], 100)}` : 'ok']),
        ) + '\n',
      );
      const invalid = list.filter((m) => m.error);
      for (const m of invalid) process.stderr.write(`fhir-ml: model ${m.id}: ${m.error}\n`);
      process.exitCode = invalid.length ? 65 : 0;
    });
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

const UCUM_TIME: Record<string, [string, string]> = { h: ['hour', 'hours'], d: ['day', 'days'], wk: ['week', 'weeks'], mo: ['month', 'months'], a: ['year', 'years'] };

/** `30 d` -> `30 days`, `1 a` -> `1 year` (cards state horizons in UCUM time units). */
function readableHorizon(horizon: string | undefined): string {
  const m = /^(\d+(?:\.\d+)?) (\w+)$/.exec(horizon ?? '');
  if (!m || !UCUM_TIME[m[2]]) return horizon ?? '';
  return `${m[1]} ${UCUM_TIME[m[2]][m[1] === '1' ? 0 : 1]}`;
}
