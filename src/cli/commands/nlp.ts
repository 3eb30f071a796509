import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { AdapterError } from '../../core/errors.js';
import { analyzeText, type TextAnalysis } from '../../nlp/index.js';

/**
 * `fhir-ml nlp [--target PHRASE ...] [--jsonl] [FILE|-]`
 * Reads report text from FILE or stdin and prints JSON: sentences' mentions with span, section,
 * assertion and trigger, plus the extractive summary. With --jsonl, each input line is an object
 * `{ "text": string, "targets"?: string[] }` and one JSON result is printed per line.
 * Errors are AdapterError('input-invalid') naming the file / line; report text is never logged.
 */
export function registerNlpCommand(program: Command): Command {
  return program
    .command('nlp')
    .description('Find findings and target phrases in report text, with ConText assertions (negated, possible, ...)')
    .argument('[file]', 'text file, or - for stdin', '-')
    .option('-t, --target <phrase>', 'extra phrase to find and assert (repeatable)', collect, [] as string[])
    .option('--jsonl', 'input is JSON Lines: {"text": "...", "targets": ["..."]} per line')
    .option('--pretty', 'indent the JSON output')
    .action((file: string, opts: { target: string[]; jsonl?: boolean; pretty?: boolean }) => {
      const input = readInput(file);
      for (const line of runNlp(input, { targets: opts.target, jsonl: opts.jsonl === true, pretty: opts.pretty === true })) {
        process.stdout.write(`${line}\n`);
      }
    });
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function readInput(file: string): string {
  try {
    return readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new AdapterError(code === 'ENOENT' ? 'not-found' : 'input-invalid', `cannot read ${file === '-' ? 'stdin' : file}: ${code ?? 'error'}`, { cause: err });
  }
}

/** The command's work without I/O: yields one output line per input (exported for tests). */
export function* runNlp(input: string, opts: { targets?: string[]; jsonl?: boolean; pretty?: boolean } = {}): Generator<string> {
  const render = (r: TextAnalysis, extra: Record<string, unknown> = {}) =>
    JSON.stringify(
      {
        ...extra,
        mentions: r.mentions.map((m) => ({
          text: m.text,
          start: m.start,
          end: m.end,
          section: m.section,
          assertion: m.assertion,
          ...(m.concept ? { concept: { system: m.concept.system, code: m.concept.code, display: m.concept.display, id: m.concept.id } } : {}),
          ...(m.target !== undefined ? { target: m.target } : {}),
          ...(m.trigger !== undefined ? { trigger: m.trigger } : {}),
        })),
        summary: r.summary,
      },
      null,
      opts.pretty ? 2 : undefined,
    );
  if (!opts.jsonl) {
    yield render(analyzeText(input, { targets: opts.targets }));
    return;
  }
  const lines = input.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i];
    const lineNo = i + 1;
    if (!raw.trim()) continue;
    let obj: unknown;
    try {
      obj = JSON.parse(raw);
    } catch {
      throw new AdapterError('input-invalid', `line ${lineNo}: not valid JSON`);
    }
    if (typeof obj !== 'object' || obj === null || typeof (obj as { text?: unknown }).text !== 'string') {
      throw new AdapterError('input-invalid', `line ${lineNo}: expected an object with a string "text"`);
    }
    const t = (obj as { targets?: unknown }).targets;
    if (t !== undefined && !(Array.isArray(t) && t.every((x) => typeof x === 'string'))) {
      throw new AdapterError('input-invalid', `line ${lineNo}: "targets" must be an array of strings`);
    }
    const targets = [...(opts.targets ?? []), ...((t as string[] | undefined) ?? [])];
    yield render(analyzeText((obj as { text: string }).text, { targets }), { line: lineNo });
  }
}
