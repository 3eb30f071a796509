import type { CompiledRules, Dimension, ModifierCategory, TriggerEntry } from './rules.js';
import type { Tokens } from './tokens.js';
import { trieLongestClassed } from './trie.js';

/**
 * ConText (Harkema et al. 2009) over one analysis unit, one dimension at a time.
 *
 * Triggers, pseudo-triggers, terminators, list joiners and clause breaks are found by longest match
 * from left to right (a pseudo-trigger such as "no change in" hides the "no" inside it).
 *
 * A trigger's scope runs from the trigger forward and/or backward, and ends at:
 *   - the unit boundary (sentence, header, list item, line break; see structure.ts);
 *   - a terminator of the trigger's dimension ("but", "however", "which", "due to", ...);
 *   - a trigger of another category of the same dimension ("no fever, possible pneumonia"), except
 *     that a negation reaches through an uncertainty trigger that does not begin a new list item:
 *     "no findings suggestive of pneumonia" is negated (see `precedence` for when both reach);
 *   - forward only: a clause break (a verb that starts a new clause: "has", "was", "reports") of the
 *     trigger's dimension once the scope has covered some words ("no fever, has cough": cough is
 *     affirmed; "does not have fever": the verb right after the trigger does not end it). Backward
 *     scopes run over verbs ("the nodule described on the prior CT is no longer seen");
 *   - its window: a number of tokens counted from the trigger or from the last list joiner (",", "and",
 *     "or", "nor", ...), so a coordinated list of any length stays in scope ("denies A, B, C, D, or E");
 *   - backward only: a comma, unless the words between it and the trigger contain a coordinator
 *     ("fever, chills and cough are absent" reaches fever; "CXR shows pneumonia, cultures are
 *     negative" stops at the comma).
 */

export interface Trig {
  start: number;
  end: number;
  entry: TriggerEntry;
}

export interface ScopedTrig {
  trig: Trig;
  category: ModifierCategory;
  dimension: Dimension;
  /** Forward scope [fLo, fHi) and backward scope [bLo, bHi) in tokens (empty when lo >= hi). */
  fLo: number;
  fHi: number;
  bLo: number;
  bHi: number;
}

export function findTriggers(rules: CompiledRules, t: Tokens, a: number, b: number, skip: Uint8Array): Trig[] {
  const out: Trig[] = [];
  for (let i = a; i < b; ) {
    const hit = trieLongestClassed(rules.triggerTrie, t.norm, t.cls, i, b, skip);
    if (hit) {
      out.push({ start: i, end: hit[0], entry: hit[1] });
      i = hit[0];
    } else i++;
  }
  return out;
}

const WORD = /[a-z0-9]/;

/**
 * Per-text scratch space: for each token, 1 + the index of the trigger starting / ending there in the
 * current unit (0: none). Allocated once per text, cleared after each unit.
 */
export interface ScopeScratch {
  startAt: Int32Array;
  endAt: Int32Array;
}

export function newScopeScratch(tokens: number): ScopeScratch {
  return { startAt: new Int32Array(tokens), endAt: new Int32Array(tokens) };
}

/**
 * Scopes of the unit's triggers. `inherited` are triggers of a header label that reach into this
 * unit from its start (forward only).
 */
export function scopeTriggers(
  t: Tokens,
  trigs: Trig[],
  a: number,
  b: number,
  skip: Uint8Array,
  scratch: ScopeScratch,
  inherited: Trig[] = [],
): ScopedTrig[] {
  const { startAt, endAt } = scratch;
  for (let k = 0; k < trigs.length; k++) {
    startAt[trigs[k].start] = k + 1;
    endAt[trigs[k].end - 1] = k + 1;
  }
  const out: ScopedTrig[] = [];
  for (const tr of trigs) addScope(out, t, tr, tr.end, false, a, b, skip, trigs, startAt, endAt);
  for (const tr of inherited) addScope(out, t, tr, a, true, a, b, skip, trigs, startAt, endAt);
  for (const tr of trigs) {
    startAt[tr.start] = 0;
    endAt[tr.end - 1] = 0;
  }
  return out;
}

function addScope(
  out: ScopedTrig[],
  t: Tokens,
  tr: Trig,
  from: number,
  forwardOnly: boolean,
  a: number,
  b: number,
  skip: Uint8Array,
  trigs: Trig[],
  startAt: Int32Array,
  endAt: Int32Array,
): void {
  const e = tr.entry;
  if (e.kind !== 'trigger') return;
  const s: ScopedTrig = { trig: tr, category: e.category, dimension: e.dimension, fLo: from, fHi: from, bLo: tr.start, bHi: tr.start };
  if (e.forward > 0) s.fHi = forwardEnd(t, e, from, b, skip, trigs, startAt, endAt);
  if (!forwardOnly && e.backward > 0) s.bLo = backwardStart(e, tr.start - 1, a, skip, trigs, endAt);
  out.push(s);
}

