import type { Command } from 'commander';
import { AdapterError } from '../../core/errors.js';
import { defaultServiceConfig, loadServiceConfig, serviceEnvironment } from '../../config/sources.js';
import { openDatabase } from '../../db/database.js';
import { migrate } from '../../db/migrate.js';
import { RunStore, type BatchRow, type OutcomeRow, type RunCounts, type RunRow, type RunState } from '../../db/runs.js';
import { table } from '../summary.js';

/**
 * `fhir-ml runs list|show`: the run history, from the service's database (DATABASE_URL, or the embedded
 * one of the sources file, which only one process can open at a time), or from a running service's API
 * with `--api URL` (key in FHIR_ML_API_KEY or FHIR_ML_API_KEY_FILE).
 */
export function registerRunsCommand(program: Command): void {
  const runs = program.command('runs').description('Run history of the service: runs, batches, errors, per-patient outcomes');
  const common = (c: Command) =>
    c
      .option('--sources <file>', 'sources file (or FHIR_ML_SOURCES), for the embedded database directory')
      .option('--api <url>', 'read from a running service instead of the database (API key in FHIR_ML_API_KEY)')
      .option('--json', 'print JSON');
  common(runs.command('list').description('Recent runs, newest first'))
    .option('--source <id>', 'only this source')
    .option('--state <state>', 'only runs in this state (queued, selecting, running, succeeded, failed)')
    .option('--limit <n>', 'how many (default 20)', '20')
    .action(async (opts: ListOptions) => {
      process.exitCode = await runsList(opts);
    });
  common(runs.command('show').description('One run: counts, batches, errors and (with --outcomes) per-patient outcomes').argument('<run-id>'))
    .option('--outcomes', 'list the per-patient outcomes')
    .option('--limit <n>', 'outcomes per page (default 100)', '100')
    .option('--offset <n>', 'first outcome (default 0)', '0')
    .action(async (id: string, opts: ShowOptions) => {
      process.exitCode = await runsShow(id, opts);
    });
}

interface CommonOptions {
  sources?: string;
  api?: string;
  json?: boolean;
}
interface ListOptions extends CommonOptions {
  source?: string;
  state?: string;
  limit: string;
}
interface ShowOptions extends CommonOptions {
  outcomes?: boolean;
  limit: string;
  offset: string;
}

interface RunDetail {
  run: RunRow;
  counts: RunCounts;
  batches: BatchRow[];
  outcomes?: { total: number; items: OutcomeRow[] };
}

const STATES = ['queued', 'selecting', 'running', 'succeeded', 'failed'];

function positive(value: string, what: string, min = 1): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new AdapterError('input-invalid', `${what} must be an integer >= ${min}`);
  return n;
}

async function viaApi<T>(base: string, path: string): Promise<T> {
  const { apiKey } = serviceEnvironment();
  if (!apiKey) throw new AdapterError('input-invalid', '--api needs an API key in FHIR_ML_API_KEY or FHIR_ML_API_KEY_FILE');
  let response: Response;
  try {
    response = await fetch(`${base.replace(/\/+$/, '')}${path}`, { headers: { authorization: `Bearer ${apiKey}`, accept: 'application/json' } });
  } catch (err) {
    throw new AdapterError('fhir-unavailable', `the service API at ${new URL(base).host} cannot be reached`, { transient: true, cause: err });
  }
  const body = (await response.json().catch(() => ({}))) as { issue?: { details?: { text?: string } }[] };
  if (response.status === 404) throw new AdapterError('not-found', body.issue?.[0]?.details?.text ?? 'not found');
  if (response.status === 401) throw new AdapterError('unauthenticated', `the service API refused the API key: ${body.issue?.[0]?.details?.text ?? ''}`);
  if (!response.ok) throw new AdapterError('input-invalid', `the service API answered ${response.status}: ${body.issue?.[0]?.details?.text ?? ''}`);
  return body as T;
}

async function withStore<T>(opts: CommonOptions, fn: (runs: RunStore) => Promise<T>): Promise<T> {
  const environment = serviceEnvironment();
  const file = opts.sources ?? environment.sourcesFile;
  const config = file ? loadServiceConfig(file, environment.env) : defaultServiceConfig(environment.env);
  const db = await openDatabase({ url: config.database.url, dataDir: config.database.dataDir, poolSize: 2 });
  try {
    await migrate(db);
    return await fn(new RunStore(db));
  } finally {
    await db.close();
  }
}

