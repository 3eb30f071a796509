import { wink, isSpace } from './wink.js';

/**
 * Tokens of a text for the analyzer: wink-nlp's tokenizer and sentence boundaries, then
 *   - de-identification tags (`[**Name**]`, `[NAME]`, `<PERSON>`, `**NAME[X]`) are one opaque token
 *     each, so their punctuation neither splits sentences nor starts triggers;
 *   - words joined by hyphens are split ("ex-smoker" -> ex - smoker, "x-ray" -> x - ray), the same way
 *     for rule phrases, so prefixes such as "ex-" and "non-" can be triggers;
 *   - every token carries its character span, normalized form, class (year, date, number, deid) and
 *     what precedes it: a line break, a blank line, or a run of spaces (a line break in flattened text).
 */

/** Token classes a rule phrase may use in place of a word. */
export const TOKEN_CLASSES = ['<year>', '<date>', '<number>', '<deid>'] as const;
export type TokenClass = (typeof TOKEN_CLASSES)[number];

/** What separates a token from the previous one. */
export const enum Gap {
  None = 0,
  /** A run of two or more spaces (or a tab) on one line: a line break in flattened text. */
  SpaceRun = 1,
  Newline = 2,
  /** A blank line (or the start of the text). */
  Blank = 3,
}

export interface Tokens {
  /** Normalized forms used for matching. */
  norm: string[];
  start: number[];
  end: number[];
  cls: (TokenClass | undefined)[];
  gap: Gap[];
  /** wink's sentence boundary detection starts a sentence at this token. */
  winkSentence: boolean[];
  length: number;
}

const DEID = [
  /\[\*\*[^\]\n]{0,100}?\*\*\]/g, // MIMIC: [**Hospital1 18**], [**2119-3-4**]
  /\*\*[A-Z][A-Z-]*\[[^\]\n]{0,60}\](?:\*\*)?/g, // **NAME[AAA, BBB], **DATE[Mar 3 2010]
  /\[(?:NAME|PATIENT|DOCTOR|PHYSICIAN|DATE|LOCATION|HOSPITAL|ADDRESS|PHONE|AGE|ID|MRN|EMAIL|URL|ORGANIZATION|PROFESSION|CITY|STATE|ZIP|COUNTRY|STREET|REDACTED)(?:[ _:-][^\]\n]{0,40})?\]/gi,
  /<(?:NAME|PERSON|PATIENT|DOCTOR|DATE|LOCATION|HOSPITAL|ADDRESS|PHONE|AGE|ID|MRN|EMAIL|ORGANIZATION|REDACTED)(?:[ _:-][^>\n]{0,40})?>/gi,
];

/** Replaces each de-identification tag by a same-length opaque word; returns the text and the tag spans. */
function maskDeidTags(text: string): { masked: string; tags: Map<number, { end: number; cls: TokenClass }> } {
  const tags = new Map<number, { end: number; cls: TokenClass }>();
  if (!/\[|\*\*|</.test(text)) return { masked: text, tags };
  let masked = text;
  for (const re of DEID) {
    re.lastIndex = 0;
    let m: RegExpExecArray | null;
    while ((m = re.exec(masked)) !== null) {
      const inner = m[0].replace(/^[[<*]+|[\]>*]+$/g, '');
      const cls: TokenClass = /^(?:19|20)\d\d$/.test(inner.trim())
        ? '<year>'
        : /\d{1,4}[-/]\d{1,2}|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.? \d|date/i.test(inner)
          ? '<date>'
          : '<deid>';
      tags.set(m.index, { end: m.index + m[0].length, cls });
      masked = masked.slice(0, m.index) + 'x'.repeat(m[0].length) + masked.slice(m.index + m[0].length);
    }
  }
  return { masked, tags };
}

const HYPHENATED = /^[A-Za-z][A-Za-z']*(?:-[A-Za-z][A-Za-z']*)+$/;
const HYPHEN_PREFIX = /^[A-Za-z]+-$/;

/** Splits a wink token into the sub-tokens the analyzer matches on (hyphenated words). */
function splitToken(v: string): string[] | undefined {
  // "#Tinea" (wink reads a hashtag): in notes "#" numbers a problem.
  if (v.length > 1 && (v.charCodeAt(0) === 35 /* # */ || v.charCodeAt(0) === 64) /* @ */) return [v[0], ...(splitToken(v.slice(1)) ?? [v.slice(1)])];
  if (v.length < 3 || !v.includes('-')) return undefined;
  if (HYPHENATED.test(v)) return v.split(/(-)/);
  if (HYPHEN_PREFIX.test(v)) return [v.slice(0, -1), '-'];
  return undefined;
}

