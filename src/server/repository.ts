import { AsyncLocalStorage } from 'node:async_hooks';
import {
  OperationOutcomeError,
  Operator,
  badRequest,
  deepClone,
  evalFhirPath,
  matchesSearchRequest,
  splitSearchOnComma,
  validateResource,
  type SearchRequest,
  type WithId,
} from '@medplum/core';
import { MemoryRepository } from '@medplum/fhir-router';
import type { Bundle, OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import { ensureR4Definitions, isR4ResourceType, searchParameterFor } from './definitions.js';

/**
 * medplum's MemoryRepository, with the gaps that matter for a test/benchmark FHIR server wrapped:
 *
 * - **Validation on write.** MemoryRepository stores whatever it is given. Every write funnels through
 *   `createResource` (update and patch call it too), so validating there covers create, update, patch,
 *   conditional writes and transaction entries alike.
 * - **Rollback.** `withTransaction` just calls its callback, so a transaction failing midway keeps its
 *   first writes. Here every write inside `runAtomically` is journaled and undone on failure.
 * - **Search speed.** `search` scans every resource of the type, evaluating FHIRPath per filter per
 *   resource, and deep-clones every match before slicing out the page (~1 s per search on 50k
 *   Observations). Here candidates come from an index on the reference search parameters `subject` /
 *   `patient` (and on `_id`) when the request has one, the page is sliced before cloning, and medplum's
 *   own `matchesSearchRequest` still decides every match, so results are what medplum would answer.
 * - **History.** `readHistory` reverses the stored version list in place on every call; it is replaced by
 *   a non-mutating version (the rollback journal relies on version order).
 *
 * The journal and index need MemoryRepository's private `resources`/`history` maps; their shape is
 * checked at construction so a medplum upgrade that changes them fails loudly, not silently.
 */

interface JournalEntry {
  resourceType: string;
  id: string;
  /** The stored object before the write; undefined when the write created it. */
  before: Resource | undefined;
  historyLength: number;
}

interface AtomicContext {
  journal: JournalEntry[];
  /** Resources written in this context were validated up front (transactions validate all entries first). */
  prevalidated: boolean;
}

interface MemoryInternals {
  resources: Map<string, Map<string, Resource>>;
  history: Map<string, Map<string, Resource[]>>;
}

/** Reference search parameters served from the index (when their expression is a plain path). */
const INDEXED_REFERENCE_PARAMS = ['subject', 'patient'];

export interface IndexedMemoryRepositoryOptions {
  /** Validate every written resource against the R4 base StructureDefinitions (default true). */
  validate?: boolean;
}

export class IndexedMemoryRepository extends MemoryRepository {
  readonly validate: boolean;
  private readonly atomic = new AsyncLocalStorage<AtomicContext>();
  /** resourceType -> reference string (exactly as stored) -> ids of resources holding it. */
  private readonly refIndex = new Map<string, Map<string, Set<string>>>();
  /** resourceType -> fields whose references are indexed (derived from the search parameter expressions). */
  private readonly indexedFields = new Map<string, string[]>();
  /** Creation order: the default, stable sort order of search results (offset paging needs one). */
  private readonly seq = new Map<string, number>();
  private nextSeq = 0;
  /** Serialises atomic blocks (transactions, conditional writes) so two never interleave. */
  private lock: Promise<unknown> = Promise.resolve();

  constructor(options: IndexedMemoryRepositoryOptions = {}) {
    super();
    ensureR4Definitions();
    this.validate = options.validate ?? true;
    const internals = this.internals;
    if (!(internals.resources instanceof Map) || !(internals.history instanceof Map)) {
      throw new Error('@medplum/fhir-router MemoryRepository internals changed (resources/history maps); update IndexedMemoryRepository');
    }
  }

  private get internals(): MemoryInternals {
    return this as unknown as MemoryInternals;
  }

  /** Number of stored resources of a type (cheap; for logs and tests). */
  count(resourceType: string): number {
    return this.internals.resources.get(resourceType)?.size ?? 0;
  }

  /** Throws an OperationOutcomeError (400) naming every problem (FHIRPath expression + message). */
  validateOrThrow(resource: Resource): void {
    const issues = validationIssues(resource);
    if (issues.some((i) => i.severity === 'error' || i.severity === 'fatal')) {
      throw new OperationOutcomeError({ resourceType: 'OperationOutcome', issue: issues });
    }
  }

  override async createResource<T extends Resource>(resource: T): Promise<WithId<T>> {
    const ctx = this.atomic.getStore();
    if (this.validate && !ctx?.prevalidated) this.validateOrThrow(resource);
    const type = resource.resourceType;
    const before = resource.id ? this.internals.resources.get(type)?.get(resource.id) : undefined;
    const historyLength = resource.id ? (this.internals.history.get(type)?.get(resource.id)?.length ?? 0) : 0;
    const created = await super.createResource(resource);
    if (before) this.unindex(before);
    this.index(created);
    const key = `${type}/${created.id}`;
    if (!this.seq.has(key)) this.seq.set(key, this.nextSeq++);
    ctx?.journal.push({ resourceType: type, id: created.id, before, historyLength });
    return created;
  }

  override async patchResource<T extends Resource>(
    resourceType: T['resourceType'],
    id: string,
    patch: Parameters<MemoryRepository['patchResource']>[2],
  ): Promise<WithId<T>> {
    // A patched result was never seen by a transaction's up-front validation: always validate it.
    const ctx = this.atomic.getStore();
    if (ctx?.prevalidated) {
      return this.atomic.run({ ...ctx, prevalidated: false }, () => super.patchResource<T>(resourceType, id, patch));
    }
    return super.patchResource<T>(resourceType, id, patch);
  }

  override async deleteResource(resourceType: string, id: string): Promise<void> {
    const before = this.internals.resources.get(resourceType)?.get(id);
    const historyLength = this.internals.history.get(resourceType)?.get(id)?.length ?? 0;
    await super.deleteResource(resourceType, id);
    if (before) this.unindex(before);
    this.atomic.getStore()?.journal.push({ resourceType, id, before, historyLength });
  }

  override async readHistory<T extends Resource>(resourceType: string, id: string): Promise<Bundle<T>> {
    await this.readResource(resourceType, id);
    const versions = [...(this.internals.history.get(resourceType)?.get(id) ?? [])].reverse();
    const entry = versions.map((r) => ({ resource: deepClone(r) as T }));
    return { resourceType: 'Bundle', type: 'history', total: entry.length, ...(entry.length ? { entry } : {}) };
  }

  override withTransaction<TResult>(callback: (client: undefined) => Promise<TResult>): Promise<TResult> {
    // medplum's conditional create/update/delete call this; nested inside a transaction it joins it.
    if (this.atomic.getStore()) return callback(undefined);
    return this.runAtomically(() => callback(undefined));
  }

  /**
   * Runs `fn` all-or-nothing: writes made inside it are undone (created deleted, updated and deleted
   * restored, history truncated) if it throws. Blocks are serialised; writes outside any block are
   * single-resource and need no journal.
   */
  runAtomically<T>(fn: () => Promise<T>, options: { prevalidated?: boolean } = {}): Promise<T> {
    const run = async (): Promise<T> => {
      const ctx: AtomicContext = { journal: [], prevalidated: options.prevalidated ?? false };
      try {
        return await this.atomic.run(ctx, fn);
      } catch (err) {
        this.rollback(ctx.journal);
        throw err;
      }
    };
    const result = this.lock.then(run, run);
    this.lock = result.catch(() => undefined);
    return result;
  }

  private rollback(journal: JournalEntry[]): void {
    const { resources, history } = this.internals;
    for (const entry of [...journal].reverse()) {
      const { resourceType, id, before, historyLength } = entry;
      const byId = resources.get(resourceType) ?? new Map<string, Resource>();
      resources.set(resourceType, byId);
      const current = byId.get(id);
      if (current) this.unindex(current);
      if (before) {
        byId.set(id, before);
        this.index(before);
      } else {
        byId.delete(id);
      }
      const versions = history.get(resourceType)?.get(id);
      if (versions) {
        versions.length = historyLength;
        if (historyLength === 0) history.get(resourceType)?.delete(id);
      }
    }
  }

  override async search<T extends Resource>(searchRequest: SearchRequest<T>): Promise<Bundle<WithId<T>>> {
    const all = this.internals.resources.get(searchRequest.resourceType) ?? new Map<string, Resource>();
    const candidates = this.candidatesFromIndex(searchRequest, all) ?? all.values();
    const matches: Resource[] = [];
    for (const r of candidates) if (matchesSearchRequest(r, searchRequest)) matches.push(r);
    this.sortMatches(matches, searchRequest);
    const offset = searchRequest.offset ?? 0;
    const page = searchRequest.count === undefined ? matches.slice(offset) : matches.slice(offset, offset + searchRequest.count);
    const entry = page.map((r) => ({ resource: deepClone(r) as WithId<T> }));
    return { resourceType: 'Bundle', type: 'searchset', total: matches.length, ...(entry.length ? { entry } : {}) };
  }

  /**
   * medplum's search has no default order; offset paging needs a stable one, so results are ordered by
   * creation, or by `_sort` (same key as medplum's: the JSON of the parameter's FHIRPath value) with
   * creation order breaking ties.
   */
  private sortMatches(matches: Resource[], searchRequest: SearchRequest): void {
    const seqOf = (r: Resource): number => this.seq.get(`${r.resourceType}/${r.id}`) ?? 0;
    const rules = searchRequest.sortRules ?? [];
    if (rules.length === 0) {
      matches.sort((a, b) => seqOf(a) - seqOf(b));
      return;
    }
    const keyed = matches.map((r) => ({
      r,
      seq: seqOf(r),
      keys: rules.map((rule) => {
        const expression = searchParameterFor(r.resourceType, rule.code)?.expression;
        return expression ? JSON.stringify(evalFhirPath(expression, r)) : '';
      }),
    }));
    keyed.sort((a, b) => {
      for (let i = 0; i < rules.length; i++) {
        const c = a.keys[i].localeCompare(b.keys[i]);
        if (c !== 0) return rules[i].descending ? -c : c;
      }
      return a.seq - b.seq;
    });
    keyed.forEach((k, i) => (matches[i] = k.r));
  }

  /** Candidate resources for the first indexable filter, or undefined to scan all of the type. */
  private candidatesFromIndex(searchRequest: SearchRequest, all: Map<string, Resource>): Resource[] | undefined {
    const type = searchRequest.resourceType;
    const filters = (searchRequest.filters ?? []).filter((f) => f.operator === Operator.EQUALS && f.value !== '');
    const byId = filters.find((f) => f.code === '_id');
    if (byId) {
      return unique(splitSearchOnComma(byId.value).map((id) => all.get(id)));
    }
    const fields = this.fieldsFor(type);
    if (fields.length === 0) return undefined;
    const refFilter = filters.find((f) => INDEXED_REFERENCE_PARAMS.includes(f.code) && this.paramIsIndexed(type, f.code));
    if (!refFilter) return undefined;
    const index = this.refIndex.get(type);
    const ids = new Set<string>();
    for (const ref of splitSearchOnComma(refFilter.value)) for (const id of index?.get(ref) ?? []) ids.add(id);
    return unique([...ids].map((id) => all.get(id)));
  }

  private paramIsIndexed(type: string, code: string): boolean {
    return parseReferencePaths(type, searchParameterFor(type, code)?.expression) !== undefined;
  }

  /** Fields of `type` whose references back the indexed parameters; computed once per type. */
  private fieldsFor(type: string): string[] {
    let fields = this.indexedFields.get(type);
    if (!fields) {
      const set = new Set<string>();
      if (isR4ResourceType(type)) {
        for (const code of INDEXED_REFERENCE_PARAMS) {
          for (const f of parseReferencePaths(type, searchParameterFor(type, code)?.expression) ?? []) set.add(f);
        }
      }
      fields = [...set];
      this.indexedFields.set(type, fields);
    }
    return fields;
  }

  private referencesOf(resource: Resource): string[] {
    const refs: string[] = [];
    const record = resource as unknown as Record<string, unknown>;
    for (const field of this.fieldsFor(resource.resourceType)) {
      const value = record[field];
      for (const v of Array.isArray(value) ? value : [value]) {
        const ref = (v as { reference?: unknown } | undefined)?.reference;
        if (typeof ref === 'string') refs.push(ref);
      }
    }
    return refs;
  }

  private index(resource: Resource): void {
    const refs = this.referencesOf(resource);
    if (refs.length === 0 || !resource.id) return;
    let byRef = this.refIndex.get(resource.resourceType);
    if (!byRef) this.refIndex.set(resource.resourceType, (byRef = new Map()));
    for (const ref of refs) {
      let ids = byRef.get(ref);
      if (!ids) byRef.set(ref, (ids = new Set()));
      ids.add(resource.id);
    }
  }

  private unindex(resource: Resource): void {
    const byRef = this.refIndex.get(resource.resourceType);
    if (!byRef || !resource.id) return;
    for (const ref of this.referencesOf(resource)) {
      const ids = byRef.get(ref);
      ids?.delete(resource.id);
      if (ids?.size === 0) byRef.delete(ref);
    }
  }
}

/**
 * Fields behind a reference search parameter for one type, when its expression (possibly a union across
 * types) is, for this type, only plain paths like `Observation.subject` or
 * `Observation.subject.where(resolve() is Patient)`. Anything else is not indexed (scan instead), because
 * the index must return a superset of what medplum's matcher accepts.
 */
export function parseReferencePaths(type: string, expression: string | undefined): string[] | undefined {
  if (!expression) return undefined;
  // Any part that mentions the type must be a plain path, or the index could miss matches.
  const parts = expression.split('|').map((p) => p.trim()).filter((p) => p.includes(`${type}.`));
  if (parts.length === 0) return undefined;
  const fields: string[] = [];
  const re = new RegExp(`^${type}\\.([a-zA-Z]+)(\\.where\\(resolve\\(\\) is [A-Za-z]+\\))?$`);
  for (const part of parts) {
    const m = re.exec(part);
    if (!m) return undefined;
    fields.push(m[1]);
  }
  return fields;
}

export function validationIssues(resource: Resource): OperationOutcomeIssue[] {
  if (!resource || typeof resource !== 'object' || typeof resource.resourceType !== 'string') {
    return badRequest('Missing resourceType', 'resourceType').issue ?? [];
  }
  if (!isR4ResourceType(resource.resourceType)) {
    return badRequest(`Unknown R4 resource type: ${resource.resourceType}`, 'resourceType').issue ?? [];
  }
  try {
    return validateResource(resource);
  } catch (err) {
    if (err instanceof OperationOutcomeError) return err.outcome.issue ?? [];
    const message = err instanceof Error ? err.message : String(err);
    return [{ severity: 'error', code: 'invalid', details: { text: message }, expression: [resource.resourceType] }];
  }
}

function unique(resources: (Resource | undefined)[]): Resource[] {
  const seen = new Set<Resource>();
  for (const r of resources) if (r) seen.add(r);
  return [...seen];
}
