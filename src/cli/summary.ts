import type { ModelTotals, SyncResult } from '../sync/index.js';
import type { InterruptCause } from './interrupt.js';

/** Plain-text tables for the terminal. Pure, so tests can pin them. */
export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  // Numbers right-aligned, text left-aligned.
  const numeric = headers.map((_, i) => i > 0 && rows.every((r) => typeof r[i] === 'number'));
  const line = (r: string[]) => r.map((c, i) => (numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(cells[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

const BANDS = ['negligible', 'low', 'moderate', 'high', 'certain'] as const;

/** The run's summary as a table, for a terminal. */
export function formatSyncSummary(result: SyncResult, interruptedBy?: InterruptCause): string {
  const out: string[] = [];
  out.push(
    `as-of ${result.asOf}${result.dryRun ? ' (dry run: nothing written)' : ''}: ${plural(result.patients, 'patient')} in ${plural(result.batches, 'batch', 'batches')}, ` +
      `${(result.durationMs / 1000).toFixed(1)} s`,
  );
  if (result.shadow) out.push('SHADOW MODE: RiskAssessments written as preliminary, no CarePlans (silent validation before go-live)');
  const modelIds = Object.keys(result.byModel);
  out.push('');
  out.push(
    table(
      ['model', 'scored', 'preliminary', 'skipped', ...BANDS, 'written', 'already there'],
      modelIds.map((id) => {
        const t = result.byModel[id];
        return [id, t.scored, t.preliminary, t.skipped, ...BANDS.map((b) => t.bands[b] ?? 0), t.created, t.alreadyPresent];
      }),
    ),
  );
  if (modelIds.some((id) => Object.values(result.byModel[id].applicability).some((n) => n > 0))) {
    out.push('');
    out.push('Applicability of the scores (patients; the card\'s policy decides: final, preliminary or not written)');
    out.push(
      table(
        ['', ...modelIds],
        [
          ['inputs imputed', ...modelIds.map((id) => result.byModel[id].applicability.imputed)],
          ['input outside the training range', ...modelIds.map((id) => result.byModel[id].applicability.outOfRange)],
          ['out of distribution', ...modelIds.map((id) => result.byModel[id].applicability.outOfDistribution)],
        ],
      ),
    );
  }
  if (!result.dryRun && !result.shadow && modelIds.some((id) => Object.values(result.byModel[id].carePlans).some((n) => n > 0))) {
    out.push('');
    out.push('CarePlan proposals (drafts for clinicians; a plan a clinician activated, completed or edited is never touched)');
    out.push(
      table(
        ['', ...modelIds],
        [
          ['created', ...modelIds.map((id) => result.byModel[id].carePlans.created)],
          ['already there', ...modelIds.map((id) => result.byModel[id].carePlans.alreadyPresent)],
          ['older drafts revoked', ...modelIds.map((id) => result.byModel[id].carePlans.revoked)],
          ["clinicians' plans left untouched", ...modelIds.map((id) => result.byModel[id].carePlans.untouched)],
        ],
      ),
    );
  }
  const skipReasons = [...new Set(modelIds.flatMap((id) => Object.keys(result.byModel[id].skippedByReason)))].sort();
  if (skipReasons.length) {
    out.push('');
    out.push('Patients not scored, by reason');
    out.push(table(['reason', ...modelIds], skipReasons.map((r) => [r, ...modelIds.map((id) => result.byModel[id].skippedByReason[r] ?? 0)])));
  }
  const reasons = [...new Set(modelIds.flatMap((id) => Object.keys(result.byModel[id].excludedByReason)))].sort();
  out.push('');
  out.push('Data fetched, used and excluded (resources; fetched = used + excluded)');
  out.push(
    table(
      ['', ...modelIds],
      [
        ['fetched', ...modelIds.map((id) => result.byModel[id].fetched)],
        ['used', ...modelIds.map((id) => result.byModel[id].used)],
        ['excluded', ...modelIds.map((id) => result.byModel[id].excluded)],
        ...reasons.map((r) => [`  ${r}`, ...modelIds.map((id) => result.byModel[id].excludedByReason[r as keyof typeof result.byModel[string]['excludedByReason']] ?? 0)]),
      ],
    ),
  );
  const partReasons = [...new Set(modelIds.flatMap((id) => Object.keys(result.byModel[id].partIssuesByReason)))].sort();
  if (partReasons.length) {
    out.push('');
    out.push('Parts dropped from resources still used (e.g. a report attachment that cannot be decoded)');
    out.push(table(['reason', ...modelIds], partReasons.map((r) => [r, ...modelIds.map((id) => result.byModel[id].partIssuesByReason[r as keyof ModelTotals['partIssuesByReason']] ?? 0)])));
  }
  if (result.notFound || result.failed || result.unattributed) {
    out.push('');
    out.push(`not found: ${result.notFound}; failed: ${result.failed}; unattributed resources: ${result.unattributed}`);
    if (result.notFoundIds.length) out.push(`  patients not found: ${listed(result.notFoundIds, 50)}`);
    for (const f of result.failures) out.push(`  ${f.patientIds} patients failed: ${f.code}: ${f.message}`);
  }
  if (result.aborted) {
    out.push('');
    const what = { models: 'loading the models', devices: 'registering the model Devices', 'patient-list': 'listing the patients', batch: 'a batch' }[result.aborted.stage];
    out.push(
      result.batches > 0
        ? `STOPPED EARLY after ${plural(result.batches, 'batch', 'batches')}, at ${what} (${result.aborted.code}); the counts above cover those batches only.`
        : `STOPPED: ${what} failed (${result.aborted.code}): ${firstLine(result.aborted.message)}; nothing was scored or written.`,
    );
  }
  if (result.interrupted) {
    out.push('');
    const abandoned = result.interrupted.abandonedPatients;
    out.push(
      `INTERRUPTED${interruptedBy ? ` (${interruptedBy})` : ''} after ${plural(result.batches, 'batch', 'batches')}; the counts above cover those batches only` +
        (abandoned ? `; the batch in progress (${plural(abandoned, 'patient')}) was abandoned, not counted.` : '.'),
    );
  }
  return out.join('\n');
}

/**
 * The run's summary as the last JSON line of `sync --json`: the result without per-patient results,
 * the error of an aborted run as code, message and stage, and an interrupted run's cause.
 */
export function summaryLine(result: SyncResult, interruptedBy?: InterruptCause): string {
  const { results: _results, aborted, interrupted, ...summary } = result;
  return JSON.stringify({
    type: 'summary',
    ...summary,
    aborted: aborted && { code: aborted.code, message: aborted.message, stage: aborted.stage },
    interrupted: interrupted && { by: interruptedBy, abandonedPatients: interrupted.abandonedPatients },
  });
}

function listed(ids: string[], max: number): string {
  return ids.length <= max ? ids.join(', ') : `${ids.slice(0, max).join(', ')} and ${ids.length - max} more`;
}

function firstLine(text: string): string {
  return text.split('\n')[0];
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
