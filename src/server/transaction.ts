import { OperationOutcomeError, badRequest, isOk } from '@medplum/core';
import { processBatch, type FhirRequest, type FhirRouter } from '@medplum/fhir-router';
import type { Bundle, BundleEntry, OperationOutcome, OperationOutcomeIssue } from '@medplum/fhirtypes';
import type { IndexedMemoryRepository } from './repository.js';
import { validationIssues } from './repository.js';

/**
 * Transactions and batches, on top of medplum's `processBatch` (which resolves `urn:uuid:` fullUrls,
 * rewrites references to them, resolves conditional creates/updates and orders entries as FHIR
 * requires). What it does not do, and this adds:
 *
 * - validate every entry before writing anything (a transaction with one invalid entry writes nothing and
 *   answers 400 naming `Bundle.entry[i]` and the element path);
 * - roll back: medplum's transaction mode relies on the repository's `withTransaction`, which for
 *   MemoryRepository does nothing, so a failure at entry 7 kept entries 1-6. Here the whole bundle runs in
 *   `repo.runAtomically`, which journals and undoes writes;
 * - lift medplum's "strict isolation" limit: its transaction mode refuses more than 8 entries when any is
 *   a conditional create/update (the adapter's writeback sends one conditional create per patient).
 *   In-process, `runAtomically` already serialises, so the entries are run through medplum's batch mode
 *   inside it and any failed entry turns into a rollback plus an error answer.
 */
export async function processTransaction(
  bundle: Bundle,
  deps: { repo: IndexedMemoryRepository; router: FhirRouter; request?: Partial<FhirRequest> },
): Promise<Bundle> {
  if (bundle?.resourceType !== 'Bundle') throw new OperationOutcomeError(badRequest('Expected a Bundle'));
  if (bundle.type !== 'transaction' && bundle.type !== 'batch') {
    throw new OperationOutcomeError(badRequest(`Bundle.type must be transaction or batch, got ${bundle.type ?? '<missing>'}`, 'Bundle.type'));
  }
  if (!bundle.entry?.length) {
    return { resourceType: 'Bundle', type: `${bundle.type}-response` };
  }
  const request: FhirRequest = {
    method: 'POST',
    url: '',
    pathname: '',
    body: bundle,
    params: {},
    query: {},
    ...deps.request,
    config: { transactions: false },
  };

  if (bundle.type === 'batch') {
    // Entries are independent: each is validated by the repository as it is written.
    return processBatch(request, deps.repo, deps.router, bundle);
  }

  const { repo } = deps;
  if (repo.validate) {
    const issues = validateEntries(bundle.entry);
    if (issues.length > 0) throw new OperationOutcomeError({ resourceType: 'OperationOutcome', issue: issues });
  }
  return repo.runAtomically(
    async () => {
      const response = await processBatch(request, repo, deps.router, { ...bundle, type: 'batch' });
      const failed = (response.entry ?? []).findIndex((e) => !isOk(e.response?.outcome ?? okOutcome));
      if (failed >= 0) {
        const outcome = response.entry?.[failed]?.response?.outcome;
        throw new OperationOutcomeError(entryFailure(failed, bundle.entry?.[failed], outcome));
      }
      return { ...response, type: 'transaction-response' as const };
    },
    { prevalidated: repo.validate },
  );
}

const okOutcome: OperationOutcome = { resourceType: 'OperationOutcome', id: 'ok', issue: [{ severity: 'information', code: 'informational' }] };

/** Validation issues of every POST/PUT entry, with expressions rooted at `Bundle.entry[i].resource`. */
export function validateEntries(entries: BundleEntry[]): OperationOutcomeIssue[] {
  const issues: OperationOutcomeIssue[] = [];
  entries.forEach((entry, i) => {
    const method = entry.request?.method;
    if (!entry.resource || (method !== 'POST' && method !== 'PUT')) return;
    const type = entry.resource.resourceType;
    for (const issue of validationIssues(entry.resource)) {
      if (issue.severity !== 'error' && issue.severity !== 'fatal') continue;
      issues.push({
        ...issue,
        expression: (issue.expression ?? [type]).map((e) => `Bundle.entry[${i}].resource${e.startsWith(`${type}`) ? e.slice(type.length) : `.${e}`}`),
        diagnostics: `Bundle.entry[${i}] (${type}${entry.fullUrl ? ` ${entry.fullUrl}` : ''}): ${issue.details?.text ?? issue.diagnostics ?? 'invalid'}`,
      });
    }
  });
  return issues;
}

function entryFailure(index: number, entry: BundleEntry | undefined, outcome: OperationOutcome | undefined): OperationOutcome {
  const what = `${entry?.request?.method ?? '?'} ${entry?.request?.url ?? '?'}`;
  const issues = outcome?.issue?.length ? outcome.issue : [{ severity: 'error' as const, code: 'processing' as const }];
  return {
    resourceType: 'OperationOutcome',
    // Keep the entry's own outcome id (not-found, precondition-failed, ...) so the HTTP status matches it.
    ...(outcome?.id ? { id: outcome.id } : {}),
    issue: issues.map((issue) => ({
      ...issue,
      expression: issue.expression?.length ? issue.expression.map((e) => (e.startsWith('Bundle.') ? e : `Bundle.entry[${index}].${e}`)) : [`Bundle.entry[${index}]`],
      diagnostics: `Transaction rolled back: Bundle.entry[${index}] (${what}) failed: ${issue.details?.text ?? issue.diagnostics ?? 'error'}`,
    })),
  };
}
