import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { OperationOutcomeError } from '@medplum/core';
import type { Bundle, OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import { AdapterError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { FhirServer } from './server.js';

/**
 * Loads files into the embedded server: transaction/batch Bundles (e.g. Synthea's, with `urn:uuid:`
 * references), other Bundles (turned into transactions), single resources (`.json`) and NDJSON
 * (`.ndjson`, one resource per line, as Bulk Data exports write). Directories are walked (sorted), taking
 * `.json` and `.ndjson` files. Each file is one all-or-nothing transaction, validated first unless the
 * server was created with `validate: false`.
 *
 * By default the first bad file stops the load with an AdapterError (`input-invalid`) naming the file and
 * the line (NDJSON) or entry and element path (Bundles); files before it stay loaded. With
 * `continueOnError` every file is tried and the failures are returned instead.
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
}

type Loadable = Pick<FhirServer, 'load'>;

export async function loadFiles(server: Loadable, paths: string[], options: LoadFilesOptions = {}): Promise<LoadFilesResult> {
  const logger = options.logger ?? silentLogger;
  const started = Date.now();
  const result: LoadFilesResult = { counts: {}, total: 0, files: [], failures: [], ms: 0 };
  const files: string[] = [];
  for (const p of paths) files.push(...(await expand(p)));

  for (const file of files) {
    try {
      const loaded = await loadFile(server, file);
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

async function loadFile(server: Loadable, file: string): Promise<LoadedFile> {
  const text = await readFile(file, 'utf8');
  if (/\.ndjson$/i.test(file)) return { path: file, ...(await loadNdjson(server, text)) };

  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new LineError(jsonErrorLine(text, err as Error), `not valid JSON: ${(err as Error).message}`);
  }
  if (!parsed || typeof parsed !== 'object' || typeof (parsed as Resource).resourceType !== 'string') {
    throw new LineError(undefined, 'not a FHIR resource (no resourceType)');
  }
  return { path: file, ...(await server.load(parsed as Bundle | Resource)) };
}

async function loadNdjson(server: Loadable, text: string): Promise<{ counts: Record<string, number>; total: number }> {
  const resources: Resource[] = [];
  const lines: number[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    if (raw.trim() === '') return;
    let r: unknown;
    try {
      r = JSON.parse(raw);
    } catch (err) {
      throw new LineError(i + 1, `not valid JSON: ${(err as Error).message}`);
    }
    if (!r || typeof r !== 'object' || Array.isArray(r) || typeof (r as Resource).resourceType !== 'string') {
      throw new LineError(i + 1, 'not a FHIR resource (no resourceType)');
    }
    resources.push(r as Resource);
    lines.push(i + 1);
  });
  if (resources.length === 0) return { counts: {}, total: 0 };
  try {
    return await server.load(resources);
  } catch (err) {
    // The transaction names Bundle.entry[i]; map it back to the file's line.
    const entry = err instanceof OperationOutcomeError ? entryIndex(err.outcome.issue) : undefined;
    if (entry !== undefined && lines[entry] !== undefined) {
      throw new LineError(lines[entry], issuesText(err as OperationOutcomeError, `Bundle.entry[${entry}].resource`), (err as OperationOutcomeError).outcome.issue);
    }
    throw err;
  }
}

function entryIndex(issues: OperationOutcomeIssue[] | undefined): number | undefined {
  for (const issue of issues ?? []) {
    for (const e of issue.expression ?? []) {
      const m = /^Bundle\.entry\[(\d+)\]/.exec(e);
      if (m) return Number(m[1]);
    }
  }
  return undefined;
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
