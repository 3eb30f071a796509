import { Parser } from 'htmlparser2';

/**
 * HTML / XHTML -> plain text for report attachments, through htmlparser2's streaming tokenizer (no
 * DOM is built, nothing is executed, time linear in the input). Entities are decoded by htmlparser2
 * with the `entities` package: every named entity HTML defines, numeric references, and the legacy
 * forms without a semicolon, exactly as a browser would.
 *
 * - Active elements (`<script>`, `<iframe>`, `<object>`, `<embed>`, `<applet>`, `<frameset>`) are
 *   dropped with their contents and reported in `removedActive`, so callers can count the event.
 *   Other non-text elements (`<style>`, `<head>`, `<svg>`, `<template>` ...) are dropped silently.
 *   An element that is never closed drops everything after it.
 * - Block-level elements become line breaks, so `<h2>Impression</h2>` or `<p><b>IMPRESSION:</b> ...`
 *   stay at the start of a line where section detection finds them; table rows are lines and cells are
 *   separated by a tab-like run of spaces (a slot break for the analyzer).
 * - Comments, doctype and processing instructions are ignored; CDATA (XHTML) is text. Entities are
 *   decoded into text only, never re-parsed: an encoded `&lt;script&gt;` stays inert literal text.
 * - Self-closing syntax (`<br/>`, `<div/>`) is honoured, as XHTML narratives use it.
 */
export interface HtmlToTextResult {
  text: string;
  /** Names of active elements removed (script, iframe, object, embed, applet, frameset), lower case, de-duplicated. */
  removedActive: string[];
}

const ACTIVE = new Set(['script', 'iframe', 'object', 'embed', 'applet', 'frameset', 'frame']);
const DROP_WITH_CONTENT = new Set([...ACTIVE, 'style', 'noscript', 'template', 'svg', 'math', 'head', 'title', 'noembed', 'noframes']);
const BLOCK = new Set([
  'p', 'div', 'br', 'li', 'ul', 'ol', 'dl', 'dt', 'dd', 'tr', 'table', 'thead', 'tbody', 'tfoot', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6',
  'section', 'article', 'header', 'footer', 'pre', 'blockquote', 'hr', 'caption', 'address', 'main', 'nav', 'aside', 'figure',
  'figcaption', 'fieldset', 'form', 'body', 'html', 'details', 'summary', 'legend', 'center', 'listing', 'xmp', 'plaintext',
]);
const CELL = new Set(['td', 'th']);

export function htmlToText(html: string): HtmlToTextResult {
  const removed = new Set<string>();
  const parts: string[] = [];
  // Depth inside dropped elements. A dropped element's descendants are never text, whatever they are.
  let dropDepth = 0;
  // Inside <pre> white space is kept as written; elsewhere any run of it is one space (HTML rendering).
  let preDepth = 0;
  const parser = new Parser(
    {
      onopentag(name) {
        if (DROP_WITH_CONTENT.has(name)) {
          if (ACTIVE.has(name)) removed.add(name === 'frame' ? 'frameset' : name);
          dropDepth++;
          return;
        }
        if (dropDepth > 0) return;
        if (name === 'pre' || name === 'listing' || name === 'xmp' || name === 'plaintext') preDepth++;
        if (BLOCK.has(name)) parts.push('\n');
        else if (CELL.has(name)) parts.push(CELL_BREAK);
      },
      onclosetag(name) {
        if (DROP_WITH_CONTENT.has(name)) {
          if (dropDepth > 0) dropDepth--;
          return;
        }
        if (dropDepth > 0) return;
        if ((name === 'pre' || name === 'listing' || name === 'xmp' || name === 'plaintext') && preDepth > 0) preDepth--;
        // <br> is one line break (its open tag gave it); other blocks end with one, so two blocks in a row leave a blank line.
        if (BLOCK.has(name) && name !== 'br') parts.push('\n');
      },
      ontext(text) {
        if (dropDepth > 0) return;
        parts.push(preDepth > 0 ? text.replace(/\r\n?/g, '\n').replace(/[ \t]{2,}/g, PRE_SPACES) : text.replace(/[\s\u00a0]+/g, ' '));
      },
    },
    { decodeEntities: true, lowerCaseTags: true, lowerCaseAttributeNames: false, recognizeSelfClosing: true, recognizeCDATA: true },
  );
  parser.write(html);
  parser.end();
  return { text: tidyHtmlText(parts.join('')), removedActive: [...removed] };
}

/**
 * Placeholders (private-use characters) until the end: a table cell boundary, and a run of spaces
 * inside <pre>; both become three spaces (a slot break).
 */
const CELL_BREAK = '\ue000';
const PRE_SPACES = '\ue001';

/** Spaces collapsed as a browser renders them; cell boundaries and space runs in <pre> stay runs of three spaces. */
function tidyHtmlText(s: string): string {
  return tidyLines(s.replace(/ *[\ue000\ue001][ \ue000\ue001]*/g, '\ue000').replace(/ {2,}/g, ' ').replace(/\ue000/g, '   '));
}

/**
 * Plain-text tidying shared by every text source: line ends normalised, trailing and leading spaces of
 * each line removed, at most one blank line in a row. Runs of spaces INSIDE a line are kept: in
 * flattened clinical text they stand for line breaks and columns, which the analyzer uses as
 * boundaries. Tabs and other blank characters become a space each (offsets stay meaningful).
 */
export function tidy(s: string): string {
  return tidyLines(s.replace(/\r\n?/g, '\n').replace(/[\t\f\v\u00a0]/g, ' '));
}

function tidyLines(s: string): string {
  return s
    .split('\n')
    .map((l) => l.trim())
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}
