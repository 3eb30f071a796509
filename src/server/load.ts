import { createReadStream } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { OperationOutcomeError } from '@medplum/core';
import type { Bundle, OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import { AdapterError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { isR4ResourceType } from './definitions.js';
import type { FhirServer } from './server.js';

/**
 * Loads files into the embedded server: transaction/batch Bundles (e.g. Synthea's, with `urn:uuid:`
 * references), other Bundles (turned into transactions), single resources (`.json`) and NDJSON
 * (`.ndjson`, one resource per line, as Bulk Data exports write; streamed, any size). Directories are
 * walked (sorted), taking `.json` and `.ndjson` files. Each file is all-or-nothing, validated unless the
 * server was created with `validate: false`.
 *
 * By default the first bad file stops the load with an AdapterError (`input-invalid`) naming the file and
 * the line (NDJSON) or entry and element path (Bundles), never quoting the data; files before it stay
 * loaded. With `continueOnError` every file is tried and the failures are returned instead.
 */

export interface LoadedFile {
  path: string;
  counts: Record<string, number>;
  total: number;
}

export interface LoadFailure {
  path: string;
  /** 1-based line (NDJSON, or the JSON syntax error's line). */
  line?: number;
  message: string;
  issues?: OperationOutcomeIssue[];
}

export interface LoadFilesResult {
  counts: Record<string, number>;
  total: number;
  files: LoadedFile[];
  failures: LoadFailure[];
  ms: number;
}

export interface LoadFilesOptions {
  continueOnError?: boolean;
  logger?: Logger;
  /** NDJSON lines written per chunk before the server takes other requests (default 1000). */
  chunkSize?: number;
  /** Largest Bundle file loaded as one transaction (default 50,000 entries). */
  maxBundleEntries?: number;
}

const DEFAULT_CHUNK = 1000;
const DEFAULT_MAX_BUNDLE_ENTRIES = 50_000;

type Loadable = Pick<FhirServer, 'load' | 'repo'>;

export async function loadFiles(server: Loadable, paths: string[], options: LoadFilesOptions = {}): Promise<LoadFilesResult> {
  const logger = options.logger ?? silentLogger;
  const started = Date.now();
  const result: LoadFilesResult = { counts: {}, total: 0, files: [], failures: [], ms: 0 };
  const files: string[] = [];
  for (const p of paths) files.push(...(await expand(p)));

  for (const file of files) {
    try {
      const loaded = await loadFile(server, file, options);
      result.files.push(loaded);
      for (const [type, n] of Object.entries(loaded.counts)) result.counts[type] = (result.counts[type] ?? 0) + n;
      result.total += loaded.total;
    } catch (err) {
      const failure = toFailure(file, err);
      logger.warn({ file: path.basename(file), line: failure.line, issues: failure.issues?.length }, 'fhir load: file rejected');
      if (!options.continueOnError) {
        throw new AdapterError('input-invalid', `${describeFailure(failure)}${result.files.length ? ` (${result.files.length} earlier file(s) stay loaded)` : ''}`, {
          cause: err,
          details: { file: failure.path, line: failure.line, loadedFiles: result.files.length },
        });
      }
      result.failures.push(failure);
    }
  }
  result.ms = Date.now() - started;
  logger.info({ files: result.files.length, failed: result.failures.length, resources: result.total, ms: result.ms }, 'fhir load finished');
  return result;
}

export function describeFailure(f: LoadFailure): string {
  const where = f.line !== undefined ? `${f.path}:${f.line}` : f.path;
  return `${where}: ${f.message}`;
}

async function expand(p: string): Promise<string[]> {
  let s;
  try {
    s = await stat(p);
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new AdapterError(missing ? 'not-found' : 'input-invalid', `Cannot load ${p}: ${missing ? 'no such file or directory' : (err as Error).message}`, { cause: err });
  }
  if (!s.isDirectory()) return [p];
  const out: string[] = [];
  const names = (await readdir(p)).sort();
  for (const name of names) {
    const child = path.join(p, name);
    const cs = await stat(child);
    if (cs.isDirectory()) out.push(...(await expand(child)));
    else if (/\.(json|ndjson)$/i.test(name)) out.push(child);
  }
  return out;
}

class LineError extends Error {
  constructor(
    readonly line: number | undefined,
    message: string,
    readonly issues?: OperationOutcomeIssue[],
  ) {
    super(message);
  }
}

async function loadFile(server: Loadable, file: string, options: LoadFilesOptions): Promise<LoadedFile> {
  if (/\.ndjson$/i.test(file)) return { path: file, ...(await loadNdjson(server, file, options.chunkSize ?? DEFAULT_CHUNK)) };

  // A .json file is one resource or Bundle: it is parsed whole (JSON has no line to stream by).
  const text = stripBom(await readFile(file, 'utf8'));
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new LineError(jsonErrorLine(text, err as Error), `not valid JSON: ${jsonProblem(err as Error)}`);
  }
  if (!parsed || typeof parsed !== 'object' || typeof (parsed as Resource).resourceType !== 'string') {
    throw new LineError(undefined, 'not a FHIR resource (no resourceType)');
  }
  const entries = (parsed as Bundle).resourceType === 'Bundle' ? ((parsed as Bundle).entry?.length ?? 0) : 0;
  const maxEntries = options.maxBundleEntries ?? DEFAULT_MAX_BUNDLE_ENTRIES;
  if (entries > maxEntries) {
    // medplum's batch processor spreads the entry list into a call (stack overflow beyond ~100k).
    throw new LineError(undefined, `a Bundle of ${entries} entries is more than ${maxEntries} loaded as one transaction: split it, or write its resources as NDJSON`);
  }
  return { path: file, ...(await server.load(parsed as Bundle | Resource)) };
}

/**
 * NDJSON is read as a stream, line by line, and written in chunks: memory holds one chunk of parsed
 * resources (plus the repository's data), never the file. The whole file is still one all-or-nothing
 * unit (a savepoint of the repository's journal): a bad line at the end undoes the lines before it.
 * Each resource is written as is: with an id it keeps it (a repeated id becomes a new version), without
 * one the server assigns it.
 */
async function loadNdjson(server: Loadable, file: string, chunkSize: number): Promise<{ counts: Record<string, number>; total: number }> {
  const { repo } = server;
  const counts: Record<string, number> = {};
  let total = 0;
  let chunk: { resource: Resource; line: number }[] = [];
  const flush = async (): Promise<void> => {
    for (const { resource, line } of chunk) {
      try {
        await repo.createResource(resource);
      } catch (err) {
        if (err instanceof OperationOutcomeError) throw new LineError(line, issuesText(err, resource.resourceType), err.outcome.issue);
        throw err;
      }
      counts[resource.resourceType] = (counts[resource.resourceType] ?? 0) + 1;
      total++;
    }
    chunk = [];
    // Between chunks the server answers requests (e.g. /metadata of a parent process waiting for it).
    await new Promise((resolve) => setImmediate(resolve));
  };
  await repo.runAtomically(async () => {
    let lineNo = 0;
    for await (const raw of readLines(file)) {
      lineNo++;
      const text = lineNo === 1 ? stripBom(raw) : raw;
      if (text.trim() === '') continue;
      let r: unknown;
      try {
        r = JSON.parse(text);
      } catch (err) {
        throw new LineError(lineNo, `not valid JSON: ${jsonProblem(err as Error)}`);
      }
      if (!r || typeof r !== 'object' || Array.isArray(r) || typeof (r as Resource).resourceType !== 'string') {
        throw new LineError(lineNo, 'not a FHIR resource (no resourceType)');
      }
      if (!isR4ResourceType((r as Resource).resourceType)) {
        throw new LineError(lineNo, `unknown R4 resource type "${(r as Resource).resourceType}"`);
      }
      chunk.push({ resource: r as Resource, line: lineNo });
      if (chunk.length >= chunkSize) await flush();
    }
    await flush();
  });
  return { counts, total };
}

/** Lines of a UTF-8 file, read in 64 KiB pieces (a line is held whole, the file never is). */
async function* readLines(file: string): AsyncGenerator<string> {
  const decoder = new StringDecoder('utf8');
  let rest = '';
  for await (const piece of createReadStream(file, { highWaterMark: 1 << 16 })) {
    const text = rest + decoder.write(piece as Buffer);
    let start = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
      yield text.charCodeAt(nl - 1) === 13 ? text.slice(start, nl - 1) : text.slice(start, nl);
      start = nl + 1;
    }
    rest = text.slice(start);
  }
  rest += decoder.end();
  if (rest !== '') yield rest;
}

