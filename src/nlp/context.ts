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
 *   - the parenthesis the trigger stands in ("CMV positive (recipient CMV negative)");
 *   - a terminator of the trigger's dimension ("but", "however", "which", "due to", "given", ...);
 *   - a trigger of another category of the same dimension ("no fever, possible pneumonia"), except
 *     that a negation reaches through an uncertainty trigger that follows it within two tokens without
 *     starting a new list item: "no findings suggestive of X", "not suspicious for X" are negated, and
 *     that uncertainty trigger is governed by the negation (it modifies nothing itself);
 *   - forward only: a clause break (a verb that starts a new clause) of the trigger's category (see
 *     `clauseBreaks` in context-rules.yaml). For negation it needs some words in scope first ("no
 *     fever, has cough": cough is affirmed; "does not have fever": a verb right after the trigger
 *     does not end it); a historical scope ends at a present-tense verb at once ("s/p ablation in
 *     2093 presents with palpitations") but runs over past tense ("EGD 2 years ago showed varices").
 *     Hypothetical scopes run over verbs ("if you have X"), and experiencer scopes too ("her
 *     roommate at the home has X");
 *   - its window: a number of tokens counted from the trigger or from the last list joiner (",", "and",
 *     "or", "nor", ...), so a coordinated list of any length stays in scope ("denies A, B, C, D, or E");
 *     words in parentheses do not count ("risks include perforation (about 1 in 1,000), bleeding");
 *   - backward, for negation and experiencer: a comma, unless the words between it and the trigger
 *     contain a coordinator ("fever, chills and cough are absent" reaches fever; "CXR shows pneumonia,
 *     cultures are negative" stops at the comma) or the comma stands right before the trigger ("AKI,
 *     resolved").
 *
 * When several triggers of one dimension reach a mention: for negation the nearest wins (a negation
 * and an uncertainty both reaching a mention are in different clauses: "branches are not evaluated
 * and X cannot be excluded"); for temporality the category first in `precedence` wins (hypothetical),
 * then the nearest. A forward trigger that overlaps the start of the mention ("[no new] lesions",
 * "[Old] infarct" when the cue was included in the target) applies to it.
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
 * current unit (0: none), and whether that trigger is governed. Allocated once per text, cleared after
 * each unit.
 */
export interface ScopeScratch {
  startAt: Int32Array;
  endAt: Int32Array;
  governed: Uint8Array;
}

export function newScopeScratch(tokens: number): ScopeScratch {
  return { startAt: new Int32Array(tokens), endAt: new Int32Array(tokens), governed: new Uint8Array(tokens) };
}

type TriggerOf = Extract<TriggerEntry, { kind: 'trigger' }>;

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
  const { startAt, endAt, governed } = scratch;
  for (let k = 0; k < trigs.length; k++) {
    startAt[trigs[k].start] = k + 1;
    endAt[trigs[k].end - 1] = k + 1;
  }
  const out: ScopedTrig[] = [];
  const w: Walk = { t, b, a, skip, trigs, startAt, endAt, governed };
  for (const tr of trigs) addScope(out, w, tr, tr.end, false);
  for (const tr of inherited) addScope(out, w, tr, a, true);
  const kept = out.filter((s) => !(governed[s.trig.start] && s.dimension === 'negation' && s.category === 'possible'));
  for (const tr of trigs) {
    startAt[tr.start] = 0;
    endAt[tr.end - 1] = 0;
    governed[tr.start] = 0;
  }
  return kept;
}

interface Walk {
  t: Tokens;
  a: number;
  b: number;
  skip: Uint8Array;
  trigs: Trig[];
  startAt: Int32Array;
  endAt: Int32Array;
  governed: Uint8Array;
}

function addScope(out: ScopedTrig[], w: Walk, tr: Trig, from: number, forwardOnly: boolean): void {
  const first = tr.entry;
  if (first.kind !== 'trigger') return;
  // A trigger may set several dimensions ("rule out": hypothetical and possible): one scope each.
  for (const e of first.also ? [first, ...first.also] : [first]) {
    const s: ScopedTrig = { trig: tr, category: e.category, dimension: e.dimension, fLo: from, fHi: from, bLo: tr.start, bHi: tr.start };
    if (e.forward > 0) s.fHi = forwardEnd(w, e, from);
    if (!forwardOnly && e.backward > 0) s.bLo = backwardStart(w, e, tr);
    out.push(s);
  }
}

/** The category `o` sets in a dimension, if it is a trigger with an effect there. */
function categoryIn(o: TriggerEntry, dimension: Dimension): ModifierCategory | undefined {
  if (o.kind !== 'trigger') return undefined;
  if (o.dimension === dimension) return o.category;
  return o.also?.find((x) => x.dimension === dimension)?.category;
}

function blocks(e: TriggerOf, o: TriggerEntry): boolean {
  if (o.kind === 'terminator') return o.dimensions.has(e.dimension);
  const c = categoryIn(o, e.dimension);
  return c !== undefined && c !== e.category;
}

function forwardEnd(w: Walk, e: TriggerOf, from: number): number {
  const { t, b, skip, trigs, startAt, endAt } = w;
  const needContent = e.dimension === 'negation';
  let count = 0;
  let content = false;
  let depth = 0;
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
        const over = e.category === 'negated' && categoryIn(o.entry, 'negation') === 'possible' && !afterJoiner && j - from <= GOVERN_GAP;
        if (!over) break;
        w.governed[o.start] = 1;
      }
      if (o.entry.kind === 'clause' && o.entry.categories.has(e.category) && (content || !needContent)) break;
      if (k === 'joiner') {
        if (e.listsForward) count = 0;
        else count += o.end - o.start;
        j = o.end;
        continue;
      }
      if (depth === 0) count += o.end - o.start;
      if (count > e.forward) break;
      if (k === 'trigger') content = true;
      j = o.end;
      continue;
    }
    const v = t.norm[j];
    // A parenthetical aside does not count toward the window; a scope never leaves its parenthesis.
    if (v === '(') depth++;
    else if (v === ')' && depth-- === 0) break;
    if (depth === 0 && v !== ')' && ++count > e.forward) break;
    if (!content && WORD.test(v)) content = true;
    j++;
  }
  return j;
}

