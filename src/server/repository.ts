import { AsyncLocalStorage } from 'node:async_hooks';
import {
  OperationOutcomeError,
  Operator,
  badRequest,
  convertToSearchableReferences,
  convertToSearchableTokens,
  deepClone,
  evalFhirPath,
  evalFhirPathTyped,
  generateId,
  getTypedPropertyValue,
  matchesSearchRequest,
  splitSearchOnComma,
  toPeriod,
  toTypedValue,
  validateResource,
  type Filter,
  type SearchRequest,
  type TypedValue,
  type WithId,
} from '@medplum/core';
import { MemoryRepository } from '@medplum/fhir-router';
import type { Bundle, OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import { ensureR4Definitions, isR4ResourceType, searchParameterFor, searchParametersOf } from './definitions.js';

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
 *   Observations; conditional creates search twice per entry, so a 200-entry writeback transaction
 *   scanned every RiskAssessment 200 times). Here candidates come from an index on `_id` and on every
 *   reference and token parameter with plain-path expressions (`subject`, `patient`, `code`,
 *   `identifier`, ... by `system|code`) when the request has them, the page is sliced before cloning,
 *   and medplum's own `matchesSearchRequest` decides every filter the index does not answer exactly.
 * - **History.** `readHistory` reverses the stored version list in place on every call; it is replaced by
 *   a non-mutating version (the rollback journal relies on version order). MemoryRepository keeps no
 *   record of deletions and has no type- or system-level history; here every write and delete is
 *   appended to a change log (`changes`), which answers `_history?_since=` and Bulk Data `deleted`.
 * - **Server-assigned meta.** MemoryRepository keeps a client's `meta.versionId`/`meta.lastUpdated` on
 *   create, so `_lastUpdated` would say what the client claimed. Here every write gets a new versionId
 *   and a `lastUpdated` from the server clock, never earlier than the previous one (see `now`).
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
  /** The change log record the write appended (removed again on rollback). */
  change: ChangeRecord;
}

/** One write or delete, in the order the server made them (the type- and system-level history). */
export interface ChangeRecord {
  resourceType: string;
  id: string;
  versionId: string;
  /** Server instant of the change (ISO, UTC, milliseconds); non-decreasing along the log. */
  lastUpdated: string;
  /** POST: first version; PUT: a later version (also re-creation after a delete); DELETE: deletion. */
  method: 'POST' | 'PUT' | 'DELETE';
  /** The stored version (never mutated: treat as read-only); absent for deletions. */
  resource?: Resource;
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

/** A reference or token search parameter answered from the index, for one resource type. */
interface IndexedParam {
  kind: 'reference' | 'token';
  /** Top-level fields of the type behind the parameter. */
  fields: string[];
  /** The index holds exactly the matcher's answer for this parameter (no re-evaluation needed). */
  exact: boolean;
}

interface IndexPlan {
  /** search parameter code -> how it is indexed */
  params: Map<string, IndexedParam>;
  /** Distinct (kind, field) pairs whose values are indexed. */
  fields: { kind: 'reference' | 'token'; field: string }[];
}

export interface IndexedMemoryRepositoryOptions {
  /** Validate every written resource against the R4 base StructureDefinitions (default true). */
  validate?: boolean;
  /** Source of `meta.lastUpdated` (default: the system clock); tests pass a controllable one. */
  clock?: () => Date;
}

export class IndexedMemoryRepository extends MemoryRepository {
  readonly validate: boolean;
  private readonly atomic = new AsyncLocalStorage<AtomicContext>();
  /** resourceType -> index key (`r:subject:Patient/1`, `t:code:http://loinc.org|2339-0`) -> ids holding it. */
  private readonly keyIndex = new Map<string, Map<string, Set<string>>>();
  /** resourceType -> indexed parameters and fields (derived from the search parameter expressions). */
  private readonly indexPlans = new Map<string, IndexPlan>();
  /** resourceType -> id -> creation order: the default, stable sort order of search results (offset paging needs one). */
  private readonly seq = new Map<string, Map<string, number>>();
  private nextSeq = 0;
  /** Serialises atomic blocks (transactions, conditional writes) so two never interleave. */
  private lock: Promise<unknown> = Promise.resolve();
  /** Every write and delete, oldest first (see ChangeRecord). */
  private readonly changes: ChangeRecord[] = [];
  private readonly clock: () => Date;
  /** No instant before this (ms since epoch) is handed out again: lastUpdated never goes back. */
  private floor = 0;

