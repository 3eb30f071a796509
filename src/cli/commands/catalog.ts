import type { Command } from 'commander';
import { validateMappingsDir } from '../../features/index.js';
import { commandContext } from '../context.js';
import { table } from '../summary.js';

export function registerCatalogCommands(program: Command): void {
  const mappings = program.command('mappings').description('Work with feature mappings');
  mappings
    .command('validate')
    .description('Validate every mapping file; errors name the file and the path of the bad field')
    .option('--dir <dir>', 'mappings directory (default: the bundled mappings/ or FHIR_ML_MAPPINGS_DIR)')
    .action((opts: { dir?: string }) => {
      const app = commandContext();
      const files = validateMappingsDir(opts.dir ?? app.config.models.mappingsDir);
      for (const f of files) {
        process.stdout.write(`${f.errors.length ? 'FAIL' : 'ok  '} ${f.file}\n`);
        for (const e of f.errors) process.stdout.write(`     ${e}\n`);
      }
      const bad = files.filter((f) => f.errors.length).length;
      process.stdout.write(`${files.length} mapping file(s), ${bad} invalid\n`);
      process.exitCode = bad ? 65 : 0;
    });

  const models = program.command('models').description('Work with models');
  models
    .command('list')
    .description('List the installed models: id, version, number of inputs, outcome, horizon and status (ok, or why the model cannot be used)')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }) => {
      const app = commandContext();
      const list = await app.inspectModels();
      const invalid = list.filter((m) => m.status !== 'ok');
      process.exitCode = invalid.length ? 65 : 0;
      if (opts.json) {
        process.stdout.write(JSON.stringify(list, null, 2) + '\n');
        return;
      }
      process.stdout.write(
        table(
          ['id', 'version', 'inputs', 'outcome', 'horizon', 'status'],
          list.map((m) => [m.id, m.version ?? '', m.inputs ?? '', truncate(m.outcome ?? '', 60), readableHorizon(m.horizon), m.problem ? `INVALID: ${truncate(m.problem.message.split('\n')[0], 100)}` : 'ok']),
        ) + '\n',
      );
      for (const m of invalid) process.stderr.write(`fhir-ml: model ${m.id}: ${m.problem!.code}: ${m.problem!.message}\n`);
    });
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

const UCUM_TIME: Record<string, [string, string]> = { h: ['hour', 'hours'], d: ['day', 'days'], wk: ['week', 'weeks'], mo: ['month', 'months'], a: ['year', 'years'] };

/** `30 d` -> `30 days`, `1 a` -> `1 year` (cards state horizons in UCUM time units). */
function readableHorizon(horizon: { value: number; unit: string } | undefined): string {
  if (!horizon) return '';
  const names = UCUM_TIME[horizon.unit];
  return names ? `${horizon.value} ${names[horizon.value === 1 ? 0 : 1]}` : `${horizon.value} ${horizon.unit}`;
}
