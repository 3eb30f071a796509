import { normalizeToken, wink, tokenizePhrase } from './wink.js';
import { nlpRules, headingKey, type Assertion, type CompiledRules, type Concept, type ModifierCategory, type TriggerEntry } from './rules.js';
import { newTrie, trieInsert, trieLongest, type TrieNode } from './trie.js';

/**
 * The clinical NLP pipeline for one text:
 *   wink `readDoc` once (tokens + sentence boundaries) → char offsets → section headings (regex over
 *   lines, compiled once) → extra sentence breaks at headings, list items and line breaks →
 *   per sentence: longest-match trie lookup of triggers, lexicon concepts and caller targets →
 *   ConText scopes → one assertion per mention (category precedence from context-rules.yaml).
 */

export interface Sentence {
  text: string;
  start: number;
  end: number;
  section: string | null;
}

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
  assertion: Assertion;
  /** The trigger text that decided the assertion (absent when affirmed, or set by a section default). */
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

interface Heading {
  start: number;
  contentStart: number;
  name: string;
  assertion?: ModifierCategory;
}

interface Trig {
  start: number;
  end: number;
  entry: TriggerEntry;
}

const BULLET = /^(?:[-*\u2022\u25aa\u25cf]|\d{1,2}[.)]?|[a-z][.)])$/;

