import { Command } from 'commander';
import { AdapterError } from '../core/errors.js';
import { registerNlpCommand, runNlp } from '../cli/commands/nlp.js';

describe('nlp CLI command', () => {
  it('registers `nlp` with --target and --jsonl', () => {
    const program = new Command();
    registerNlpCommand(program);
    const cmd = program.commands.find((c) => c.name() === 'nlp')!;
    expect(cmd.options.map((o) => o.long)).toEqual(expect.arrayContaining(['--target', '--jsonl']));
  });

  it('prints mentions with span, section, assertion and the summary', () => {
    const [line] = [...runNlp('IMPRESSION: No pneumonia. Small left effusion.', { targets: ['small left effusion'] })];
    const out = JSON.parse(line);
    expect(out.mentions[0]).toMatchObject({ text: 'pneumonia', start: 15, end: 24, section: 'IMPRESSION', assertion: 'negated', trigger: 'No', concept: { code: '233604007' } });
    expect(out.mentions[1]).toMatchObject({ text: 'Small left effusion', target: 'small left effusion', assertion: 'affirmed' });
    expect(out.summary).toEqual(['No pneumonia.', 'Small left effusion.']);
  });

  it('JSONL: one result per line; a bad line is an input-invalid error naming the line', () => {
    const gen = runNlp('{"text":"rule out pneumonia","targets":["pneumonia"]}\n\n{"text": 3}\n', { jsonl: true });
    expect(JSON.parse(gen.next().value as string)).toMatchObject({ line: 1, mentions: [{ assertion: 'hypothetical', target: 'pneumonia' }] });
    expect(() => gen.next()).toThrow(new AdapterError('input-invalid', 'line 3: expected an object with a string "text"'));
    expect(() => [...runNlp('{oops', { jsonl: true })]).toThrow(/line 1: not valid JSON/);
  });
});
