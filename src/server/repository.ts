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
  type Filter,
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
 *   Observations). Here candidates come from an index on `_id`, `subject`/`patient` and `code`
 *   (system|code) when the request has them, the page is sliced before cloning, and medplum's own
 *   `matchesSearchRequest` decides every filter the index does not answer exactly.
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
  /** resourceType -> index key (`ref:Patient/1`, `tok:http://loinc.org|2339-0`) -> ids holding it. */
  private readonly keyIndex = new Map<string, Map<string, Set<string>>>();
  /** resourceType -> fields behind the indexed parameters (derived from the search parameter expressions). */
  private readonly indexedFields = new Map<string, { ref: string[]; code: string[] }>();
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
    const indexed = this.candidatesFromIndex(searchRequest, all);
    // Filters the index answered exactly are not re-evaluated (the 50-reference one is the costliest).
    const request = indexed?.satisfied.length
      ? { ...searchRequest, filters: searchRequest.filters?.filter((f) => !indexed.satisfied.includes(f)) }
      : searchRequest;
    const matches: Resource[] = [];
    for (const r of indexed?.candidates ?? all.values()) if (matchesSearchRequest(r, request)) matches.push(r);
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

  /**
   * Candidates from the index (undefined: scan all of the type) and the filters the index answered
   * exactly, which need no re-evaluation. Indexed: `_id`; the reference parameters `subject`/`patient`
   * (exact for plain paths like `Observation.subject`; `patient`'s `.where(resolve() is Patient)` is
   * still checked by medplum); the token parameter `code` when every value is `system|code` (exact:
   * medplum compares system and code case-insensitively, as the index keys do). A plain `code=x` also
   * matches CodeableConcept.text and display in medplum, so it is left to the matcher. With both a
   * reference and a code filter the candidate sets are intersected.
   */
  private candidatesFromIndex(
    searchRequest: SearchRequest,
    all: Map<string, Resource>,
  ): { candidates: Resource[]; satisfied: Filter[] } | undefined {
    const type = searchRequest.resourceType;
    const filters = (searchRequest.filters ?? []).filter((f) => f.operator === Operator.EQUALS && f.value !== '');
    const byId = filters.find((f) => f.code === '_id');
    if (byId) {
      return { candidates: unique(splitSearchOnComma(byId.value).map((id) => all.get(id))), satisfied: [byId] };
    }
    const fields = this.fieldsFor(type);
    const index = this.keyIndex.get(type);
    const sets: Set<string>[] = [];
    const satisfied: Filter[] = [];
    const lookup = (keys: string[]): Set<string> => {
      const ids = new Set<string>();
      for (const key of keys) for (const id of index?.get(key) ?? []) ids.add(id);
      return ids;
    };
    const refFilter = fields.ref.length ? filters.find((f) => INDEXED_REFERENCE_PARAMS.includes(f.code) && parseReferencePaths(type, searchParameterFor(type, f.code)?.expression)) : undefined;
    if (refFilter) {
      sets.push(lookup(splitSearchOnComma(refFilter.value).map((ref) => `ref:${ref}`)));
      if (parseReferencePaths(type, searchParameterFor(type, refFilter.code)?.expression)?.exact) satisfied.push(refFilter);
    }
    const codeFilter = fields.code.length ? filters.find((f) => f.code === 'code') : undefined;
    if (codeFilter) {
      const values = splitSearchOnComma(codeFilter.value);
      if (values.every((v) => /^[^|]+\|[^|]+$/.test(v))) {
        sets.push(lookup(values.map((v) => `tok:${v.toLowerCase()}`)));
        satisfied.push(codeFilter);
      }
    }
    if (sets.length === 0) return undefined;
    sets.sort((a, b) => a.size - b.size);
    const [smallest, ...rest] = sets;
    const candidates: Resource[] = [];
    for (const id of smallest) {
      if (!rest.every((s) => s.has(id))) continue;
      const r = all.get(id);
      if (r) candidates.push(r);
    }
    return { candidates, satisfied };
  }

  /** Fields of `type` behind the indexed parameters; computed once per type. */
  private fieldsFor(type: string): { ref: string[]; code: string[] } {
    let fields = this.indexedFields.get(type);
    if (!fields) {
      const ref = new Set<string>();
      const code: string[] = [];
      if (isR4ResourceType(type)) {
        for (const param of INDEXED_REFERENCE_PARAMS) {
          for (const f of parseReferencePaths(type, searchParameterFor(type, param)?.expression)?.fields ?? []) ref.add(f);
        }
        const codeParam = searchParameterFor(type, 'code');
        const m = codeParam?.type === 'token' ? new RegExp(`^${type}\\.([a-zA-Z]+)$`).exec(codeParam.expression ?? '') : null;
        if (m) code.push(m[1]);
      }
      fields = { ref: [...ref], code };
      this.indexedFields.set(type, fields);
    }
    return fields;
  }

  /** Index keys of a resource: `ref:<reference>` and `tok:<system>|<code>` (lowercased). */
  private keysOf(resource: Resource): string[] {
    const keys: string[] = [];
    const record = resource as unknown as Record<string, unknown>;
    const fields = this.fieldsFor(resource.resourceType);
    for (const field of fields.ref) {
      for (const v of asArray(record[field])) {
        const ref = (v as { reference?: unknown } | undefined)?.reference;
        if (typeof ref === 'string') keys.push(`ref:${ref}`);
      }
    }
    for (const field of fields.code) {
      for (const v of asArray(record[field])) {
        const value = v as { coding?: unknown; system?: unknown; code?: unknown } | undefined;
        const codings = Array.isArray(value?.coding) ? value.coding : [value];
        for (const c of codings as { system?: unknown; code?: unknown }[]) {
          if (typeof c?.system === 'string' && typeof c.code === 'string') keys.push(`tok:${c.system.toLowerCase()}|${c.code.toLowerCase()}`);
        }
      }
    }
    return keys;
  }

  private index(resource: Resource): void {
    if (!resource.id) return;
    const keys = this.keysOf(resource);
    if (keys.length === 0) return;
    let byKey = this.keyIndex.get(resource.resourceType);
    if (!byKey) this.keyIndex.set(resource.resourceType, (byKey = new Map()));
    for (const key of keys) {
      let ids = byKey.get(key);
      if (!ids) byKey.set(key, (ids = new Set()));
      ids.add(resource.id);
    }
  }

  private unindex(resource: Resource): void {
    const byKey = this.keyIndex.get(resource.resourceType);
    if (!byKey || !resource.id) return;
    for (const key of this.keysOf(resource)) {
      const ids = byKey.get(key);
      ids?.delete(resource.id);
      if (ids?.size === 0) byKey.delete(key);
    }
  }
}

function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : value === undefined ? [] : [value];
}

/**
 * Fields behind a reference search parameter for one type, when its expression (possibly a union across
 * types) is, for this type, only plain paths like `Observation.subject` or
 * `Observation.subject.where((resolve() is Patient))`. Anything else is not indexed (scan instead), because
 * the index must return a superset of what medplum's matcher accepts.
 */
export function parseReferencePaths(type: string, expression: string | undefined): { fields: string[]; exact: boolean } | undefined {
  if (!expression) return undefined;
  // Any part that mentions the type must be a plain path, or the index could miss matches.
  const parts = expression.split('|').map((p) => p.trim()).filter((p) => p.includes(`${type}.`));
  if (parts.length === 0) return undefined;
  const fields: string[] = [];
  let exact = true;
  const re = new RegExp(`^${type}\\.([a-zA-Z]+)(\\.where\\(\\(?resolve\\(\\) is [A-Za-z]+\\)?\\))?$`);
  for (const part of parts) {
    const m = re.exec(part);
    if (!m) return undefined;
    fields.push(m[1]);
    if (m[2]) exact = false;
  }
  return { fields, exact };
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
