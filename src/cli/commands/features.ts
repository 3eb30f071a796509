import type { Command } from 'commander';
import { AdapterError } from '../../core/errors.js';
import { parseAsOf } from '../../core/time.js';
import type { FeatureRow } from '../../core/types.js';
import { describeTransforms, valueColumns, type FeatureSpec } from '../../features/index.js';
import { assessPatient, pullStep } from '../../sync/index.js';
import { commandContext, invocationError, parsePatientIds } from '../context.js';
import { stdout } from '../output.js';
import { table } from '../summary.js';

/**
 * `fhir-ml features`: what a model would see for one patient, without scoring or writing anything: whether
 * the model may score the patient at all (its intended-use gate: alive, active record, age, sex,
 * required and excluding conditions), each feature's measured value in its unit (or why it is missing),
 * what the transforms make of it, the model input columns, and every fetched resource (Conditions
 * included) with what happened to it. For integrators checking a mapping against their server's data.
 * Pulls and gates exactly as `sync` does (its pull step and patient assessment).
 */
export function registerFeaturesCommand(program: Command): void {
  program
    .command('features')
    .description("Show one patient's features for a model (values, units, transforms, imputations, used and excluded resources); writes nothing")
    .option('--fhir-url <url>', 'FHIR R4 base URL (or FHIR_ML_FHIR_URL)')
    .requiredOption('--model <id>', 'model id (see `fhir-ml models list`)')
    .requiredOption('--patient <id>', 'patient id (123 or Patient/123)')
    .option('--as-of <date>', 'as of this dateTime, or date (its end, UTC; today: now) (default: now)')
    .option('--json', 'print the feature row as JSON')
    .action(async (opts: { fhirUrl?: string; model: string; patient: string; asOf?: string; json?: boolean }) => {
      const usage: string[] = [];
      const { ids, problems } = parsePatientIds([opts.patient]);
      usage.push(...problems);
      let asOf: Date | undefined;
      try {
        asOf = parseAsOf(opts.asOf);
      } catch (err) {
        usage.push((err as Error).message);
      }
      if (usage.length || !asOf) throw invocationError(usage, []);
      const patientId = ids[0];
      const app = commandContext({ fhirUrl: opts.fhirUrl });
      try {
        const client = app.fhirClient();
        const [model] = await app.models([opts.model]);
        const pull = await pullStep([model], asOf, app.logger)(client, [patientId]);
        const record = pull.records.get(patientId);
        if (!record) throw new AdapterError('not-found', `patient ${patientId} not found on the server`);
        const assessed = assessPatient(model, record, asOf, app.mapContext);
        const row = assessed.row;
        const features = model.mapping.features.map((f) => featureView(f, row));
        const intendedUse = assessed.intendedUse.eligible
          ? { eligible: true, evidence: assessed.evidence }
          : { eligible: false, reason: assessed.intendedUse.reason, detail: assessed.intendedUse.detail };
        if (opts.json) {
          stdout.write(JSON.stringify({ ...row, values: Array.from(row.values), intendedUse, features }, null, 2) + '\n');
          return;
        }
        const out: string[] = [`${model.mapping.id} ${model.mapping.version} for Patient/${patientId} as of ${asOf.toISOString()}`];
        out.push(assessed.skip ? `NOT SCORED: ${assessed.skip.reason}${assessed.skip.detail ? ` (${assessed.skip.detail})` : ''}` : 'scorable');
        if (assessed.intendedUse.eligible && assessed.evidence.length) out.push(`intended use met by ${assessed.evidence.join(', ')}`);
        out.push('');
        out.push(
          table(
            ['feature', 'measured', 'unit', 'transforms', 'after transforms', 'input'],
            features.flatMap((v) =>
              v.columns.map((c) => [c.column, c.measured === null ? 'missing' : String(round(c.measured)), v.unit ?? '', v.transforms, c.transformed === undefined ? '' : String(round(c.transformed)), v.input ? 'yes' : 'no']),
            ),
          ),
        );
        out.push('');
        out.push(table(['model input', 'value', 'imputed'], row.columns.map((c, i) => [c, String(round(row.values[i])), row.imputed[i] ? 'yes' : ''])));
        out.push('');
        out.push(`fetched ${row.counts.fetched} = used ${row.counts.used} + excluded ${row.counts.excluded}`);
        for (const ref of row.basis) out.push(`  used      ${ref}`);
        for (const e of row.exclusions) out.push(`  excluded  ${e.reference}  ${e.reason}${e.featureId ? ` (${e.featureId})` : ''}${e.detail ? `: ${e.detail}` : ''}`);
        for (const e of row.partIssues) out.push(`  part      ${e.reference}  ${e.reason}${e.detail ? `: ${e.detail}` : ''}`);
        stdout.write(out.join('\n') + '\n');
      } finally {
        await app.close();
      }
    });
}

/** One feature as shown: the measured value in the feature's unit, and what its transforms make of it. */
interface FeatureView {
  id: string;
  /** The unit of the measured value (before transforms). */
  unit?: string;
  /** The transforms applied to it, in order (empty: none). */
  transforms: string;
  input: boolean;
  columns: { column: string; measured: number | null; transformed?: number }[];
}

function featureView(f: FeatureSpec, row: FeatureRow): FeatureView {
  const columns = valueColumns(f).map((column) => {
    const measured = row.raw[column] ?? null;
    // The model's own column value, when the measured value reached it untouched by imputation.
    const i = row.columns.indexOf(column);
    const transformed = f.transforms.length && i >= 0 && !row.imputed[i] && measured !== null ? row.values[i] : undefined;
    return { column, measured, ...(transformed === undefined ? {} : { transformed }) };
  });
  return { id: f.id, ...(f.unit ? { unit: f.unit } : {}), transforms: describeTransforms(f), input: f.input, columns };
}

function round(v: number): number {
  return Math.round(v * 1e4) / 1e4;
}