export function tokenClass(v: string): TokenClass | undefined {
  const c = v.charCodeAt(0);
  if (c < 48 || c > 57) return undefined;
  if (/^(?:19|20)\d\d$/.test(v)) return '<year>';
  if (/^\d{1,2}[/-]\d{1,2}(?:[/-]\d{2,4})?$|^\d{4}-\d{1,2}(?:-\d{1,2})?$|^\d{1,2}\/\d{4}$/.test(v)) return '<date>';
  if (/^\d+(?:[.,]\d+)?$/.test(v)) return '<number>';
  return undefined;
}

/**
 * Normal form used for matching: lower case, typographic apostrophes folded, and a trailing period
 * dropped ("b." at the end of a text is one wink token), so "Pneumonia", "PNEUMONIA" and "pneumonia."
 * all match "pneumonia".
 */
export function normalizeToken(token: string): string {
  let t = token.toLowerCase();
  if (t.length > 1 && t.charCodeAt(t.length - 1) === 46 /* . */ && t.charCodeAt(0) !== 46) t = t.slice(0, -1);
  if (t.includes('\u2019')) t = t.replace(/\u2019/g, "'");
  return t;
}

/** Normalized tokens of a rule phrase, tokenized exactly as report text is. */
export function tokenizePhrase(phrase: string): string[] {
  return tokenize(phrase).norm;
}

export function tokenize(text: string): Tokens {
  const { masked, tags } = maskDeidTags(text);
  const nlp = wink();
  const its = nlp.its;
  const doc = nlp.readDoc(masked);
  const tokens = doc.tokens();
  const values = tokens.out(its.value) as string[];
  const spaces = tokens.out(its.precedingSpaces) as string[];
  const spans = doc.sentences().out(its.span) as unknown as [number, number][];
  const n0 = values.length;
  const sentStartOrig = new Uint8Array(n0 + 1);
  for (const [s] of spans) sentStartOrig[s] = 1;

  const out: Tokens = { norm: [], start: [], end: [], cls: [], gap: [], winkSentence: [], length: 0 };
  let cursor = 0;
  let pendingSent = false;
  let prevEnd = 0;
  const push = (v: string, at: number, cls: TokenClass | undefined, sentence: boolean) => {
    out.norm.push(normalizeToken(v));
    out.start.push(at);
    out.end.push(at + v.length);
    out.cls.push(cls);
    out.gap.push(out.norm.length === 1 ? Gap.Blank : gapBetween(text, prevEnd, at));
    out.winkSentence.push(sentence);
    prevEnd = at + v.length;
  };
  for (let i = 0; i < n0; i++) {
    const v = values[i];
    const expected = cursor + spaces[i].length;
    let at = masked.startsWith(v, expected) ? expected : masked.indexOf(v, cursor);
    if (at < 0 || at - cursor > 64 + spaces[i].length) at = expected;
    cursor = at + v.length;
    if (sentStartOrig[i]) pendingSent = true;
    if (isSpace(v)) continue;
    const tag = tags.get(at);
    if (tag) {
      // wink may split a masked tag that touches other characters; the tag is one token.
      push(text.slice(at, tag.end), at, tag.cls, pendingSent || out.norm.length === 0);
      while (i + 1 < n0 && cursor < tag.end) {
        i++;
        const w = values[i];
        const e = cursor + spaces[i].length;
        cursor = (masked.startsWith(w, e) ? e : Math.max(cursor, masked.indexOf(w, cursor))) + w.length;
      }
      cursor = Math.max(cursor, tag.end);
      pendingSent = false;
      continue;
    }
    const parts = splitToken(v);
    if (parts) {
      let p = at;
      for (const part of parts) {
        if (part) push(part, p, tokenClass(part), pendingSent || out.norm.length === 0);
        p += part.length;
        pendingSent = false;
      }
    } else push(v, at, tokenClass(v), pendingSent || out.norm.length === 0);
    pendingSent = false;
  }
  out.length = out.norm.length;
  return out;
}

/** The kind of gap between two tokens (only white space lies between them). */
function gapBetween(text: string, from: number, to: number): Gap {
  let newlines = 0;
  let run = 0;
  let maxRun = 0;
  for (let p = from; p < to; p++) {
    const c = text.charCodeAt(p);
    if (c === 10) {
      newlines++;
      run = 0;
    } else if (c === 32 || c === 160) {
      if (++run > maxRun) maxRun = run;
    } else if (c === 9) {
      run += 2;
      if (run > maxRun) maxRun = run;
    }
  }
  if (newlines >= 2) return Gap.Blank;
  if (newlines === 1) return Gap.Newline;
  return maxRun >= 2 ? Gap.SpaceRun : Gap.None;
}
