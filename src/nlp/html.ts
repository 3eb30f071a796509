/**
 * HTML → plain text for report attachments (no DOM, no execution, linear time).
 * - `<script>`, `<style>` and other active/non-text elements are dropped with their contents;
 *   an unclosed one drops everything after it.
 * - Block-level tags become line breaks, so headings such as `<h2>Impression</h2>` or
 *   `<p><b>IMPRESSION:</b> ...</p>` stay at the start of a line where section detection finds them.
 * - Comments, CDATA, doctype and all other tags are removed; entities are decoded last, so an
 *   encoded `&lt;script&gt;` becomes inert literal text.
 */
export interface HtmlToTextResult {
  text: string;
  /** Names of active elements removed (script, iframe, object, embed), lower case, de-duplicated. */
  removedActive: string[];
}

const DROP_WITH_CONTENT = ['script', 'style', 'noscript', 'template', 'iframe', 'object', 'embed', 'svg', 'math', 'head', 'title', 'applet', 'frameset'];
const ACTIVE = new Set(['script', 'iframe', 'object', 'embed', 'applet', 'frameset']);
const BLOCK = new Set([
  'p', 'div', 'br', 'li', 'ul', 'ol', 'dl', 'dt', 'dd', 'tr', 'table', 'thead', 'tbody', 'tfoot', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6',
  'section', 'article', 'header', 'footer', 'pre', 'blockquote', 'hr', 'caption', 'address', 'main', 'nav', 'aside', 'figure',
  'figcaption', 'fieldset', 'form', 'body', 'html',
]);
const CELL = new Set(['td', 'th']);

const ENTITIES: Record<string, string> = {
  amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ', ndash: '\u2013', mdash: '\u2014', hellip: '\u2026',
  deg: '\u00b0', plusmn: '\u00b1', micro: '\u00b5', times: '\u00d7', middot: '\u00b7', le: '\u2264', ge: '\u2265',
  lsquo: '\u2018', rsquo: '\u2019', ldquo: '\u201c', rdquo: '\u201d', bull: '\u2022', copy: '\u00a9', reg: '\u00ae',
  shy: '', ensp: ' ', emsp: ' ', thinsp: ' ', frac12: '\u00bd', frac14: '\u00bc', frac34: '\u00be', sup2: '\u00b2',
  sup3: '\u00b3', divide: '\u00f7', laquo: '\u00ab', raquo: '\u00bb', eacute: '\u00e9', uuml: '\u00fc', ouml: '\u00f6', auml: '\u00e4',
};

export function htmlToText(html: string): HtmlToTextResult {
  const lower = html.toLowerCase();
  const removed = new Set<string>();
  let out = '';
  let i = 0;
  const n = html.length;
  while (i < n) {
    const lt = html.indexOf('<', i);
    if (lt < 0) {
      out += html.slice(i);
      break;
    }
    out += html.slice(i, lt);
    // Comment / CDATA / doctype / processing instruction
    if (lower.startsWith('<!--', lt)) {
      const end = html.indexOf('-->', lt + 4);
      i = end < 0 ? n : end + 3;
      continue;
    }
    if (lower.startsWith('<![cdata[', lt)) {
      const end = html.indexOf(']]>', lt + 9);
      i = end < 0 ? n : end + 3;
      continue;
    }
    const m = /^<(\/?)([a-zA-Z][a-zA-Z0-9:-]*)/.exec(html.slice(lt, lt + 64));
    if (!m && (lower.startsWith('<!', lt) || lower.startsWith('<?', lt))) {
      const end = html.indexOf('>', lt);
      i = end < 0 ? n : end + 1;
      continue;
    }
    if (!m) {
      // A bare "<" (e.g. "< 5 mm") is text.
      out += '<';
      i = lt + 1;
      continue;
    }
    const closing = m[1] === '/';
    const name = m[2].toLowerCase();
    const tagEnd = findTagEnd(html, lt + m[0].length);
    if (!closing && DROP_WITH_CONTENT.includes(name)) {
      if (ACTIVE.has(name)) removed.add(name);
      const selfClosing = tagEnd > 0 && html[tagEnd - 2] === '/';
      if (selfClosing) {
        i = tagEnd;
        continue;
      }
      const close = findClose(lower, name, tagEnd < 0 ? n : tagEnd);
      i = close;
      out += '\n';
      continue;
    }
    if (!closing && ACTIVE.has(name)) removed.add(name);
    if (BLOCK.has(name)) out += '\n';
    else if (CELL.has(name)) out += ' ';
    i = tagEnd < 0 ? n : tagEnd;
  }
  return { text: tidy(decodeEntities(out)), removedActive: [...removed] };
}

/** Index just after the `>` closing a tag, honouring quoted attribute values; -1 when unterminated. */
function findTagEnd(html: string, from: number): number {
  let quote = 0;
  for (let i = from; i < html.length; i++) {
    const c = html.charCodeAt(i);
    if (quote) {
      if (c === quote) quote = 0;
    } else if (c === 34 || c === 39) quote = c;
    else if (c === 62) return i + 1;
  }
  return -1;
}

/** Index just after `</name ...>` at or after `from`, or the end of input when there is none. */
function findClose(lower: string, name: string, from: number): number {
  const needle = `</${name}`;
  let at = lower.indexOf(needle, from);
  while (at >= 0) {
    const after = lower.charCodeAt(at + needle.length);
    if (Number.isNaN(after) || after === 62 || after === 32 || after === 9 || after === 10 || after === 13 || after === 47) {
      const end = lower.indexOf('>', at);
      return end < 0 ? lower.length : end + 1;
    }
    at = lower.indexOf(needle, at + needle.length);
  }
  return lower.length;
}

export function decodeEntities(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|[a-zA-Z][a-zA-Z0-9]{1,31});?/g, (whole, body: string) => {
    if (body[0] === '#') {
      const cp = body[1] === 'x' || body[1] === 'X' ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
      if (!Number.isFinite(cp) || cp === 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return '\ufffd';
      return String.fromCodePoint(cp);
    }
    const named = ENTITIES[body] ?? ENTITIES[body.toLowerCase()];
    return named ?? whole;
  });
}

/** Collapses runs of spaces, trims lines, keeps at most one blank line. */
export function tidy(s: string): string {
  return s
    .replace(/\r\n?/g, '\n')
    .replace(/[ \t\f\v\u00a0]+/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}