export function analyzeText(text: string, options: AnalyzeOptions = {}): TextAnalysis {
  const rules = nlpRules();
  const nlp = wink();
  const its = nlp.its;
  const doc = nlp.readDoc(text);
  const tokens = doc.tokens();
  const values = tokens.out(its.value) as string[];
  const spaces = tokens.out(its.precedingSpaces) as string[];
  const spans = doc.sentences().out(its.span) as unknown as [number, number][];

  // Kept (non-whitespace) tokens with char offsets and break hints.
  const n0 = values.length;
  const norm: string[] = [];
  const starts: number[] = [];
  const ends: number[] = [];
  const lineStart: boolean[] = [];
  const blankBefore: boolean[] = [];
  const sentStartOrig = new Uint8Array(n0 + 1);
  for (const [s] of spans) sentStartOrig[s] = 1;
  let cursor = 0;
  let pendingBreak = false;
  let pendingBlank = false;
  let pendingSent = false;
  let lastNewline = -1;
  const sentStart: boolean[] = [];
  for (let i = 0; i < n0; i++) {
    const v = values[i];
    const expected = cursor + spaces[i].length;
    let at = text.startsWith(v, expected) ? expected : text.indexOf(v, cursor);
    if (at < 0 || at - cursor > 64 + spaces[i].length) at = expected;
    // Newlines in the gap before the token (or in a whitespace token) are line breaks; two make a blank line.
    const c0 = v.charCodeAt(0);
    const space = c0 === 10 || c0 === 13 || c0 === 9 || c0 === 32 || c0 === 12 || c0 === 11;
    const scanEnd = space ? at + v.length : at;
    for (let p = cursor; p < scanEnd; p++) {
      if (text.charCodeAt(p) === 10) {
        if (pendingBreak && newlinesOnlyBetween(text, lastNewline, p)) pendingBlank = true;
        pendingBreak = true;
        lastNewline = p;
      }
    }
    cursor = at + v.length;
    if (sentStartOrig[i]) pendingSent = true;
    if (space) continue;
    norm.push(normalizeToken(v));
    starts.push(at);
    ends.push(at + v.length);
    lineStart.push(pendingBreak || norm.length === 1);
    blankBefore.push(pendingBlank);
    sentStart.push(pendingSent || norm.length === 1);
    pendingBreak = pendingBlank = pendingSent = false;
  }
  const n = norm.length;

  // Section headings.
  const headings = findHeadings(text, rules);
  const headingTok = new Uint8Array(n); // tokens inside a heading label
  const sectionOf: (string | null)[] = new Array(n);
  const sectionAssertion: (ModifierCategory | undefined)[] = new Array(n);
  {
    let h = -1;
    for (let i = 0; i < n; i++) {
      while (h + 1 < headings.length && headings[h + 1].start <= starts[i]) h++;
      if (h >= 0) {
        const hd = headings[h];
        sectionOf[i] = hd.name;
        sectionAssertion[i] = hd.assertion;
        if (starts[i] < hd.contentStart) {
          if (i === 0 || !headingTok[i - 1] || starts[i - 1] < hd.start) sentStart[i] = true;
          headingTok[i] = 1;
        } else if (i > 0 && headingTok[i - 1]) sentStart[i] = true;
      } else sectionOf[i] = null;
    }
  }

  // Extra sentence breaks: blank lines, list items, and a new line that starts with a capital or
  // digit (hard-wrapped lines usually continue in lower case). List markers are skipped.
  const skip = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    if (headingTok[i]) {
      skip[i] = 1;
      continue;
    }
    if (!lineStart[i]) continue;
    const v = text.slice(starts[i], ends[i]);
    if (blankBefore[i] || /^[A-Z0-9\u2022*-]/.test(v) || (i > 0 && norm[i - 1] === ':')) sentStart[i] = true;
    if (BULLET.test(v) || BULLET.test(v.replace(/[.)]$/, ''))) {
      // "1." / "1)" / "-" / "•" at line start: a list marker, not text.
      let j = i;
      if (/^\d{1,2}$|^[a-z]$/.test(v) && i + 1 < n && (norm[i + 1] === '.' || norm[i + 1] === ')') && ends[i] === starts[i + 1]) j = i + 1;
      if (BULLET.test(v) || j > i) {
        for (let k = i; k <= j; k++) skip[k] = 1;
        sentStart[i] = true;
        if (j + 1 < n) sentStart[j + 1] = true;
      }
    }
  }

  // Assemble sentences (token ranges over kept tokens, skipping markers and headings).
  const sentences: Sentence[] = [];
  const sentRanges: [number, number][] = [];
  let s0 = -1;
  const close = (end: number) => {
    if (s0 < 0) return;
    let a = s0;
    let b = end;
    while (a < b && skip[a]) a++;
    while (b > a && skip[b - 1]) b--;
    if (a < b) {
      sentRanges.push([a, b]);
      sentences.push({ text: text.slice(starts[a], ends[b - 1]), start: starts[a], end: ends[b - 1], section: sectionOf[a] });
    }
    s0 = -1;
  };
  for (let i = 0; i < n; i++) {
    if (sentStart[i] || skip[i] !== (i > 0 ? skip[i - 1] : skip[i])) close(i);
    if (s0 < 0) s0 = i;
  }
  close(n);

  // Mentions and assertions per sentence.
  const targetTrie = options.targets?.length ? compileTargets(options.targets) : undefined;
  const mentions: Mention[] = [];
  for (let si = 0; si < sentRanges.length; si++) {
    const [a, b] = sentRanges[si];
    const trigs = findTriggers(rules.triggerTrie, norm, a, b);
    const found = findMentions(rules, targetTrie, norm, a, b);
    for (const m of found) {
      const { assertion, trigger } = assertMention(m.start, m.end, trigs, a, b, rules.precedence, rules.scopeGroup);
      let final: Assertion = assertion;
      let trig = trigger;
      if (final === 'affirmed' && sectionAssertion[m.start]) {
        final = sectionAssertion[m.start]!;
        trig = undefined;
      }
      const mention: Mention = {
        text: text.slice(starts[m.start], ends[m.end - 1]),
        start: starts[m.start],
        end: ends[m.end - 1],
        section: sectionOf[m.start],
        sentence: si,
        assertion: final,
      };
      if (m.concept) mention.concept = m.concept;
      if (m.target !== undefined) mention.target = m.target;
      if (trig) mention.trigger = text.slice(starts[trig.start], ends[trig.end - 1]);
      mentions.push(mention);
    }
  }

  return { sentences, mentions, summary: summarize(sentences, mentions, options.summarySentences ?? 5) };
}

export function findHeadings(text: string, rules: CompiledRules): Heading[] {
  const out: Heading[] = [];
  const re = rules.headingPattern;
  re.lastIndex = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    if (m[0].length === 0) {
      re.lastIndex++;
      continue;
    }
    const rule = rules.sectionByHeading.get(headingKey(m[1]));
    if (!rule) continue;
    // A heading without a colon must be alone on its line ("Impression" as a line) — the regex
    // ensures it by ending at `$` in that case.
    const start = m.index + m[0].indexOf(m[1]);
    out.push({ start, contentStart: m.index + m[0].length, name: rule.name, assertion: rule.assertion });
  }
  return out;
}

/** True when only spaces/tabs/CR lie strictly between two newline positions (a blank line). */
function newlinesOnlyBetween(text: string, a: number, b: number): boolean {
  if (a < 0) return false;
  for (let p = a + 1; p < b; p++) {
    const c = text.charCodeAt(p);
    if (c !== 32 && c !== 9 && c !== 13) return false;
  }
  return true;
}

