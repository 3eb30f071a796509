import { decide, findTriggers, newScopeScratch, scopeTriggers, type Trig } from './context.js';
import {
  CATEGORY_EFFECT,
  DIMENSION_NAMES,
  nlpRules,
  type Assertion,
  type CompiledRules,
  type Concept,
  type Dimension,
  type Experiencer,
  type ModifierCategory,
  type Negation,
  type Temporality,
} from './rules.js';
import { analyzeStructure, type Unit } from './structure.js';
import { Gap, tokenize, tokenizePhrase, type Tokens } from './tokens.js';
import { newTrie, trieInsert, trieLongest, trieLongestClassed, type TrieNode } from './trie.js';

/**
 * The clinical NLP pipeline for one text:
 *   tokens (wink-nlp, de-identification tags kept whole, hyphenated words split; tokens.ts) ->
 *   document structure (headings, slot headers, list markers, clinical sentence units; structure.ts) ->
 *   per unit: longest-match trie lookup of triggers, lexicon concepts and caller targets ->
 *   ConText scopes and one value per dimension (context.ts) -> section defaults -> summary assertion.
 */

export interface Sentence {
  text: string;
  start: number;
  end: number;
  section: string | null;
}

/** Why a dimension has its value: a trigger in the text, or the default of the section. */
export type Cue = { trigger: string; start: number; end: number } | { section: string };

export interface Mention {
  /** The matched text as written. */
  text: string;
  /** Character span in the analysed text (end exclusive). */
  start: number;
  end: number;
  section: string | null;
  /** Index into `sentences`. */
  sentence: number;
  concept?: Concept;
  /** The caller's target phrase this mention matched, as given. */
  target?: string;
  /** ConText certainty: affirmed, negated or possible. */
  negation: Negation;
  /** ConText temporality: recent (current), historical or hypothetical. */
  temporality: Temporality;
  /** ConText experiencer: the patient, or another person (family history, a donor, ...). */
  experiencer: Experiencer;
  /** What decided each non-default dimension. */
  cues: Partial<Record<Dimension, Cue>>;
  /**
   * One summary value, kept for callers of the single-assertion API: the first of other-subject,
   * hypothetical, negated, possible, historical (order in context-rules.yaml `assertion`) that the
   * dimensions show, else affirmed. See `summaryAssertion`.
   */
  assertion: Assertion;
  /** The trigger text that decided `assertion` (absent when affirmed or set by a section default). */
  trigger?: string;
}

export interface AnalyzeOptions {
  /** Extra phrases to find and assert, besides the lexicon (matched like synonyms). */
  targets?: string[];
  /** Most sentences in the summary (default 5). */
  summarySentences?: number;
}

export interface TextAnalysis {
  sentences: Sentence[];
  mentions: Mention[];
  summary: string[];
}

const DEFAULTS = { negation: 'affirmed', temporality: 'recent', experiencer: 'patient' } as const;

/** The summary assertion of three dimension values, in the rules' order (see `Mention.assertion`). */
export function summaryAssertion(
  dims: { negation: Negation; temporality: Temporality; experiencer: Experiencer },
  order: readonly ModifierCategory[] = nlpRules().assertionOrder,
): Assertion {
  for (const category of order) {
    const { dimension, value } = CATEGORY_EFFECT[category];
    if (dims[dimension] === value) return category;
  }
  return 'affirmed';
}

interface RawMention {
  start: number;
  end: number;
  concept?: Concept;
  target?: string;
}