  constructor(options: IndexedMemoryRepositoryOptions = {}) {
    super();
    ensureR4Definitions();
    this.validate = options.validate ?? true;
    this.clock = options.clock ?? (() => new Date());
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

  /**
   * The server's instant for a write: the clock, but never before the last instant handed out, so the
   * change log is ordered and `_lastUpdated`/`_since` windows never miss a write that came later.
   */
  now(): string {
    const t = Math.max(this.clock().getTime(), this.floor);
    this.floor = t;
    return new Date(t).toISOString();
  }

  /**
   * An instant T such that every write made so far has lastUpdated <= T and every later write has
   * lastUpdated > T (a Bulk Data `transactionTime`: the next export's `_since=T` misses nothing).
   */
  reserveInstant(): string {
    const t = this.now();
    this.floor = new Date(t).getTime() + 1;
    return t;
  }

  override async createResource<T extends Resource>(resource: T): Promise<WithId<T>> {
    const ctx = this.atomic.getStore();
    if (this.validate && !ctx?.prevalidated) this.validateOrThrow(resource);
    const type = resource.resourceType;
    const before = resource.id ? this.internals.resources.get(type)?.get(resource.id) : undefined;
    const historyLength = resource.id ? (this.internals.history.get(type)?.get(resource.id)?.length ?? 0) : 0;
    // The server, not the client, says which version this is and when it was written.
    const lastUpdated = this.now();
    const created = await super.createResource({ ...resource, meta: { ...resource.meta, versionId: generateId(), lastUpdated } });
    if (before) this.unindex(before);
    this.index(created);
    let seqs = this.seq.get(type);
    if (!seqs) this.seq.set(type, (seqs = new Map()));
    if (!seqs.has(created.id)) seqs.set(created.id, this.nextSeq++);
    const change: ChangeRecord = {
      resourceType: type,
      id: created.id,
      versionId: created.meta?.versionId as string,
      lastUpdated,
      method: historyLength > 0 ? 'PUT' : 'POST',
      resource: this.internals.resources.get(type)?.get(created.id),
    };
    this.changes.push(change);
    ctx?.journal.push({ resourceType: type, id: created.id, before, historyLength, change });
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
    const change: ChangeRecord = { resourceType, id, versionId: generateId(), lastUpdated: this.now(), method: 'DELETE' };
    this.changes.push(change);
    this.atomic.getStore()?.journal.push({ resourceType, id, before, historyLength, change });
  }

  /**
   * Changes (oldest first) at or after `since` (`inclusive`, as history's `_since`) or strictly after it
   * (Bulk Data `_since`), optionally of one resource type. `since` is any FHIR instant.
   */
  changesSince(since: string | undefined, options: { inclusive: boolean; resourceType?: string } = { inclusive: true }): ChangeRecord[] {
    let start = 0;
    if (since !== undefined) {
      const bound = new Date(since).toISOString();
      // The log is ordered by lastUpdated (see `now`): binary search for the first change in the window.
      let lo = 0;
      let hi = this.changes.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        const t = this.changes[mid].lastUpdated;
        if (options.inclusive ? t < bound : t <= bound) lo = mid + 1;
        else hi = mid;
      }
      start = lo;
    }
    const out: ChangeRecord[] = [];
    for (let i = start; i < this.changes.length; i++) {
      const c = this.changes[i];
      if (!options.resourceType || c.resourceType === options.resourceType) out.push(c);
    }
    return out;
  }

  /** The stored current version (read-only, not a copy), or undefined. */
  peek(resourceType: string, id: string): Resource | undefined {
    return this.internals.resources.get(resourceType)?.get(id);
  }