function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/**
 * What is wrong with unparsable JSON, without quoting it: V8's messages can carry a piece of the input
 * (`Unexpected token 'x', "{...}" is not valid JSON`), and the input is patient data.
 */
export function jsonProblem(err: Error): string {
  if (/unexpected end/i.test(err.message)) return 'unexpected end of input';
  const byLine = /line (\d+) column (\d+)/.exec(err.message);
  if (byLine) return `syntax error at line ${byLine[1]} column ${byLine[2]}`;
  const byPos = /position (\d+)/.exec(err.message);
  if (byPos) return `syntax error at character ${Number(byPos[1]) + 1}`;
  return 'syntax error';
}

function issuesText(err: OperationOutcomeError, stripPrefix?: string): string {
  const issues = (err.outcome.issue ?? []).filter((i) => i.severity === 'error' || i.severity === 'fatal');
  const shown = issues.slice(0, 5).map((i) => {
    let where = i.expression?.[0] ?? '';
    if (stripPrefix && where.startsWith(stripPrefix)) where = where.slice(stripPrefix.length).replace(/^\./, '') || '(resource)';
    return `${where ? `${where}: ` : ''}${i.details?.text ?? i.diagnostics ?? i.code}`;
  });
  return `invalid: ${shown.join('; ')}${issues.length > 5 ? ` (+${issues.length - 5} more)` : ''}`;
}

function toFailure(file: string, err: unknown): LoadFailure {
  if (err instanceof LineError) return { path: file, line: err.line, message: err.message, issues: err.issues };
  if (err instanceof OperationOutcomeError) return { path: file, message: issuesText(err), issues: err.outcome.issue };
  return { path: file, message: err instanceof Error ? err.message : String(err) };
}

/** Line of a JSON.parse error, from "(line N column M)" (newer V8) or "at position N". */
function jsonErrorLine(text: string, err: Error): number | undefined {
  const byLine = /line (\d+)/.exec(err.message);
  if (byLine) return Number(byLine[1]);
  const byPos = /position (\d+)/.exec(err.message);
  if (!byPos) return undefined;
  return text.slice(0, Number(byPos[1])).split('\n').length;
}