export async function runsList(opts: ListOptions): Promise<number> {
  const limit = positive(opts.limit, '--limit');
  if (opts.state && !STATES.includes(opts.state)) throw new AdapterError('input-invalid', `--state must be one of ${STATES.join(', ')}`);
  const rows: (RunRow & { counts: RunCounts })[] = opts.api
    ? (
        await viaApi<{ runs: (RunRow & { counts: RunCounts })[] }>(
          opts.api,
          `/runs?${new URLSearchParams({ limit: String(limit), ...(opts.source ? { source: opts.source } : {}), ...(opts.state ? { state: opts.state } : {}) })}`,
        )
      ).runs
    : await withStore(opts, async (runs) => {
        const list = await runs.list({ sourceId: opts.source, state: opts.state as RunState | undefined, limit });
        return Promise.all(list.map(async (r) => ({ ...r, counts: await runs.counts(r.id) })));
      });
  if (opts.json) {
    process.stdout.write(JSON.stringify({ runs: rows }) + '\n');
    return 0;
  }
  if (!rows.length) {
    process.stdout.write('no runs\n');
    return 0;
  }
  process.stdout.write(
    table(
      ['run', 'source', 'state', 'mode', 'as-of', 'patients', 'scored', 'skipped', 'failed', 'batches', 'error'],
      rows.map((r) => {
        const t = totals(r.counts);
        return [r.id, r.sourceId, r.state, r.mode ?? '-', r.asOf, r.patientsTotal, t.scored, t.skipped, t.failed, `${r.counts.batches.succeeded}/${r.batchesTotal}`, r.errorCode ?? ''];
      }),
    ) + '\n',
  );
  return 0;
}

export async function runsShow(id: string, opts: ShowOptions): Promise<number> {
  const limit = positive(opts.limit, '--limit');
  const offset = positive(opts.offset, '--offset', 0);
  const detail: RunDetail = opts.api
    ? await viaApi<RunDetail>(opts.api, `/runs/${encodeURIComponent(id)}?limit=${limit}&offset=${offset}`)
    : await withStore(opts, async (runs) => {
        const run = await runs.get(id);
        if (!run) throw new AdapterError('not-found', `no run ${id}`);
        return { run, counts: await runs.counts(id), batches: await runs.batches(id), outcomes: opts.outcomes ? await runs.outcomes(id, { limit, offset }) : undefined };
      });
  if (!opts.outcomes) delete detail.outcomes;
  if (opts.json) {
    process.stdout.write(JSON.stringify(detail) + '\n');
    return 0;
  }
  const { run, counts, batches } = detail;
  const out: string[] = [];
  out.push(`run ${run.id}  source ${run.sourceId}  ${run.state}  ${run.mode ?? ''}  as-of ${run.asOf}`);
  out.push(`created ${run.createdAt}  started ${run.startedAt ?? '-'}  finished ${run.finishedAt ?? '-'}  trigger ${run.trigger}`);
  if (run.selection) out.push(`selected: ${Object.entries(run.selection).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  if (run.errorCode) out.push(`error: ${run.errorCode}: ${run.errorMessage}`);
  out.push('');
  out.push(table(['model', 'scored', 'skipped', 'unchanged', 'not-found', 'failed'], Object.entries(counts.outcomes).map(([m, c]) => [m, c.scored ?? 0, c.skipped ?? 0, c.unchanged ?? 0, c['not-found'] ?? 0, c.failed ?? 0])));
  out.push('');
  out.push(table(['batch', 'state', 'patients', 'attempts', 'requests', 'ms', 'error'], batches.map((b) => [b.seq, b.state, b.patientCount, b.attempts, b.requests ?? 0, b.durationMs ?? 0, b.errorCode ? `${b.errorCode}: ${b.errorMessage}` : ''])));
  if (detail.outcomes) {
    out.push('');
    out.push(`outcomes ${offset + 1}-${offset + detail.outcomes.items.length} of ${detail.outcomes.total}`);
    out.push(table(['patient', 'model', 'status', 'reason', 'probability', 'band', 'write'], detail.outcomes.items.map((o) => [o.patientId, o.modelId, o.status, o.reason ?? '', o.probability === undefined ? '' : o.probability.toFixed(4), o.band ?? '', o.write ?? ''])));
  }
  process.stdout.write(out.join('\n') + '\n');
  return 0;
}

function totals(counts: RunCounts): { scored: number; skipped: number; failed: number } {
  const t = { scored: 0, skipped: 0, failed: 0 };
  for (const m of Object.values(counts.outcomes)) {
    t.scored += m.scored ?? 0;
    t.skipped += m.skipped ?? 0;
    t.failed += m.failed ?? 0;
  }
  return t;
}