function blocks(e: Extract<TriggerEntry, { kind: 'trigger' }>, o: TriggerEntry): boolean {
  if (o.kind === 'terminator') return o.dimensions.has(e.dimension);
  return o.kind === 'trigger' && o.dimension === e.dimension && o.category !== e.category;
}

function forwardEnd(
  t: Tokens,
  e: Extract<TriggerEntry, { kind: 'trigger' }>,
  from: number,
  b: number,
  skip: Uint8Array,
  trigs: Trig[],
  startAt: Int32Array,
  endAt: Int32Array,
): number {
  let count = 0;
  let content = false;
  let j = from;
  while (j < b) {
    if (skip[j]) {
      j++;
      continue;
    }
    const oi = startAt[j];
    if (oi > 0) {
      const o = trigs[oi - 1];
      const k = o.entry.kind;
      if (blocks(e, o.entry)) {
        // Negation over uncertainty ("no findings suggestive of X") unless it starts a new list item.
        const before = j > 0 ? endAt[j - 1] : 0;
        const afterJoiner = before > 0 && trigs[before - 1].entry.kind === 'joiner';
        const over = e.category === 'negated' && o.entry.kind === 'trigger' && o.entry.category === 'possible' && !afterJoiner;
        if (!over) break;
      }
      if (o.entry.kind === 'clause' && content && o.entry.dimensions.has(e.dimension)) break;
      if (k === 'joiner') {
        if (e.lists) count = 0;
        else count += o.end - o.start;
        j = o.end;
        continue;
      }
      count += o.end - o.start;
      if (count > e.forward) break;
      j = o.end;
      continue;
    }
    if (++count > e.forward) break;
    if (!content && WORD.test(t.norm[j])) content = true;
    j++;
  }
  return j;
}

function backwardStart(e: Extract<TriggerEntry, { kind: 'trigger' }>, from: number, a: number, skip: Uint8Array, trigs: Trig[], endAt: Int32Array): number {
  let count = 0;
  let coordinated = false;
  let crossedComma = false;
  let j = from;
  while (j >= a) {
    if (skip[j]) {
      j--;
      continue;
    }
    const oi = endAt[j];
    if (oi > 0) {
      const o = trigs[oi - 1];
      const k = o.entry.kind;
      if (blocks(e, o.entry)) break;
      if (k === 'joiner') {
        if (o.entry.phrase === ',') {
          if (!coordinated && !crossedComma) break;
          crossedComma = true;
        } else coordinated = true;
        if (e.lists) count = 0;
        j = o.start - 1;
        continue;
      }
      count += o.end - o.start;
      if (count > e.backward) break;
      j = o.start - 1;
      continue;
    }
    if (++count > e.backward) break;
    j--;
  }
  return j + 1;
}

export interface Decision {
  category: ModifierCategory;
  trig: Trig;
}

/**
 * The category each dimension takes for a mention [ms, me): among the triggers of that dimension whose
 * scope holds the mention (its first token forward, its last token backward), the one first in
 * `precedence`, then the nearest. A trigger overlapping the mention modifies nothing.
 */
export function decide(scoped: ScopedTrig[], ms: number, me: number, precedence: Record<ModifierCategory, number>): Partial<Record<Dimension, Decision>> {
  const best: Partial<Record<Dimension, { s: ScopedTrig; dist: number }>> = {};
  for (const s of scoped) {
    const tr = s.trig;
    if (tr.start < me && ms < tr.end) continue;
    let dist = -1;
    if (ms >= s.fLo && ms < s.fHi) dist = ms - s.fLo;
    else if (me <= tr.start && me - 1 >= s.bLo && me - 1 < s.bHi) dist = tr.start - me;
    if (dist < 0) continue;
    const cur = best[s.dimension];
    if (!cur || precedence[s.category] < precedence[cur.s.category] || (s.category === cur.s.category && dist < cur.dist)) {
      best[s.dimension] = { s, dist };
    }
  }
  const out: Partial<Record<Dimension, Decision>> = {};
  for (const d of Object.keys(best) as Dimension[]) out[d] = { category: best[d]!.s.category, trig: best[d]!.s.trig };
  return out;
}