  /** The last stored version of a resource, deleted or not (read-only, not a copy). */
  lastVersion(resourceType: string, id: string): Resource | undefined {
    const versions = this.internals.history.get(resourceType)?.get(id);
    return versions?.[versions.length - 1];
  }

  /** Resource types with at least one stored resource, sorted. */
  types(): string[] {
    return [...this.internals.resources].filter(([, byId]) => byId.size > 0).map(([type]) => type).sort();
  }

  /** Ids of the stored resources of a type, in creation order. */
  ids(resourceType: string): string[] {
    const all = this.internals.resources.get(resourceType);
    if (!all) return [];
    const seqs = this.seq.get(resourceType);
    return [...all.keys()].sort((a, b) => (seqs?.get(a) ?? 0) - (seqs?.get(b) ?? 0));
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
   * single-resource and need no journal. A block inside a block is a savepoint: its failure undoes its
   * own writes (the caller may go on), its success hands them to the enclosing block.
   */
  runAtomically<T>(fn: () => Promise<T>, options: { prevalidated?: boolean } = {}): Promise<T> {
    const outer = this.atomic.getStore();
    if (outer) {
      const inner: AtomicContext = { journal: [], prevalidated: options.prevalidated ?? outer.prevalidated };
      return this.atomic.run(inner, fn).then(
        (result) => {
          for (const entry of inner.journal) outer.journal.push(entry);
          return result;
        },
        (err: unknown) => {
          this.rollback(inner.journal);
          throw err;
        },
      );
    }
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
    for (let i = journal.length - 1; i >= 0; i--) {
      const { resourceType, id, before, historyLength, change } = journal[i];
      // The change is at or near the end of the log (later plain writes may follow it).
      const at = this.changes.lastIndexOf(change);
      if (at >= 0) this.changes.splice(at, 1);
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
    const matches = this.matching(searchRequest);
    const offset = searchRequest.offset ?? 0;
    const page = searchRequest.count === undefined ? matches.slice(offset) : matches.slice(offset, offset + searchRequest.count);
    const entry = page.map((r) => ({ resource: deepClone(r) as WithId<T> }));
    return { resourceType: 'Bundle', type: 'searchset', total: matches.length, ...(entry.length ? { entry } : {}) };
  }

  /**
   * Every stored resource matching the request's filters, in result order (creation or `_sort`),
   * ignoring count/offset. The stored objects themselves: read-only, never hand them to a client
   * without copying or serialising.
   */
  matching(searchRequest: SearchRequest): Resource[] {
    const all = this.internals.resources.get(searchRequest.resourceType) ?? new Map<string, Resource>();
    const indexed = this.candidatesFromIndex(searchRequest, all);
    // Filters the index answered exactly are not re-evaluated (the 50-reference one is the costliest).
    const answered = new Set<Filter>(indexed?.satisfied ?? []);
    // `_lastUpdated` compares the stored instant directly: FHIRPath per resource cost ~10 µs each, so an
    // incremental sync's "changed since" search scanned 200k Observations in 2 s.
    const instantChecks: ((r: Resource) => boolean)[] = [];
    for (const filter of searchRequest.filters ?? []) {
      if (filter.code !== '_lastUpdated' || answered.has(filter)) continue;
      const predicate = lastUpdatedPredicate(filter);
      if (!predicate) continue;
      instantChecks.push((r) => predicate(r.meta?.lastUpdated));
      answered.add(filter);
    }
    const request = answered.size ? { ...searchRequest, filters: searchRequest.filters?.filter((f) => !answered.has(f)) } : searchRequest;
    const useMatcher = !!request.filters?.length;
    const matches: Resource[] = [];
    // Nothing left to check (no filters, or all answered above): no matcher call per resource.
    for (const r of indexed?.candidates ?? all.values()) {
      if (instantChecks.length > 0 && !instantChecks.every((check) => check(r))) continue;
      if (useMatcher && !matchesSearchRequest(r, request)) continue;
      matches.push(r);
    }
    this.sortMatches(matches, searchRequest);
    return matches;
  }

  /**
   * Stored resources of `resourceType` (read-only, creation order) that reference one of `references`
   * through any of the reference search parameters `codes` (e.g. the Patient compartment's `subject`,
   * `performer`). Parameters the index serves are answered from it; for a `where(resolve() is X)`
   * parameter the index is exact as long as the references are of type X, which callers ensure. Others
   * (nested paths like `Procedure.performer.actor`) are evaluated with FHIRPath on every resource.
   */
  referencing(resourceType: string, codes: readonly string[], references: ReadonlySet<string>): Resource[] {
    const all = this.internals.resources.get(resourceType);
    if (!all || references.size === 0) return [];
    const plan = this.indexPlanFor(resourceType);
    const index = this.keyIndex.get(resourceType);
    const ids = new Set<string>();
    const scanned: string[] = [];
    for (const code of codes) {
      const param = plan.params.get(code);
      if (param?.kind !== 'reference') {
        const expression = searchParameterFor(resourceType, code)?.expression;
        if (expression) scanned.push(expression);
        continue;
      }
      for (const field of param.fields) {
        for (const ref of references) for (const id of index?.get(indexKey('reference', field, ref)) ?? []) ids.add(id);
      }
    }
    if (scanned.length > 0) {
      for (const r of all.values()) {
        if (ids.has(r.id as string)) continue;
        if (scanned.some((expression) => referencesAt(r, expression).some((ref) => references.has(ref)))) ids.add(r.id as string);
      }
    }
    const seqs = this.seq.get(resourceType);
    const out: Resource[] = [];
    for (const id of ids) {
      const r = all.get(id);
      if (r) out.push(r);
    }
    return out.sort((a, b) => (seqs?.get(a.id as string) ?? 0) - (seqs?.get(b.id as string) ?? 0));
  }

  override clear(): void {
    super.clear();
    this.keyIndex.clear();
    this.seq.clear();
    this.changes.length = 0;
  }

  /**
   * medplum's search has no default order; offset paging needs a stable one, so results are ordered by
   * creation, or by `_sort` (same key as medplum's: the JSON of the parameter's FHIRPath value) with
   * creation order breaking ties.
   */
  private sortMatches(matches: Resource[], searchRequest: SearchRequest): void {
    const seqs = this.seq.get(searchRequest.resourceType);
    const seqOf = (r: Resource): number => seqs?.get(r.id as string) ?? 0;
    const rules = searchRequest.sortRules ?? [];
    if (rules.length === 0) {
      // A scan yields storage order, which is nearly always creation order already: check before sorting.
      let sorted = true;
      for (let i = 1; i < matches.length && sorted; i++) sorted = seqOf(matches[i - 1]) <= seqOf(matches[i]);
      if (!sorted) {
        const keyed = matches.map((r) => ({ r, seq: seqOf(r) }));
        keyed.sort((a, b) => a.seq - b.seq);
        keyed.forEach((k, i) => (matches[i] = k.r));
      }
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
   * exactly, which need no re-evaluation.
   *
   * Indexed: `_id`, and every reference and token parameter whose expression (narrowed to the type) is a
   * union of plain paths like `Observation.subject` or `RiskAssessment.identifier` (see `indexPlanFor`):
   * references by their exact reference string, tokens when every value of the filter is `system|code`
   * (medplum compares system and code case-insensitively, as the lowercased keys do; a plain `code=x`
   * also matches CodeableConcept.text and display in medplum, so it is left to the matcher). Index keys
   * are computed with medplum's own FHIRPath property access and token/reference conversion, so for
   * these filters the index holds exactly what the matcher would accept; a reference path filtered by
   * `.where(resolve() is X)` (e.g. Observation's `patient`) is a superset, which the matcher still checks.
   *
   * With several indexed filters the one with the fewest ids is expanded and the others are checked by
   * set membership, so a filter matching most resources of the type (a common LOINC code) costs nothing
   * per request beyond the candidates of the most selective one.
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
    const plan = this.indexPlanFor(type);
    if (plan.params.size === 0) return undefined;
    const index = this.keyIndex.get(type);
    const probes: { filter: Filter; sets: Set<string>[]; size: number; exact: boolean }[] = [];
    for (const filter of filters) {
      const param = plan.params.get(filter.code);
      if (!param) continue;
      const values = splitSearchOnComma(filter.value);
      if (param.kind === 'token' && !values.every((v) => TOKEN_SYSTEM_AND_CODE.test(v))) continue;
      const keys = new Set<string>();
      for (const v of values) for (const field of param.fields) keys.add(indexKey(param.kind, field, v));
      const sets: Set<string>[] = [];
      let size = 0;
      for (const key of keys) {
        const ids = index?.get(key);
        if (ids) {
          sets.push(ids);
          size += ids.size;
        }
      }
      probes.push({ filter, sets, size, exact: param.exact });
    }
    if (probes.length === 0) return undefined;
    probes.sort((a, b) => a.size - b.size);
    const [smallest, ...rest] = probes;
    const ids = smallest.sets.length === 1 ? smallest.sets[0] : new Set<string>();
    if (smallest.sets.length > 1) for (const set of smallest.sets) for (const id of set) ids.add(id);
    const candidates: Resource[] = [];
    for (const id of ids) {
      if (!rest.every((p) => p.sets.some((s) => s.has(id)))) continue;
      const r = all.get(id);
      if (r) candidates.push(r);
    }
    return { candidates, satisfied: probes.filter((p) => p.exact).map((p) => p.filter) };
  }

  /** Which parameters of `type` the index serves, and the fields behind them; computed once per type. */
  private indexPlanFor(type: string): IndexPlan {
    let plan = this.indexPlans.get(type);
    if (!plan) {
      plan = { params: new Map(), fields: [] };
      if (isR4ResourceType(type)) {
        const seen = new Set<string>();
        for (const [code, sp] of Object.entries(searchParametersOf(type))) {
          if (code === '_id' || (sp.type !== 'reference' && sp.type !== 'token')) continue;
          const paths = parseIndexablePaths(type, sp.expression, sp.type);
          if (!paths) continue;
          plan.params.set(code, { kind: sp.type, fields: paths.fields, exact: paths.exact });
          for (const field of paths.fields) {
            if (seen.has(`${sp.type}:${field}`)) continue;
            seen.add(`${sp.type}:${field}`);
            plan.fields.push({ kind: sp.type, field });
          }
        }
      }
      this.indexPlans.set(type, plan);
    }
    return plan;
  }

  /**
   * Index keys of a resource: `r:<field>:<reference>` and `t:<field>:<system>|<code>` (lowercased).
   * Values are read exactly as medplum's FHIRPath reads `Type.field` (`getTypedPropertyValue`, then the
   * same `.valueOf()` as `evalFhirPathTyped`) and converted with the matcher's own
   * `convertToSearchableReferences`/`convertToSearchableTokens`, so a key exists iff the matcher would
   * accept that value.
   */
  private keysOf(resource: Resource): string[] {
    const plan = this.indexPlanFor(resource.resourceType);
    if (plan.fields.length === 0) return [];
    const keys = new Set<string>();
    const root = toTypedValue(resource);
    for (const { kind, field } of plan.fields) {
      const raw = getTypedPropertyValue(root, field);
      if (raw === undefined) continue;
      const values: TypedValue[] = [];
      for (const v of Array.isArray(raw) ? raw : [raw]) {
        if (v?.value !== undefined) values.push({ type: v.type, value: v.value?.valueOf() });
      }
      if (values.length === 0) continue;
      if (kind === 'reference') {
        for (const ref of convertToSearchableReferences(values)) if (typeof ref === 'string') keys.add(`r:${field}:${ref}`);
      } else {
        for (const token of convertToSearchableTokens(values)) {
          const { system, value } = token as { system?: unknown; value?: unknown };
          if (typeof system === 'string' && system !== '' && typeof value === 'string' && value !== '') {
            keys.add(`t:${field}:${system.toLowerCase()}|${value.toLowerCase()}`);
          }
        }
      }
    }
    return [...keys];
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

/**
 * A `_lastUpdated` filter as a predicate on the stored instant, with exactly medplum's date semantics
 * (`matchesDateFilter`/`matchesDateValue` in @medplum/core, where an instant with milliseconds is the
 * period [t, t]); undefined for operators it does not cover (`:missing`), which the matcher keeps.
 * Stored instants are all server-written ISO UTC strings, so string comparison is time comparison.
 */
function lastUpdatedPredicate(filter: Filter): ((instant: string | undefined) => boolean) | undefined {
  const op = filter.operator;
  const compare: Partial<Record<Operator, (t: string, start: string, end: string) => boolean>> = {
    [Operator.EQUALS]: (t, s, e) => t < e && t > s,
    [Operator.APPROXIMATELY]: (t, s, e) => t < e && t > s,
    [Operator.NOT_EQUALS]: (t, s, e) => t < e && t > s,
    [Operator.LESS_THAN]: (t, s) => t < s,
    [Operator.GREATER_THAN]: (t, _s, e) => t > e,
    [Operator.LESS_THAN_OR_EQUALS]: (t, _s, e) => t <= e,
    [Operator.GREATER_THAN_OR_EQUALS]: (t, s) => t >= s,
    [Operator.STARTS_AFTER]: (t, _s, e) => t > e,
    [Operator.ENDS_BEFORE]: (t, s) => t < s,
  };
  const cmp = compare[op];
  if (!cmp) return undefined;
  const negated = op === Operator.NOT_EQUALS;
  const periods = splitSearchOnComma(filter.value).map((v) => {
    try {
      return toPeriod(v);
    } catch {
      return undefined; // medplum's matcher treats an unparsable value as no match, and so do we
    }
  });
  return (instant) => {
    if (!instant) return negated;
    for (const p of periods) if (p?.start && p.end && cmp(instant, p.start, p.end)) return !negated;
    return negated;
  };
}

/** The reference strings a search parameter expression yields on a resource (as medplum's matcher sees them). */
export function referencesAt(resource: Resource, expression: string): string[] {
  const refs = convertToSearchableReferences(evalFhirPathTyped(expression, [toTypedValue(resource)]));
  return refs.filter((ref): ref is string => typeof ref === 'string');
}

/** Token filter values the index answers: exactly one `|`, with a non-empty system and code on either side. */
const TOKEN_SYSTEM_AND_CODE = /^[^|]+\|[^|]+$/;

/** Key of one filter value in the index (see `keysOf`). */
function indexKey(kind: 'reference' | 'token', field: string, value: string): string {
  return kind === 'reference' ? `r:${field}:${value}` : `t:${field}:${value.toLowerCase()}`;
}

function unique(resources: (Resource | undefined)[]): Resource[] {
  const seen = new Set<Resource>();
  for (const r of resources) if (r) seen.add(r);
  return [...seen];
}

/**
 * Fields behind a reference or token search parameter for one type, when its expression (narrowed to the
 * type; possibly a union) consists only of plain paths like `Observation.subject`, or, for references,
 * `Observation.subject.where((resolve() is Patient))` (then `exact` is false: the index holds a superset
 * and the matcher decides). Anything else (`as`, `ofType`, nested paths, other types' or `Resource.`
 * paths) is not indexed, because the index must never miss a resource medplum's matcher accepts.
 */
export function parseIndexablePaths(
  type: string,
  expression: string | undefined,
  kind: 'reference' | 'token',
): { fields: string[]; exact: boolean } | undefined {
  if (!expression) return undefined;
  const parts = expression.split('|').map((p) => p.trim());
  const fields: string[] = [];
  let exact = true;
  const re = new RegExp(`^${type}\\.([a-zA-Z]+)(\\.where\\(\\(?resolve\\(\\) is [A-Za-z]+\\)?\\))?$`);
  for (const part of parts) {
    const m = re.exec(part);
    if (!m || (m[2] && kind !== 'reference')) return undefined;
    if (!fields.includes(m[1])) fields.push(m[1]);
    if (m[2]) exact = false;
  }
  return fields.length ? { fields, exact } : undefined;
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
