import type { Attachment, Binary, DiagnosticReport } from 'fhir/r4.js';
import type { ExclusionReason } from '../core/types.js';
import { tidy } from './html.js';
import { checkContentType, decodeReportBytes, isDecodeProblem } from './text-decode.js';

/**
 * Text of a DiagnosticReport for NLP, from (in this order):
 *   1. `presentedForm[]` attachments: text/plain or text/html (also application/xhtml+xml), inline
 *      base64 `data`, or `url` pointing to a Binary on the same server (resolved from the `binaries`
 *      map keyed `Binary/<id>`; absolute URLs only under `options.serverBase`) or a contained Binary (`#id`);
 *   2. `conclusion`, appended under a `CONCLUSION:` heading unless the presented form already contains it;
 *   3. `conclusionCode[]` text (or first coding display), likewise.
 *
 * Never throws for bad input. Problems with one part are `issues` and the other parts are still used;
 * when no usable text remains the whole report is `excluded`, with the reason of the first issue
 * (or `empty-report` when the report simply has no text).
 *
 * Unsafe HTML (`<script>`, `<iframe>`, `<object>`, `<embed>`): the active elements are removed with
 * their contents and the remaining text IS used; the part gets an `unsafe-content` issue so the
 * event is counted. The report is excluded for `unsafe-content` only if nothing else is left.
 * Issues never contain report text, only part names, content types and sizes.
 */

export interface TextSource {
  /** FHIR path of the part: `presentedForm[0]`, `conclusion`, `conclusionCode[1]`. */
  part: string;
  contentType: string;
  /** Character span of this part in `text`. */
  start: number;
  end: number;
}

export interface PartIssue {
  part: string;
  reason: ExclusionReason;
  /** Safe to log: never contains report text. */
  detail: string;
}

export interface ReportTextOk {
  text: string;
  sources: TextSource[];
  issues: PartIssue[];
}
export interface ReportTextExcluded {
  excluded: ExclusionReason;
  detail: string;
  issues: PartIssue[];
}
export type ReportText = ReportTextOk | ReportTextExcluded;

export interface ReportTextOptions {
  /** Base URL of the FHIR server; absolute attachment URLs under it resolve to `Binary/<id>`. */
  serverBase?: string;
  /** Largest decoded attachment accepted, in characters (default 1,000,000). */
  maxChars?: number;
}

export function isExcluded(r: ReportText): r is ReportTextExcluded {
  return 'excluded' in r;
}

export function reportText(report: DiagnosticReport, binaries?: Map<string, Binary>, options: ReportTextOptions = {}): ReportText {
  const maxChars = options.maxChars ?? 1_000_000;
  const issues: PartIssue[] = [];
  const chunks: { part: string; contentType: string; text: string }[] = [];

  (report.presentedForm ?? []).forEach((attachment, i) => {
    const part = `presentedForm[${i}]`;
    const got = attachmentText(attachment, part, report, binaries, options.serverBase, maxChars, issues);
    if (got === undefined) return;
    if (got.text.length === 0) issues.push({ part, reason: 'empty-report', detail: 'attachment has no text' });
    else chunks.push({ part, contentType: got.contentType, text: got.text });
  });

  const already = normalizeForContainment(chunks.map((c) => c.text).join('\n'));
  const addConclusion = (part: string, raw: string | undefined) => {
    const text = tidy(raw ?? '');
    if (!text) return;
    if (already.includes(normalizeForContainment(text))) return; // the presented form already says it
    chunks.push({ part, contentType: 'text/plain', text: `CONCLUSION: ${/[.!?]$/.test(text) ? text : `${text}.`}` });
  };
  addConclusion('conclusion', report.conclusion);
  (report.conclusionCode ?? []).forEach((cc, i) =>
    addConclusion(`conclusionCode[${i}]`, cc.text ?? cc.coding?.find((c) => c.display)?.display),
  );

  if (chunks.length === 0) {
    const first = issues[0];
    return first
      ? { excluded: first.reason, detail: `${first.part}: ${first.detail}`, issues }
      : { excluded: 'empty-report', detail: 'no conclusion, conclusionCode or presentedForm text', issues };
  }
  let text = '';
  const sources: TextSource[] = [];
  for (const c of chunks) {
    if (text) text += '\n\n';
    sources.push({ part: c.part, contentType: c.contentType, start: text.length, end: text.length + c.text.length });
    text += c.text;
  }
  return { text, sources, issues };
}

function attachmentText(
  attachment: Attachment,
  part: string,
  report: DiagnosticReport,
  binaries: Map<string, Binary> | undefined,
  serverBase: string | undefined,
  maxChars: number,
  issues: PartIssue[],
): { text: string; contentType: string } | undefined {
  let data = attachment.data;
  let declared = attachment.contentType;
  if (data === undefined && attachment.url) {
    const binary = resolveBinary(attachment.url, report, binaries, serverBase);
    if (typeof binary === 'string') {
      issues.push({ part, reason: 'bad-attachment', detail: binary });
      return undefined;
    }
    data = binary.data;
    declared ??= binary.contentType;
    if (data === undefined) {
      issues.push({ part, reason: 'bad-attachment', detail: 'Binary has no data' });
      return undefined;
    }
  }
  if (data === undefined) {
    issues.push({ part, reason: 'bad-attachment', detail: 'attachment has neither data nor url' });
    return undefined;
  }
  const unsupported = checkContentType(declared);
  if (unsupported) {
    issues.push({ part, ...unsupported });
    return undefined;
  }
  const compact = data.replace(/[\s]+/g, '');
  if (compact.length > Math.ceil((maxChars * 4 * 4) / 3)) {
    issues.push({ part, reason: 'bad-attachment', detail: `attachment larger than ${maxChars} characters` });
    return undefined;
  }
  if (!isBase64(compact)) {
    issues.push({ part, reason: 'bad-attachment', detail: 'data is not valid base64' });
    return undefined;
  }
  const decoded = decodeReportBytes(Buffer.from(compact, 'base64'), declared, { maxChars });
  if (isDecodeProblem(decoded)) {
    issues.push({ part, reason: decoded.reason, detail: decoded.detail });
    return undefined;
  }
  if (decoded.removedActive.length > 0) {
    issues.push({ part, reason: 'unsafe-content', detail: `removed active HTML: ${decoded.removedActive.join(', ')}` });
  }
  return { text: decoded.text, contentType: decoded.contentType };
}

function resolveBinary(
  url: string,
  report: DiagnosticReport,
  binaries: Map<string, Binary> | undefined,
  serverBase: string | undefined,
): Binary | string {
  if (url.startsWith('#')) {
    const id = url.slice(1);
    const found = (report.contained ?? []).find((r) => r.resourceType === 'Binary' && r.id === id);
    return found ? (found as Binary) : 'contained Binary not found';
  }
  let relative = url;
  if (/^[a-z][a-z0-9+.-]*:/i.test(url)) {
    const base = serverBase?.replace(/\/+$/, '');
    if (!base || !url.startsWith(`${base}/`)) return 'url is not a Binary on this server';
    relative = url.slice(base.length + 1);
  }
  const m = /^Binary\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/.exec(relative);
  if (!m) return 'url is not a Binary reference';
  const binary = binaries?.get(`Binary/${m[1]}`);
  return binary ?? 'referenced Binary was not fetched';
}

export function isBase64(s: string): boolean {
  if (s.length % 4 === 1) return false;
  return /^[A-Za-z0-9+/]*={0,2}$/.test(s) && (!s.includes('=') || s.length % 4 === 0);
}

function normalizeForContainment(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, ' ').trim();
}