export function analyzeText(text: string, options: AnalyzeOptions = {}, rules: CompiledRules = nlpRules()): TextAnalysis {
  const t = tokenize(text);
  const st = analyzeStructure(text, t, rules);
  const targetTrie = options.targets?.length ? compileTargets(options.targets) : undefined;

  // Output sentences: a known heading's words are not a sentence; a slot header's words are shown with
  // the content that follows it on the same line ("Lungs: clear").
  const sentences: Sentence[] = [];
  const sentenceOf: number[] = new Array(st.units.length);
  for (let ui = 0; ui < st.units.length; ui++) {
    const u = st.units[ui];
    const next = st.units[ui + 1];
    if (u.label?.section && next && next.slot === u.label) {
      sentenceOf[ui] = sentences.length; // shares the next unit's sentence
      continue;
    }
    if (u.label && next && next.slot === u.label && next.slotHead && t.gap[next.start] < Gap.Newline) {
      sentenceOf[ui] = sentenceOf[ui + 1] = sentences.length;
      sentences.push(sentence(text, t, st.section, u.start, next.end, next.start));
      ui++;
      continue;
    }
    sentenceOf[ui] = sentences.length;
    sentences.push(sentence(text, t, st.section, u.start, u.end, u.start));
  }

  // Triggers per unit, found when first needed (a unit with mentions, or the header of its slot).
  const unitTrigs: (Trig[] | undefined)[] = new Array(st.units.length);
  const trigsOf = (ui: number): Trig[] => (unitTrigs[ui] ??= findTriggers(rules, t, st.units[ui].start, st.units[ui].end, st.skip));
  const labelUnit = new Map<Unit['label'], number>();
  st.units.forEach((u, i) => u.label && labelUnit.set(u.label, i));
  const scratch = newScopeScratch(t.length);

  const mentions: Mention[] = [];
  let coveredUntil = 0; // a mention may run on into the label of a header that follows on its line
  for (let ui = 0; ui < st.units.length; ui++) {
    const u = st.units[ui];
    const next = st.units[ui + 1];
    const runOn = next?.label && next.start === u.end && t.gap[next.start] < Gap.Newline ? next.end : u.end;
    let found = findMentions(rules, targetTrie, t, u.start, runOn, st.skip);
    if (runOn !== u.end || coveredUntil > u.start) found = found.filter((m) => m.start < u.end && m.start >= coveredUntil);
    for (const m of found) coveredUntil = Math.max(coveredUntil, m.end);
    if (found.length === 0) continue;
    let inherited: Trig[] = [];
    // A slot header's own cue words reach the slot's first unit and its list items ("Denies: fever,
    // chills", "Rule out: PE"); a known section's heading does not (its section default does that,
    // and radiology "HISTORY:" is the clinical question, not a history cue).
    // Only a label made of cue words passes them on ("Denies:", "Mother:"), not a finding with a cue
    // ("Suspected Lyme disease: erythema migrans-like lesion").
    if (u.slot && u.slotHead && !u.slot.section) {
      const li = labelUnit.get(u.slot);
      if (li !== undefined) {
        const label = st.units[li];
        const all = cueOnly(t, label, trigsOf(li));
        // An instruction label passes its hypothetical cue on ("Return for signs of infection: pus").
        inherited = trigsOf(li).filter(
          (tr) => tr.entry.kind === 'trigger' && tr.entry.forward > 0 && (all || (tr.entry.category === 'hypothetical' && reachesEnd(t, tr, label))),
        );
      }
    }
    // A mention that runs on into a header label is scoped over both.
    const end = found.some((m) => m.end > u.end) ? runOn : u.end;
    const trigs = end === u.end ? trigsOf(ui) : findTriggers(rules, t, u.start, end, st.skip);
    const scoped = scopeTriggers(t, trigs, u.start, end, st.skip, scratch, inherited);
    // Terminators that set a dimension back to its default before a mention beat the section default
    // ("Patient herself has no history of X" under FAMILY HISTORY).
    const resets = trigs.filter((tr) => tr.entry.kind === 'terminator' && tr.entry.resets);
    // A header's own words take the answer given in its slot ("COMPLICATIONS: none").
    const answer = u.label ? slotAnswer(rules, t, st.units, ui, trigsOf, st.skip) : undefined;
    for (const m of found) {
      const decided = decide(scoped, m.start, m.end, rules.precedence);
      const values: { negation: Negation; temporality: Temporality; experiencer: Experiencer } = { ...DEFAULTS };
      const cues: Partial<Record<Dimension, Cue>> = {};
      for (const d of DIMENSION_NAMES) {
        const dec = decided[d];
        if (dec) {
          (values as Record<Dimension, string>)[d] = CATEGORY_EFFECT[dec.category].value;
          cues[d] = { trigger: text.slice(t.start[dec.trig.start], t.end[dec.trig.end - 1]), start: t.start[dec.trig.start], end: t.end[dec.trig.end - 1] };
        }
      }
      if (answer && !decided.negation) {
        values.negation = answer.value;
        if (answer.value !== 'affirmed') cues.negation = answer.cue;
      }
      const def = st.sectionDefault[m.start];
      if (def) {
        const { dimension, value } = CATEGORY_EFFECT[def];
        const reset = resets.some((r) => r.end <= m.start && r.entry.kind === 'terminator' && r.entry.dimensions.has(dimension));
        // Another person's condition is not history because it sits under PAST MEDICAL HISTORY.
        const otherPerson = dimension === 'temporality' && decided.experiencer !== undefined;
        if (!reset && !otherPerson && !cues[dimension] && (values as Record<Dimension, string>)[dimension] === DEFAULTS[dimension]) {
          (values as Record<Dimension, string>)[dimension] = value;
          cues[dimension] = { section: st.section[m.start]! };
        }
      }
      const assertion = summaryAssertion(values, rules.assertionOrder);
      const mention: Mention = {
        text: text.slice(t.start[m.start], t.end[m.end - 1]),
        start: t.start[m.start],
        end: t.end[m.end - 1],
        section: st.section[m.start],
        sentence: sentenceOf[ui],
        negation: values.negation,
        temporality: values.temporality,
        experiencer: values.experiencer,
        cues,
        assertion,
      };
      if (m.concept) mention.concept = m.concept;
      if (m.target !== undefined) mention.target = m.target;
      if (assertion !== 'affirmed') {
        const cue = cues[CATEGORY_EFFECT[assertion].dimension];
        if (cue && 'trigger' in cue) mention.trigger = cue.trigger;
      }
      mentions.push(mention);
    }
  }
  return { sentences, mentions, summary: summarize(sentences, mentions, options.summarySentences ?? 5) };
}

