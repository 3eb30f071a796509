import { createReadStream, readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import type { Command } from 'commander';
import { EXIT_PARTIAL } from '../../core/error-mapping.js';
import { AdapterError } from '../../core/errors.js';
import {
  analyzeText,
  checkContentType,
  decodeReportBytes,
  isDecodeProblem,
  sniffBom,
  textOfCharacters,
  type TextAnalysis,
} from '../../nlp/index.js';
import { evaluate, formatEvaluation, loadLabelledFile, SPLITS, type Split } from '../../nlp/evaluate.js';
import { stdout } from '../output.js';

/**
 * `fhir-ml nlp [--target PHRASE ...] [--content-type TYPE] [--jsonl] [--pretty] [FILE|-]`
 *   Reads report text from FILE or stdin with the same decoding rules as report attachments in a
 *   sync (src/nlp/text-decode.ts): a BOM selects UTF-8 or UTF-16, otherwise strict UTF-8 (or the
 *   charset of --content-type); binary data and invalid bytes are refused (exit 64, input-invalid);
 *   --content-type text/html strips markup as sync does. Prints JSON: the mentions with span,
 *   section, the three ConText dimensions, the summary assertion and trigger, plus the summary.
 *   With --jsonl, each input line is `{ "text": string, "targets"?: string[], "contentType"?: string }`
 *   and one JSON result is printed per line, with its line number. A bad line is reported by number
 *   (an `{"line": n, "error": {...}}` record on stdout and a message on stderr) and the rest go on;
 *   the command then exits 3 (some lines could not be processed), as a partial sync does.
 * `fhir-ml nlp evaluate FILE... [--split dev|heldout] [--json]`
 *   Scores the rules on labelled mentions (src/nlp/evaluate.ts): per split, per dimension and class,
 *   precision, recall, F1 and the confusion matrix.
 * Report text is never logged; messages name the file, line and problem only.
 */
export function registerNlpCommand(program: Command): Command {
  const nlp = program
    .command('nlp')
    .description('Find findings and target phrases in report text, with ConText negation, temporality and experiencer')
    .argument('[file]', 'text file, or - for stdin', '-')
    .option('-t, --target <phrase>', 'extra phrase to find and assert (repeatable)', collect, [] as string[])
    .option('--content-type <type>', 'text/plain, text/html or application/xhtml+xml, optionally with ;charset=...')
    .option('--jsonl', 'input is JSON Lines: {"text": "...", "targets": ["..."], "contentType": "..."} per line')
    .option('--pretty', 'indent the JSON output')
    .action(async (file: string, opts: { target: string[]; contentType?: string; jsonl?: boolean; pretty?: boolean }) => {
      const unsupported = checkContentType(opts.contentType);
      if (unsupported) throw new AdapterError('input-invalid', `--content-type: ${unsupported.detail} is not supported (${SUPPORTED_TYPES})`);
      const out = (line: string) => stdout.write(`${line}\n`);
      if (!opts.jsonl) {
        out(runNlpText(readInput(file), { targets: opts.target, contentType: opts.contentType, pretty: opts.pretty === true, name: inputName(file) }));
        return;
      }
      const result = await runNlpJsonl(openInput(file), { targets: opts.target, contentType: opts.contentType, pretty: opts.pretty === true, stopped: () => stdout.closed }, out);
      for (const bad of result.bad) process.stderr.write(`fhir-ml nlp: ${inputName(file)}: line ${bad.line}: ${bad.message}\n`);
      if (result.bad.length > 0) {
        process.stderr.write(`fhir-ml nlp: ${result.analysed} line(s) analysed, ${result.bad.length} bad line(s) reported\n`);
        process.exitCode = EXIT_PARTIAL;
      }
    });
  nlp
    .command('evaluate')
    .description('Score the assertion rules on labelled mentions (JSON Lines): per split, dimension and class P/R/F1 and confusion matrix')
    .argument('<files...>', 'labelled JSON Lines files ({split, text, target, start, negation, temporality, experiencer} per line)')
    .option('--split <split>', `only this split (${SPLITS.join(', ')})`)
    .option('--json', 'print the report as JSON')
    .action((files: string[], opts: { split?: string; json?: boolean }) => {
      if (opts.split !== undefined && !(SPLITS as readonly string[]).includes(opts.split)) {
        throw new AdapterError('input-invalid', `--split must be one of ${SPLITS.join(', ')}`);
      }
      const items = files.flatMap((f) => loadLabelledFile(f));
      const report = evaluate(items, { splits: opts.split ? [opts.split as Split] : undefined });
      stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatEvaluation(report)}\n`);
    });
  return nlp;
}

/** The content types report text may have, as the messages name them. */
const SUPPORTED_TYPES = 'text/plain, text/html, application/xhtml+xml';

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function inputName(file: string): string {
  return file === '-' ? 'stdin' : file;
}

function readInput(file: string): Buffer {
  try {
    return readFileSync(file === '-' ? 0 : file);
  } catch (err) {
    throw readError(file, err);
  }
}

function openInput(file: string): Readable {
  return file === '-' ? process.stdin : createReadStream(file);
}

function readError(file: string, err: unknown): AdapterError {
  const code = (err as NodeJS.ErrnoException).code;
  return new AdapterError(code === 'ENOENT' ? 'not-found' : 'input-invalid', `cannot read ${inputName(file)}: ${code ?? 'error'}`, { cause: err });
}

interface RenderOptions {
  pretty?: boolean;
}

function render(r: TextAnalysis, opts: RenderOptions, extra: Record<string, unknown> = {}): string {
  return JSON.stringify(
    {
      ...extra,
      mentions: r.mentions.map((m) => ({
        text: m.text,
        start: m.start,
        end: m.end,
        section: m.section,
        negation: m.negation,
        temporality: m.temporality,
        experiencer: m.experiencer,
        assertion: m.assertion,
        ...(m.concept ? { concept: { system: m.concept.system, code: m.concept.code, display: m.concept.display, id: m.concept.id } } : {}),
        ...(m.target !== undefined ? { target: m.target } : {}),
        ...(m.trigger !== undefined ? { trigger: m.trigger } : {}),
        ...(Object.keys(m.cues).length ? { cues: m.cues } : {}),
      })),
      summary: r.summary,
    },
    null,
    opts.pretty ? 2 : undefined,
  );
}

/** One document: bytes -> decoded text (the attachment rules) -> analysis JSON. Throws input-invalid. */
export function runNlpText(bytes: Uint8Array, opts: RenderOptions & { targets?: string[]; contentType?: string; name?: string } = {}): string {
  const decoded = decodeReportBytes(bytes, opts.contentType, { maxChars: Number.MAX_SAFE_INTEGER });
  if (isDecodeProblem(decoded)) throw new AdapterError('input-invalid', `${opts.name ?? 'input'}: ${decoded.detail}; expected text`);
  return render(analyzeText(decoded.text, { targets: opts.targets }), opts);
}

export interface JsonlResult {
  analysed: number;
  bad: { line: number; message: string }[];
}

/** Longest JSONL line accepted, in bytes (a longer one is a bad line; the next lines still run). */
const MAX_LINE_BYTES = 16 * 1024 * 1024;

/**
 * JSON Lines: one result per line through `out`, a bad line reported by number (also through `out`,
 * as an error record) while the others go on. UTF-8 per line (a UTF-8 BOM is skipped); an input that
 * starts with a UTF-16 BOM is decoded as a whole (an invalid sequence then fails the input).
 */
export async function runNlpJsonl(
  input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: RenderOptions & { targets?: string[]; contentType?: string; stopped?: () => boolean },
  out: (line: string) => void,
): Promise<JsonlResult> {
  const result: JsonlResult = { analysed: 0, bad: [] };
  const fail = (line: number, message: string) => {
    result.bad.push({ line, message });
    out(JSON.stringify({ line, error: { code: 'input-invalid', message } }));
  };
  for await (const { line, bytes, tooLong } of splitLines(input)) {
    // The reader of the results went away (`| head`): nothing more can be delivered.
    if (opts.stopped?.()) break;
    if (tooLong) {
      fail(line, `longer than ${MAX_LINE_BYTES} bytes`);
      continue;
    }
    let raw: string;
    if (typeof bytes === 'string') raw = bytes;
    else {
      try {
        raw = UTF8.decode(bytes);
      } catch {
        fail(line, 'not valid UTF-8');
        continue;
      }
    }
    if (!raw.trim()) continue;
    let obj: unknown;
    try {
      obj = JSON.parse(raw);
    } catch {
      fail(line, 'not valid JSON');
      continue;
    }
    if (typeof obj !== 'object' || obj === null || typeof (obj as { text?: unknown }).text !== 'string') {
      fail(line, 'expected an object with a string "text"');
      continue;
    }
    const { text, targets, contentType } = obj as { text: string; targets?: unknown; contentType?: unknown };
    if (targets !== undefined && !(Array.isArray(targets) && targets.every((x) => typeof x === 'string'))) {
      fail(line, '"targets" must be an array of strings');
      continue;
    }
    if (contentType !== undefined && typeof contentType !== 'string') {
      fail(line, '"contentType" must be a string');
      continue;
    }
    const decoded = textOfCharacters(text, contentType ?? opts.contentType);
    if (isDecodeProblem(decoded)) {
      fail(line, decoded.reason === 'unsupported-content-type' ? `"contentType": ${decoded.detail} is not supported (${SUPPORTED_TYPES})` : `"text": ${decoded.detail}`);
      continue;
    }
    out(render(analyzeText(decoded.text, { targets: [...(opts.targets ?? []), ...((targets as string[] | undefined) ?? [])] }), opts, { line }));
    result.analysed++;
  }
  return result;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Lines of a byte stream (bytes, or strings once a UTF-16 BOM was seen), numbered from 1. */
async function* splitLines(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<{ line: number; bytes: Uint8Array | string; tooLong?: boolean }> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let dropping = false;
  let line = 0;
  let first = true;
  let utf16: InstanceType<typeof TextDecoder> | undefined;
  let text = '';
  for await (const chunk0 of input) {
    let chunk = Buffer.from(chunk0.buffer, chunk0.byteOffset, chunk0.byteLength);
    if (first) {
      first = false;
      const bom = sniffBom(chunk);
      if (bom?.encoding === 'utf-8') chunk = chunk.subarray(bom.length);
      else if (bom) utf16 = new TextDecoder(bom.encoding, { fatal: true, ignoreBOM: false });
    }
    if (utf16) {
      try {
        text += utf16.decode(chunk, { stream: true });
      } catch (err) {
        throw new AdapterError('input-invalid', `input: not valid UTF-16 text`, { cause: err });
      }
      let nl: number;
      while ((nl = text.indexOf('\n')) >= 0) {
        yield { line: ++line, bytes: text.slice(0, nl).replace(/\r$/, '') };
        text = text.slice(nl + 1);
      }
      continue;
    }
    let from = 0;
    let nl: number;
    while ((nl = chunk.indexOf(10, from)) >= 0) {
      line++;
      if (dropping) {
        yield { line, bytes: new Uint8Array(), tooLong: true };
        dropping = false;
      } else {
        pending.push(chunk.subarray(from, nl));
        const whole = Buffer.concat(pending);
        yield { line, bytes: whole.length && whole[whole.length - 1] === 13 ? whole.subarray(0, -1) : whole };
      }
      pending = [];
      pendingBytes = 0;
      from = nl + 1;
    }
    if (from < chunk.length && !dropping) {
      pending.push(Buffer.from(chunk.subarray(from)));
      pendingBytes += chunk.length - from;
      if (pendingBytes > MAX_LINE_BYTES) {
        dropping = true;
        pending = [];
        pendingBytes = 0;
      }
    }
  }
  if (utf16) {
    try {
      text += utf16.decode();
    } catch (err) {
      throw new AdapterError('input-invalid', `input: not valid UTF-16 text`, { cause: err });
    }
    if (text) yield { line: line + 1, bytes: text };
    return;
  }
  if (dropping) yield { line: line + 1, bytes: new Uint8Array(), tooLong: true };
  else if (pending.length) yield { line: line + 1, bytes: Buffer.concat(pending) };
}
