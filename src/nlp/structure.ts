import { headingKey, type CompiledRules, type ModifierCategory, type SectionRule } from './rules.js';
import { Gap, type Tokens } from './tokens.js';

/**
 * Document structure of a tokenized text: section headings, slot headers, list markers and the
 * analysis units (clinical sentences) that ConText scopes never cross.
 *
 * Headers. A known heading (sections.yaml) followed by a colon starts its section; alone on a line it
 * does too. Any other label followed by a colon is a slot header ("COMPLICATIONS:", "Lungs:",
 * "BP:") when its words are all upper case (anywhere), or title case at the start of a line, after a
 * run of spaces or after the end of a sentence. A header's words form a unit of their own: a trigger
 * after it never reaches back into the previous slot, and a trigger before it never reaches into the
 * slot. An upper-case header at the start of a line ends a known section (its defaults stop there);
 * other slot headers are sub-slots of the section they appear in.
 *
 * Units end at: wink's sentence boundaries; headers; list markers ("1.", "2)", "(3)", "a)", "-",
 * "*", bullets) at a line start, after a header or continuing a numbered run on one line; and line
 * breaks (newline or a run of spaces in flattened text) that are followed by an upper-case letter, a
 * digit or a bullet, that follow sentence punctuation or a colon, or that form a blank line. A line
 * break before a lower-case word is a hard wrap and continues the sentence.
 */

export interface Header {
  /** First label token and the token after the label (the colon, or the end of a bare heading). */
  labelStart: number;
  labelEnd: number;
  /** First token of the slot content (after the colon). */
  contentStart: number;
  /** Known section, when the label is a heading of sections.yaml. */
  section?: SectionRule;
}

export interface Unit {
  /** Token range [start, end), markers and header punctuation excluded. */
  start: number;
  end: number;
  /** The header whose words this unit is, when it is a header label. */
  label?: Header;
  /** The header whose slot this unit lies in (label triggers and answers apply to it), if any. */
  slot?: Header;
  /** The first unit of its slot, or a list item of it: the units a header's triggers reach. */
  slotHead: boolean;
  /** Started by a list marker. */
  listItem: boolean;
}

export interface Structure {
  units: Unit[];
  headers: Header[];
  /** Per token: 1 for list markers and header colons (never part of a unit). */
  skip: Uint8Array;
  /** Per token: known section name, or null before the first heading or after a section ended. */
  section: (string | null)[];
  /** Per token: the section's default category (e.g. historical under PAST MEDICAL HISTORY). */
  sectionDefault: (ModifierCategory | undefined)[];
}

const SENTENCE_END = new Set(['.', ';', '!', '?', ':']);
const LABEL_AFTER = new Set(['.', ';', '!', '?', ':', ')', '\u2022', '*', '#', '-']);
const BULLETS = new Set(['-', '*', '#', '\u2022', '\u25aa', '\u25cf', '\u00b7', '\u2023', '\u25e6', '\u2013', '+', 'o', '>']);
const LABEL_SYMBOLS = new Set(['&', '/', '-', '(', ')', "'s"]);
const LABEL_CONNECTORS = new Set([...LABEL_SYMBOLS, 'of', 'and', 'or', 'the', 'to', 'for', 'in', 'on', 'with', 'at', 'by', 'a']);
const MAX_LABEL_TOKENS = 7;
const QUESTION_AFTER = new Set([',', ';', ':', '(', '-']);
const MARKERS = new Set(['#', '-', '*', '\u2022', ')']);
const MAX_SENTENCE_CASE_LABEL = 5;

