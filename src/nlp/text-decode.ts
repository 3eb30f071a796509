import type { ExclusionReason } from '../core/types.js';
import { htmlToText, tidy } from './html.js';

/**
 * The one set of rules that turns report bytes into analysable text, shared by DiagnosticReport
 * attachments (`reportText`) and the `fhir-ml nlp` command:
 *   - a byte order mark decides the encoding (UTF-8, UTF-16LE, UTF-16BE) and is removed; otherwise
 *     the declared charset, else UTF-8; decoding is strict (invalid bytes are an error, never U+FFFD);
 *   - text with NUL bytes or many other control characters is binary, not text;
 *   - text/plain, text/html and application/xhtml+xml are supported; without a declared type, HTML
 *     is recognised by its common tags; HTML goes through `htmlToText` (active content dropped and
 *     reported), plain text through `tidy`.
 * Problems are returned, never thrown, and never contain the text itself.
 */

export const SUPPORTED_CONTENT_TYPES: ReadonlyMap<string, 'text/plain' | 'text/html'> = new Map([
  ['text/plain', 'text/plain'],
  ['text/html', 'text/html'],
  ['application/xhtml+xml', 'text/html'],
]);

/** Largest decoded text accepted by default, in characters. */
export const DEFAULT_MAX_CHARS = 1_000_000;

export interface DecodedText {
  text: string;
  /** `text/plain` or `text/html` (how the bytes were read). */
  contentType: 'text/plain' | 'text/html';
  /** Active HTML elements removed (script, iframe, ...); empty for plain text. */
  removedActive: string[];
}

export interface DecodeProblem {
  reason: Extract<ExclusionReason, 'bad-attachment' | 'unsupported-content-type'>;
  /** Safe to log: names the problem, never the text. */
  detail: string;
}

export function isDecodeProblem(r: DecodedText | DecodeProblem): r is DecodeProblem {
  return 'reason' in r;
}

/** Media type (lower case) and charset parameter of a Content-Type value. */
export function parseContentType(value: string | undefined): { mediaType?: string; charset?: string } {
  if (!value || !value.trim()) return {};
  const [type, ...params] = value.split(';');
  let charset: string | undefined;
  for (const p of params) {
    const [k, v] = p.split('=');
    if (k?.trim().toLowerCase() === 'charset' && v) charset = v.trim().replace(/^"|"$/g, '').toLowerCase();
  }
  return { mediaType: type.trim().toLowerCase(), charset };
}

/** A problem with a declared content type before any bytes are read (unsupported type), else undefined. */
export function checkContentType(declared: string | undefined): DecodeProblem | undefined {
  const { mediaType } = parseContentType(declared);
  if (mediaType && !SUPPORTED_CONTENT_TYPES.has(mediaType)) {
    return { reason: 'unsupported-content-type', detail: `content type ${mediaType.slice(0, 60)}` };
  }
  return undefined;
}

/** The encoding named by a byte order mark at the start of `bytes`, and its length. */
export function sniffBom(bytes: Uint8Array): { encoding: 'utf-8' | 'utf-16le' | 'utf-16be'; length: number } | undefined {
  if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) return { encoding: 'utf-8', length: 3 };
  if (bytes.length >= 2 && bytes[0] === 0xff && bytes[1] === 0xfe) return { encoding: 'utf-16le', length: 2 };
  if (bytes.length >= 2 && bytes[0] === 0xfe && bytes[1] === 0xff) return { encoding: 'utf-16be', length: 2 };
  return undefined;
}

/** Strict character decoding: BOM, else `charset`, else UTF-8. A string, or the problem. */
export function decodeCharacters(bytes: Uint8Array, charset?: string, maxChars = DEFAULT_MAX_CHARS): string | DecodeProblem {
  const bom = sniffBom(bytes);
  const encoding = bom?.encoding ?? charset ?? 'utf-8';
  // A UTF-16 character is at least 2 bytes, UTF-8 at least 1: refuse what cannot fit before decoding it.
  if (bytes.length - (bom?.length ?? 0) > maxChars * 4) return { reason: 'bad-attachment', detail: `text larger than ${maxChars} characters` };
  let decoder: InstanceType<typeof TextDecoder>;
  try {
    decoder = new TextDecoder(encoding, { fatal: true, ignoreBOM: true });
  } catch {
    return { reason: 'bad-attachment', detail: `unsupported charset ${encoding.slice(0, 40)}` };
  }
  let text: string;
  try {
    text = decoder.decode(bom ? bytes.subarray(bom.length) : bytes);
  } catch {
    return { reason: 'bad-attachment', detail: `data is not valid ${encoding} text` };
  }
  if (text.length > maxChars) return { reason: 'bad-attachment', detail: `text larger than ${maxChars} characters` };
  const binary = binaryReason(text);
  if (binary) return { reason: 'bad-attachment', detail: binary };
  return text;
}

/**
 * Why decoded characters are binary data rather than text, or undefined: any NUL, or more than one
 * control character (other than tab, line feed, vertical tab, form feed, carriage return, escape) in
 * a hundred. Real report text has none; bytes that happen to be valid UTF-8 or Latin-1 have many.
 */
export function binaryReason(text: string): string | undefined {
  let controls = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0) return 'data is binary (NUL bytes)';
    if ((c < 32 && c !== 9 && c !== 10 && c !== 11 && c !== 12 && c !== 13 && c !== 27) || c === 127) controls++;
  }
  return controls > 0 && controls * 100 > text.length ? 'data is binary (control characters)' : undefined;
}

/**
 * Bytes of a report part -> text to analyse, under a declared Content-Type (may be absent).
 * See the module comment for the rules.
 */
export function decodeReportBytes(bytes: Uint8Array, declared: string | undefined, options: { maxChars?: number } = {}): DecodedText | DecodeProblem {
  const unsupported = checkContentType(declared);
  if (unsupported) return unsupported;
  const { mediaType, charset } = parseContentType(declared);
  const chars = decodeCharacters(bytes, charset, options.maxChars ?? DEFAULT_MAX_CHARS);
  if (typeof chars !== 'string') return chars;
  return markupToText(chars, mediaType);
}

/** Already-decoded characters -> text to analyse (the markup and tidying half of `decodeReportBytes`). */
export function textOfCharacters(chars: string, mediaType?: string): DecodedText | DecodeProblem {
  const unsupported = checkContentType(mediaType);
  if (unsupported) return unsupported;
  const binary = binaryReason(chars);
  if (binary) return { reason: 'bad-attachment', detail: binary };
  return markupToText(chars, mediaType);
}

function markupToText(chars: string, mediaType: string | undefined): DecodedText {
  // No declared type: sniff (FHIR requires contentType with data, but not every server sends it).
  const type = mediaType ? SUPPORTED_CONTENT_TYPES.get(parseContentType(mediaType).mediaType!)! : looksLikeHtml(chars) ? 'text/html' : 'text/plain';
  if (type === 'text/html') {
    const { text, removedActive } = htmlToText(chars);
    return { text, contentType: type, removedActive };
  }
  return { text: tidy(chars), contentType: type, removedActive: [] };
}

function looksLikeHtml(s: string): boolean {
  return /<(html|body|p|div|br|h[1-6]|table|script)\b/i.test(s);
}
