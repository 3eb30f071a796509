import type { Command } from 'commander';
import { AdapterError } from '../../core/errors.js';
import { parseAsOf } from '../../core/time.js';
import { mapPatient, valueColumns } from '../../features/index.js';
import { pullStep } from '../../sync/index.js';
import { commandContext } from '../context.js';
import { table } from '../summary.js';

/**
 * `fhir-ml features`: what a model would see for one patient, without scoring or writing anything: each
 * feature's value in its unit (or why it is missing), the model input columns, and every fetched resource
 * with what happened to it. For integrators checking a mapping against their server's data.
 */
export function registerFeaturesCommand(program: Command): void {
  program
    .command('features')
    .description("Show one patient's features for a model (values, units, imputations, used and excluded resources); writes nothing")
    .option('--fhir-url <url>', 'FHIR R4 base URL (or FHIR_ML_FHIR_URL)')
    .requiredOption('--model <id>', 'model id (see `fhir-ml models list`)')
    .requiredOption('--patient <id>', 'patient id')
    .option('--as-of <date>', 'as of this date/dateTime (default: now)')
    .option('--json', 'print the feature row as JSON')
    .action(async (opts: { fhirUrl?: string; model: string; patient: string; asOf?: string; json?: boolean }) => {
      const asOf = parseAsOf(opts.asOf);
      const app = commandContext({ fhirUrl: opts.fhirUrl });
      const client = app.fhirClient();
      const [model] = await app.models([opts.model]);
      // The same pull step as sync.
      const pull = await pullStep([model], asOf, app.logger)(client, [opts.patient]);
      await app.close();
      const record = pull.records.get(opts.patient);
      if (!record) throw new AdapterError('not-found', `patient ${opts.patient} not found on the server`);
      const row = mapPatient(model.mapping, record, asOf, app.mapContext);
      if (opts.json) {
        process.stdout.write(JSON.stringify({ ...row, values: Array.from(row.values) }, null, 2) + '\n');
        return;
      }
      const out: string[] = [`${model.mapping.id} ${model.mapping.version} for Patient/${opts.patient} as of ${asOf.toISOString()}`];
      out.push(row.skipReason ? `NOT SCORED: ${row.skipReason}` : 'scorable');
      out.push('');
      out.push(
        table(
          ['feature', 'value', 'unit', 'input'],
          model.mapping.features.flatMap((f) => {
            return valueColumns(f).map((k) => [k, row.raw[k] === null || row.raw[k] === undefined ? 'missing' : String(round(row.raw[k]!)), f.unit ?? '', f.input ? 'yes' : 'no']);
          }),
        ),
      );
      out.push('');
      out.push(table(['model input', 'value', 'imputed'], row.columns.map((c, i) => [c, String(round(row.values[i])), row.imputed[i] ? 'yes' : ''])));
      out.push('');
      out.push(`fetched ${row.counts.fetched} = used ${row.counts.used} + excluded ${row.counts.excluded}`);
      for (const ref of row.basis) out.push(`  used      ${ref}`);
      for (const e of row.exclusions) out.push(`  excluded  ${e.reference}  ${e.reason}${e.featureId ? ` (${e.featureId})` : ''}${e.detail ? `: ${e.detail}` : ''}`);
      for (const e of row.partIssues) out.push(`  part      ${e.reference}  ${e.reason}${e.detail ? `: ${e.detail}` : ''}`);
      process.stdout.write(out.join('\n') + '\n');
    });
}

function round(v: number): number {
  return Math.round(v * 1e4) / 1e4;
}