/** Whether a trigger's forward window runs to the end of a header label. */
function reachesEnd(t: Tokens, tr: Trig, label: Unit): boolean {
  return tr.entry.kind === 'trigger' && label.end - tr.end <= tr.entry.forward;
}

/** A header label made only of cue words (triggers, pseudo-triggers, joiners, punctuation). */
function cueOnly(t: Tokens, label: Unit, trigs: Trig[]): boolean {
  let covered = label.start;
  for (let i = label.start; i < label.end; i++) {
    const tr = trigs.find((x) => x.start === i);
    if (tr) {
      covered = tr.end;
      i = tr.end - 1;
      continue;
    }
    if (i >= covered && /[a-z0-9]/.test(t.norm[i])) return false;
  }
  return trigs.some((x) => x.entry.kind === 'trigger');
}

function sentence(text: string, t: Tokens, section: (string | null)[], a: number, b: number, contentStart: number): Sentence {
  return { text: text.slice(t.start[a], t.end[b - 1]), start: t.start[a], end: t.end[b - 1], section: section[contentStart] ?? null };
}

/**
 * The answer a header's slot gives the header's own words: the slot's first unit starts with an
 * answer ("none", "no", "negative", "yes") or with a trigger that reaches backward ("not seen",
 * "absent"), and either mentions nothing itself or the answer stands alone before a list joiner.
 */
function slotAnswer(
  rules: CompiledRules,
  t: Tokens,
  units: Unit[],
  ui: number,
  trigsOf: (ui: number) => Trig[],
  skip: Uint8Array,
): { value: Negation; cue: Cue } | undefined {
  const label = units[ui].label!;
  const ci = units.findIndex((u, k) => k > ui && u.slot === label);
  if (ci < 0 || ci > ui + 1) return undefined;
  const c = units[ci];
  let end = -1;
  let value: Negation | undefined;
  const ans = trieLongestClassed(rules.answerTrie, t.norm, t.cls, c.start, c.end, skip);
  if (ans) {
    end = ans[0];
    value = ans[1];
  } else {
    const first = trigsOf(ci)[0];
    const e = first?.entry.kind === 'trigger' ? [first.entry, ...(first.entry.also ?? [])].find((x) => x.dimension === 'negation') : undefined;
    if (first && e && first.start === c.start && e.backward > 0) {
      end = first.end;
      value = CATEGORY_EFFECT[e.category].value as Negation;
    }
  }
  if (value === undefined) return undefined;
  // The answer must stand alone: "none." / "no," / "negative;" but not "no evidence of X".
  const alone = end >= c.end || [',', ';', '.', ')', '('].includes(t.norm[end]);
  if (!alone) return undefined;
  return { value, cue: { trigger: t.norm.slice(c.start, end).join(' '), start: t.start[c.start], end: t.end[end - 1] } };
}