export function analyzeStructure(text: string, t: Tokens, rules: CompiledRules): Structure {
  const n = t.length;
  const skip = new Uint8Array(n);
  const raw = (i: number) => text.slice(t.start[i], t.end[i]);
  // Where a label may begin: a line start, a run of spaces, or after the end of a sentence or a list marker.
  const lineStart = (i: number) => i === 0 || t.gap[i] >= Gap.SpaceRun || LABEL_AFTER.has(t.norm[i - 1]);
  const spaced = (i: number) => i + 1 >= n || t.start[i + 1] > t.end[i];

  // 1. Headers.
  const headers: Header[] = [];
  const inLabel = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    if (t.norm[i] === ':' && i > 0 && !inLabel[i - 1]) {
      const h = headerBefore(text, t, rules, i, raw, lineStart);
      if (h) {
        // A colon right after another header's colon ("A: B: c") makes B the header; drop a bare-label overlap.
        while (headers.length && headers[headers.length - 1].contentStart > h.labelStart) headers.pop();
        headers.push(h);
        for (let k = h.labelStart; k < h.labelEnd; k++) inLabel[k] = 1;
        skip[i] = 1;
        continue;
      }
    }
    // A known heading alone on its line ("Impression" from an HTML <h2>), or followed by " - ".
    if (!inLabel[i] && (i === 0 || t.gap[i] >= Gap.Newline)) {
      for (let len = Math.min(rules.maxHeadingTokens, n - i); len >= 1; len--) {
        const end = i + len;
        const alone = end === n || t.gap[end] >= Gap.Newline;
        const dashed = end < n && t.norm[end] === '-' && t.gap[end] === Gap.None && spaced(end) && t.start[end] > t.end[end - 1];
        if (!alone && !dashed) continue;
        const rule = rules.sectionByHeading.get(headingKey(t.norm.slice(i, end)));
        if (!rule) continue;
        headers.push({ labelStart: i, labelEnd: end, contentStart: dashed ? end + 1 : end, section: rule });
        for (let k = i; k < end; k++) inLabel[k] = 1;
        if (dashed) skip[end] = 1;
        i = end - 1 + (dashed ? 1 : 0);
        break;
      }
    }
  }

  // 2. Sections (known headings) and their defaults.
  const section: (string | null)[] = new Array(n);
  const sectionDefault: (ModifierCategory | undefined)[] = new Array(n);
  {
    let h = 0;
    let current: SectionRule | undefined;
    for (let i = 0; i < n; i++) {
      while (h < headers.length && headers[h].labelStart <= i) {
        const hd = headers[h++];
        if (hd.section) current = hd.section;
        else if (current && upperLabel(text, t, hd) && (hd.labelStart === 0 || t.gap[hd.labelStart] >= Gap.Newline)) current = undefined;
      }
      section[i] = current?.name ?? null;
      sectionDefault[i] = current?.assertion;
    }
  }

  // 3. List markers.
  const headerColonBefore = new Uint8Array(n + 1);
  for (const hd of headers) if (hd.contentStart < n) headerColonBefore[hd.contentStart] = 1;
  let lastNumber = -1; // value of the last numbered marker in the current paragraph
  for (let i = 0; i < n; i++) {
    if (inLabel[i] || skip[i]) continue;
    if (t.gap[i] === Gap.Blank) lastNumber = -1;
    const atStart = i === 0 || t.gap[i] >= Gap.SpaceRun || headerColonBefore[i] === 1 || (i > 0 && skip[i - 1] === 1);
    const v = t.norm[i];
    // A bullet is followed by a space ("- fever"), except "#" which numbers problems ("#Hyponatremia").
    if (BULLETS.has(v) && atStart && (spaced(i) || v === '#') && i + 1 < n && t.gap[i + 1] < Gap.Newline) {
      skip[i] = 1;
      continue;
    }
    // "3." "3)" "(3)" "c)" (cheap first-character test: this runs for every token)
    const c0 = v.charCodeAt(0);
    const digit = c0 >= 48 && c0 <= 57;
    if (!digit && v !== '(' && !(v.length === 1 && c0 >= 97 && c0 <= 104)) continue;
    let num = -1;
    let last = -1;
    if (/^\d{1,2}$/.test(v) && i + 1 < n && (t.norm[i + 1] === '.' || t.norm[i + 1] === ')') && t.start[i + 1] === t.end[i] && spaced(i + 1)) {
      num = Number(v);
      last = i + 1;
    } else if (/^\d{1,2}[.)]$/.test(raw(i)) && spaced(i)) {
      num = Number(v.replace(/[.)]$/, ''));
      last = i;
    } else if (v === '(' && i + 2 < n && /^\d{1,2}$/.test(t.norm[i + 1]) && t.norm[i + 2] === ')' && spaced(i + 2)) {
      num = Number(t.norm[i + 1]);
      last = i + 2;
    } else if (/^[a-h]$/.test(v) && i + 1 < n && t.norm[i + 1] === ')' && t.start[i + 1] === t.end[i] && atStart) {
      last = i + 1;
    }
    if (last < 0 || last + 1 >= n) continue;
    const continues = num > 1 && num === lastNumber + 1;
    if (atStart || continues || (num === 1 && i > 0 && (t.norm[i - 1] === ':' || SENTENCE_END.has(t.norm[i - 1])))) {
      for (let k = i; k <= last; k++) skip[k] = 1;
      if (num >= 0) lastNumber = num;
      i = last;
    }
  }

  // 4. Units.
  const units: Unit[] = [];
  const labelAt = new Map<number, Header>();
  for (const hd of headers) labelAt.set(hd.labelStart, hd);
  let slot: Header | undefined;
  let slotUnits = 0;
  let u0 = -1;
  let uListItem = false;
  let uLabel: Header | undefined;
  let markerPending = false;
  const close = (end: number) => {
    if (u0 < 0) return;
    let b = end;
    while (b > u0 && skip[b - 1]) b--;
    if (b > u0) {
      const head = !uLabel && slot !== undefined && (slotUnits === 0 || uListItem);
      units.push({ start: u0, end: b, label: uLabel, slot: uLabel ? undefined : slot, slotHead: head, listItem: uListItem });
      if (!uLabel && slot) slotUnits++;
    }
    u0 = -1;
    uLabel = undefined;
    uListItem = false;
  };
  let inHeader: Header | undefined;
  for (let i = 0; i < n; i++) {
    const hd = labelAt.get(i);
    if (hd) {
      close(i);
      inHeader = hd;
      u0 = i;
      uLabel = hd;
      continue;
    }
    if (inHeader && i >= inHeader.labelEnd) {
      close(i);
      slot = inHeader;
      slotUnits = 0;
      inHeader = undefined;
    }
    if (skip[i]) {
      // A list marker starts a new unit after it; a header colon was handled above.
      if (!inHeader && BULLET_OR_NUMBER(t.norm[i])) {
        close(i);
        markerPending = true;
      }
      continue;
    }
    let starts = u0 < 0;
    // wink ends a sentence after a "?" that opens a question ("pain, ? torsion", "MD aware; ? delirium"):
    // the question mark belongs to what follows.
    const openingQuestion = i > u0 && t.norm[i - 1] === '?' && (i - 1 === u0 || QUESTION_AFTER.has(t.norm[i - 2]));
    if (!starts && t.winkSentence[i] && !openingQuestion) starts = true;
    // "hepatitis C. Possible X": a sentence ends after a one-letter abbreviation before a capitalised word.
    if (!starts && i > 0 && t.end[i - 1] - t.start[i - 1] === 2 && t.norm[i - 1].length === 1 && /^[A-Z]\.$/.test(raw(i - 1)) && /^[A-Z][a-z]{2,}/.test(raw(i)) && t.start[i] > t.end[i - 1]) {
      starts = true;
    }
    if (!starts && t.gap[i] >= Gap.SpaceRun) {
      const prev = t.norm[i - 1];
      starts = t.gap[i] === Gap.Blank || /^[A-Z0-9\u2022*-]/.test(raw(i)) || SENTENCE_END.has(prev);
    }
    if (starts) {
      close(i);
      u0 = i;
      if (markerPending) uListItem = true;
      markerPending = false;
      // A blank line ends a slot whose header stands alone (its content was the paragraph).
      if (t.gap[i] === Gap.Blank && slot && slotUnits > 0 && !uListItem) slot = undefined;
    }
  }
  close(n);
  // A known heading written inline after a sentence on the same line ("... at 30. Family history:
  // uncle ...") names its slot's first sentence only; the section before it resumes after that.
  for (let hi = 0; hi < headers.length; hi++) {
    const hd = headers[hi];
    if (!hd.section || hd.labelStart === 0 || t.gap[hd.labelStart] !== Gap.None) continue;
    const first = units.find((u) => u.slot === hd);
    if (!first) continue;
    const resume = hd.labelStart - 1;
    const until = hi + 1 < headers.length ? headers[hi + 1].labelStart : n;
    for (let i = first.end; i < until; i++) {
      section[i] = section[resume];
      sectionDefault[i] = sectionDefault[resume];
    }
  }
  return { units, headers, skip, section, sectionDefault };
}

