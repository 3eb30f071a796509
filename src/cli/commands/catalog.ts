import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { exitCodeFor } from '../../core/error-mapping.js';
import { AdapterError } from '../../core/errors.js';
import { toAdapterError } from '../../core/errors.js';
import { validateMappingsDir } from '../../features/index.js';
import { loadNlpRules } from '../../nlp/index.js';
import { commandContext } from '../context.js';
import { stdout } from '../output.js';
import { table } from '../summary.js';

/** Exit code of a catalog with an invalid entry: that of an invalid mapping or model (65). */
const EXIT_INVALID = exitCodeFor(new AdapterError('mapping-invalid', ''));

export function registerCatalogCommands(program: Command): void {
  const mappings = program.command('mappings').description('Work with feature mappings');
  mappings
    .command('validate')
    .description('Validate every mapping file and the NLP rules in nlp/; errors name the file and the path of the bad field')
    .option('--dir <dir>', 'mappings directory (default: the bundled mappings/ or FHIR_ML_MAPPINGS_DIR)')
    .action((opts: { dir?: string }) => {
      const app = commandContext();
      const dir = opts.dir ?? app.config.models.mappingsDir;
      const files = validateMappingsDir(dir);
      for (const f of files) {
        stdout.write(`${f.errors.length ? 'FAIL' : 'ok  '} ${f.file}\n`);
        for (const e of f.errors) stdout.write(`     ${e}\n`);
      }
      let bad = files.filter((f) => f.errors.length).length;
      // The NLP rules (findings lexicon, ConText rules, sections) live beside the mappings and are checked with them.
      const nlpDir = path.join(dir, 'nlp');
      let nlpLine = 'no NLP rules (nlp/) in this directory';
      if (existsSync(nlpDir)) {
        try {
          const rules = loadNlpRules(nlpDir);
          nlpLine = `NLP rules: ${rules.concepts.length} finding concepts`;
          stdout.write(`ok   ${nlpDir} (findings, context rules, sections)\n`);
        } catch (err) {
          bad++;
          nlpLine = 'NLP rules invalid';
          stdout.write(`FAIL ${nlpDir}\n     ${toAdapterError(err).message.split('\n').join('\n     ')}\n`);
        }
      }
      stdout.write(`${files.length} mapping file(s), ${bad} invalid; ${nlpLine}\n`);
      process.exitCode = bad ? EXIT_INVALID : 0;
    });

  const models = program.command('models').description('Work with models');
  models
    .command('list')
    .description('List the installed models with the checks sync runs (sha256, ONNX, tensor names, self-test, mapping): id, version, inputs, outcome, horizon, status')
    .option('--json', 'machine-readable output: an array of {id, version, name, inputs, outcome, horizon: {value, unit}, status, problem?: {code, message}}')
    .action(async (opts: { json?: boolean }) => {
      const app = commandContext();
      const list = await app.inspectModels();
      const invalid = list.filter((m) => m.status !== 'ok');
      process.exitCode = invalid.length ? EXIT_INVALID : 0;
      if (opts.json) {
        stdout.write(JSON.stringify(list, null, 2) + '\n');
        return;
      }
      stdout.write(
        table(
          ['id', 'version', 'inputs', 'outcome', 'horizon', 'status'],
          list.map((m) => [
            m.id,
            m.version ?? '',
            m.inputs ?? '',
            truncate(m.outcome ?? '', 60),
            readableHorizon(m.horizon),
            m.problem ? `INVALID: ${truncate(m.problem.message.split('\n')[0], 100)}` : 'ok',
          ]),
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