/** Largest distance in tokens at which a negation governs an uncertainty trigger ("no focal lesion suspicious for X"). */
const GOVERN_GAP = 4;
const CLOSERS = new Set(['.', ';', ',', ':', ')']);

function backwardStart(w: Walk, e: TriggerOf, tr: Trig): number {
  const { t, a, b, skip, trigs, endAt } = w;
  const commas = e.dimension !== 'temporality';
  // "AKI, resolved." / "Parkinson's disease, probable.": a post-trigger after a comma that ends its
  // clause applies to the item before the comma.
  const endsClause = tr.end >= b || CLOSERS.has(t.norm[tr.end]);
  const from = tr.start - 1;
  let count = 0;
  let coordinated = false;
  let crossedComma = false;
  let content = false;
  let depth = 0;
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
      // A time cue after a verb covers that verb's clause only ("eczema and had an egg allergy as an infant").
      if (k === 'clause' && !commas && content) break;
      if (k === 'joiner') {
        if (o.entry.phrase === ',' && commas) {
          if (!coordinated && !crossedComma && !(j === from && endsClause)) break;
          crossedComma = true;
        } else if (o.entry.phrase !== ',') coordinated = true;
        if (e.listsBackward) count = 0;
        j = o.start - 1;
        continue;
      }
      if (depth === 0) count += o.end - o.start;
      if (count > e.backward) break;
      j = o.start - 1;
      continue;
    }
    const v = t.norm[j];
    if (v === ')') depth++;
    else if (v === '(' && depth-- === 0) break;
    if (depth === 0 && v !== '(' && ++count > e.backward) break;
    if (!content && WORD.test(v)) content = true;
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
 * scope holds the mention (its first token forward, its last token backward), see the module comment.
 */
export function decide(
  scoped: ScopedTrig[],
  ms: number,
  me: number,
  precedence: Record<ModifierCategory, number>,
): Partial<Record<Dimension, Decision>> {
  const best: Partial<Record<Dimension, { s: ScopedTrig; dist: number }>> = {};
  for (const s of scoped) {
    const tr = s.trig;
    let dist = -1;
    if (tr.start < me && ms < tr.end) {
      // Overlap: a forward trigger that begins before the mention and ends inside it ("no [new
      // lesions]"), or a time cue the target starts with ("[Old right cerebellar infarct]").
      if (s.fHi > s.fLo && tr.end < me && (tr.start < ms || (tr.start === ms && s.dimension === 'temporality'))) dist = 0;
    } else if (ms >= s.fLo && ms < s.fHi) dist = ms - s.fLo;
    else if (me <= tr.start && me - 1 >= s.bLo && me - 1 < s.bHi) dist = tr.start - me;
    if (dist < 0) continue;
    const cur = best[s.dimension];
    const better =
      !cur ||
      (s.dimension === 'negation'
        ? dist < cur.dist || (dist === cur.dist && precedence[s.category] < precedence[cur.s.category])
        : precedence[s.category] < precedence[cur.s.category] || (s.category === cur.s.category && dist < cur.dist));
    if (better) best[s.dimension] = { s, dist };
  }
  const out: Partial<Record<Dimension, Decision>> = {};
  for (const d of Object.keys(best) as Dimension[]) out[d] = { category: best[d]!.s.category, trig: best[d]!.s.trig };
  return out;
}