function BULLET_OR_NUMBER(v: string): boolean {
  return BULLETS.has(v) || /^\d{1,2}[.)]?$/.test(v) || v === '(' || v === ')' || v === '.' || /^[a-h]$/.test(v);
}

function upperLabel(text: string, t: Tokens, h: Header): boolean {
  const s = text.slice(t.start[h.labelStart], t.end[h.labelEnd - 1]);
  return /[A-Z]{2}/.test(s) && !/[a-z]/.test(s);
}

type WordCase = 'upper' | 'title' | 'lower' | 'other';
function wordCase(w: string): WordCase {
  if (!/^[A-Za-z][A-Za-z'.\u2019/&-]*$/.test(w)) return 'other';
  if (!/[a-z]/.test(w)) return 'upper';
  return /^[A-Z]/.test(w) ? 'title' : 'lower';
}

/** The header whose colon is token `colon`, or undefined. */
function headerBefore(
  text: string,
  t: Tokens,
  rules: CompiledRules,
  colon: number,
  raw: (i: number) => string,
  lineStart: (i: number) => boolean,
): Header | undefined {
  // Walk back over label-like tokens to the start of the line / sentence (the label's boundary).
  let boundary = -1;
  let k = colon - 1;
  const lowest = Math.max(0, colon - MAX_LABEL_TOKENS);
  for (; k >= lowest; k--) {
    const w = raw(k);
    const c = wordCase(w);
    if (c === 'other' && !LABEL_CONNECTORS.has(t.norm[k])) break;
    if (lineStart(k) || (k > 0 && t.norm[k - 1] === ':')) {
      boundary = k;
      break;
    }
  }
  const first = boundary >= 0 ? boundary : k + 1;
  if (first >= colon) return undefined;
  const contentStart = colon + 1;
  // The longest run of upper-case words (and symbols such as "/" or "&") before the colon.
  let up = colon;
  while (up > first && (wordCase(raw(up - 1)) === 'upper' || LABEL_SYMBOLS.has(t.norm[up - 1]))) up--;
  while (up < colon && LABEL_SYMBOLS.has(t.norm[up])) up++;
  const upperRun = up < colon && /[A-Z]{2}/.test(text.slice(t.start[up], t.end[colon - 1]));
  // Known heading: the longest label that is a heading, at a boundary or in capitals (then the whole
  // upper-case run is the label: "PHYSICAL EXAM:" is EXAMINATION even if only "exam" is listed).
  for (let s = first; s < colon; s++) {
    const rule = rules.sectionByHeading.get(headingKey(t.norm.slice(s, colon)));
    if (!rule) continue;
    if (s === boundary) return { labelStart: s, labelEnd: colon, contentStart, section: rule };
    if (upperRun && s >= up) return { labelStart: up, labelEnd: colon, contentStart, section: rule };
  }
  // A label in title or sentence case at a line or sentence boundary ("Lungs:", "Hepatic
  // encephalopathy:", "Chest pain:"): its first word capitalised, then words and connectors only.
  // At a line start or after a list marker the first word may be lower case too ("#h/o DVT:").
  if (boundary >= 0 && colon - boundary <= MAX_SENTENCE_CASE_LABEL) {
    const lineOrMarker = boundary === 0 || t.gap[boundary] >= Gap.SpaceRun || MARKERS.has(t.norm[boundary - 1]);
    let ok = wordCase(raw(boundary)) === 'title' || wordCase(raw(boundary)) === 'upper' || (lineOrMarker && wordCase(raw(boundary)) === 'lower');
    for (let q = boundary + 1; q < colon && ok; q++) ok = wordCase(raw(q)) !== 'other' || LABEL_CONNECTORS.has(t.norm[q]);
    if (ok && /[A-Za-z]{2}/.test(text.slice(t.start[boundary], t.end[colon - 1]))) return { labelStart: boundary, labelEnd: colon, contentStart };
  }
  if (upperRun) return { labelStart: up, labelEnd: colon, contentStart };
  return undefined;
}