function findTriggers(trie: TrieNode<TriggerEntry>, norm: string[], a: number, b: number): Trig[] {
  const out: Trig[] = [];
  for (let i = a; i < b; ) {
    const hit = trieLongest(trie, norm, i, b);
    if (hit) {
      out.push({ start: i, end: hit[0], entry: hit[1] });
      i = hit[0];
    } else i++;
  }
  return out;
}

interface RawMention {
  start: number;
  end: number;
  concept?: Concept;
  target?: string;
}

type ConceptOrExclude = { concept: Concept } | { exclude: true };

function findMentions(
  rules: CompiledRules,
  targets: TrieNode<string> | undefined,
  norm: string[],
  a: number,
  b: number,
): RawMention[] {
  const out: RawMention[] = [];
  for (let i = a; i < b; ) {
    const hit = trieLongest<ConceptOrExclude>(rules.conceptTrie, norm, i, b);
    if (hit) {
      if ('concept' in hit[1]) out.push({ start: i, end: hit[0], concept: hit[1].concept });
      i = hit[0];
    } else i++;
  }
  if (targets) {
    for (let i = a; i < b; ) {
      const hit = trieLongest(targets, norm, i, b);
      if (hit) {
        const same = out.find((m) => m.start === i && m.end === hit[0]);
        if (same) same.target = hit[1];
        else out.push({ start: i, end: hit[0], target: hit[1] });
        i = hit[0];
      } else i++;
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
      const tokens = tokenizePhrase(t).map(normalizeToken);
      if (tokens.length > 0) trieInsert(trie, tokens, t);
    }
    if (targetCache.size >= 64) targetCache.delete(targetCache.keys().next().value!);
    targetCache.set(key, trie);
  }
  return trie;
}

/**
 * ConText: a trigger's scope runs from the trigger (forward and/or backward) until the sentence
 * boundary, a terminator, a trigger of another category in the same scope group (see
 * context-rules.yaml), or its window. Pseudo-triggers modify
 * nothing and do not end scopes. Among the categories reaching the mention, precedence decides;
 * the nearest trigger of the winning category is reported.
 */
function assertMention(
  mStart: number,
  mEnd: number,
  trigs: Trig[],
  a: number,
  b: number,
  precedence: Record<ModifierCategory, number>,
  group: Record<ModifierCategory, number>,
): { assertion: Assertion; trigger?: Trig } {
  let best: ModifierCategory | undefined;
  let bestTrig: Trig | undefined;
  let bestDist = Infinity;
  for (let k = 0; k < trigs.length; k++) {
    const t = trigs[k];
    if (t.entry.kind !== 'trigger') continue;
    // A trigger overlapping the mention itself modifies nothing.
    if (t.start < mEnd && mStart < t.end) continue;
    const cat = t.entry.category;
    let inScope = false;
    let dist = 0;
    if (t.entry.forward > 0 && mStart >= t.end) {
      let limit = Math.min(b, t.end + t.entry.forward);
      for (let j = k + 1; j < trigs.length; j++) {
        const o = trigs[j];
        if (o.start >= limit) break;
        if (o.entry.kind === 'terminator' || (o.entry.kind === 'trigger' && o.entry.category !== cat && group[o.entry.category] === group[cat])) {
          limit = o.start;
          break;
        }
      }
      if (mStart < limit) {
        inScope = true;
        dist = mStart - t.end;
      }
    }
    if (!inScope && t.entry.backward > 0 && mEnd <= t.start) {
      let limit = Math.max(a, t.start - t.entry.backward);
      for (let j = k - 1; j >= 0; j--) {
        const o = trigs[j];
        if (o.end <= limit) break;
        if (o.entry.kind === 'terminator' || (o.entry.kind === 'trigger' && o.entry.category !== cat && group[o.entry.category] === group[cat])) {
          limit = o.end;
          break;
        }
      }
      if (mStart >= limit) {
        inScope = true;
        dist = t.start - mEnd;
      }
    }
    if (!inScope) continue;
    if (best === undefined || precedence[cat] < precedence[best] || (cat === best && dist < bestDist)) {
      best = cat;
      bestTrig = t;
      bestDist = dist;
    }
  }
  return best ? { assertion: best, trigger: bestTrig } : { assertion: 'affirmed' };
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