type ConceptOrExclude = { concept: Concept } | { exclude: true };

function findMentions(rules: CompiledRules, targets: TrieNode<string> | undefined, t: Tokens, a: number, b: number, skip: Uint8Array): RawMention[] {
  const out: RawMention[] = [];
  const norm = t.norm;
  for (let i = a; i < b; ) {
    if (skip[i]) {
      i++;
      continue;
    }
    const hit = trieLongest<ConceptOrExclude>(rules.conceptTrie, norm, i, b);
    if (hit) {
      if ('concept' in hit[1]) out.push({ start: i, end: hit[0], concept: hit[1].concept });
      i = hit[0];
    } else i++;
  }
  if (targets) {
    // Every target occurrence, also one inside a longer target ("effusion" in "pericardial effusion"):
    // the caller asked for each phrase.
    for (let i = a; i < b; i++) {
      const hit = skip[i] ? undefined : trieLongest(targets, norm, i, b);
      if (!hit) continue;
      const same = out.find((m) => m.start === i && m.end === hit[0]);
      if (same) same.target = hit[1];
      else out.push({ start: i, end: hit[0], target: hit[1] });
    }
    out.sort((x, y) => x.start - y.start || y.end - x.end);
  }
  return out;
}

const targetCache = new Map<string, TrieNode<string>>();
function compileTargets(targets: string[]): TrieNode<string> {
  const key = targets.join('\u0000');
  let trie = targetCache.get(key);
  if (!trie) {
    trie = newTrie<string>();
    for (const t of targets) {
      const tokens = tokenizePhrase(t);
      if (tokens.length > 0) trieInsert(trie, tokens, t);
    }
    if (targetCache.size >= 64) targetCache.delete(targetCache.keys().next().value!);
    targetCache.set(key, trie);
  }
  return trie;
}

const SUMMARY_FIRST = new Set(['IMPRESSION', 'CONCLUSION', 'DIAGNOSES']);
const SUMMARY_SKIP = new Set(['INDICATION', 'HISTORY', 'TECHNIQUE', 'COMPARISON', 'EXAMINATION', 'CHIEF COMPLAINT', 'PAST MEDICAL HISTORY', 'FAMILY HISTORY', 'SOCIAL HISTORY', 'MEDICATIONS', 'ALLERGIES']);

/** Extractive summary: IMPRESSION/CONCLUSION sentences first, then other sentences with an affirmed finding. */
function summarize(sentences: Sentence[], mentions: Mention[], max: number): string[] {
  const picked = new Set<number>();
  sentences.forEach((s, i) => {
    if (picked.size < max && s.section && SUMMARY_FIRST.has(s.section)) picked.add(i);
  });
  for (const m of mentions) {
    if (picked.size >= max) break;
    if (m.assertion !== 'affirmed' || !m.concept) continue;
    const s = sentences[m.sentence];
    if (s.section && SUMMARY_SKIP.has(s.section)) continue;
    picked.add(m.sentence);
  }
  // Text with neither an impression nor an affirmed finding (a negative study, a short note): its
  // opening sentences are the best extract there is, rather than an empty summary.
  if (picked.size === 0) {
    for (let i = 0; i < sentences.length && picked.size < Math.min(2, max); i++) {
      if (!(sentences[i].section && SUMMARY_SKIP.has(sentences[i].section!))) picked.add(i);
    }
  }
  const first = [...picked].filter((i) => sentences[i].section && SUMMARY_FIRST.has(sentences[i].section!));
  const rest = [...picked].filter((i) => !first.includes(i)).sort((x, y) => x - y);
  const seen = new Set<string>();
  return [...first, ...rest]
    .map((i) => sentences[i].text.replace(/\s+/g, ' ').trim())
    .filter((t) => !seen.has(t) && (seen.add(t), true));
}
