/**
 * `fhir-ml nlp` end to end in-process: input decoding shared with report attachments (UTF-16 BOM,
 * binary and invalid bytes refused with exit 64), --content-type text/html, JSON Lines with bad
 * lines reported by number, and `nlp evaluate`.
 */
import { jest } from '@jest/globals';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PACKAGE_ROOT } from '../../core/paths.js';
import { main } from '../main.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(args: string[]): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const out = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  const err = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  process.exitCode = undefined;
  try {
    const code = await main(['node', 'fhir-ml', ...args]);
    return { code, stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
    process.exitCode = undefined;
  }
}

/** Deterministic pseudo-random bytes. */
function noise(n: number, seed = 7): Buffer {
  const b = Buffer.alloc(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    b[i] = s >> 16;
  }
  return b;
}

describe('fhir-ml nlp', () => {
  let tmp: string;
  const file = (name: string, data: string | Buffer) => {
    const p = path.join(tmp, name);
    writeFileSync(p, data);
    return p;
  };
  beforeAll(() => {
    tmp = mkdtempSync(path.join(tmpdir(), 'fhir-ml-nlp-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('prints mentions with span, section, the three dimensions, the summary assertion and the summary', async () => {
    const r = await run(['nlp', '-t', 'small left effusion', file('plain.txt', 'IMPRESSION: No pneumonia. Small left effusion.')]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.mentions[0]).toMatchObject({
      text: 'pneumonia',
      start: 15,
      end: 24,
      section: 'IMPRESSION',
      negation: 'negated',
      temporality: 'recent',
      experiencer: 'patient',
      assertion: 'negated',
      trigger: 'No',
      concept: { code: '233604007' },
    });
    expect(out.mentions[1]).toMatchObject({ text: 'Small left effusion', target: 'small left effusion', assertion: 'affirmed' });
    expect(out.summary).toEqual(['No pneumonia.', 'Small left effusion.']);
  });

  it('refuses random bytes and binary data with exit 64 and a message naming the problem, printing no findings', async () => {
    // Random bytes around a finding word: read leniently they would yield an "affirmed" pneumonia.
    const random = file('random.bin', Buffer.concat([noise(300), Buffer.from(' pneumonia '), noise(300, 11)]));
    const r1 = await run(['nlp', random]);
    expect(r1.code).toBe(64);
    expect(r1.stdout).toBe('');
    expect(r1.stderr).toContain(`input-invalid: ${random}: data is not valid utf-8 text; expected text`);
    // Valid UTF-8 with NUL bytes (a binary format with text in it) is binary too.
    const nul = file('nul.bin', Buffer.concat([Buffer.from('PK\u0003\u0004\u0000\u0000pneumonia'), Buffer.alloc(20)]));
    const r2 = await run(['nlp', nul]);
    expect(r2.code).toBe(64);
    expect(r2.stderr).toContain('data is binary (NUL bytes)');
  });

  it('reads UTF-16 with a byte order mark (little and big endian)', async () => {
    const le = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('FINDINGS: No pneumonia.\r\n', 'utf16le')]);
    const be = Buffer.from(le.subarray(2)).swap16();
    for (const data of [le, Buffer.concat([Buffer.from([0xfe, 0xff]), be])]) {
      const r = await run(['nlp', file('utf16.txt', data)]);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout).mentions).toEqual([expect.objectContaining({ text: 'pneumonia', start: 13, section: 'FINDINGS', negation: 'negated' })]);
    }
    // A UTF-8 BOM is dropped, not analysed.
    const r = await run(['nlp', file('bom8.txt', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('No pneumonia.')]))]);
    expect(JSON.parse(r.stdout).mentions[0]).toMatchObject({ start: 3, negation: 'negated' });
  });

  it('--content-type text/html strips markup as sync does: script dropped, block elements as line breaks, entities decoded', async () => {
    const html = '<h2>Impression</h2><p>No&nbsp;pneumonia.</p><script>document.write("pneumonia")</script><p>Small effusion &amp; atelectasis.</p>';
    const r = await run(['nlp', '--content-type', 'text/html; charset=utf-8', file('report.html', html)]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.mentions.map((m: { text: string; section: string; assertion: string }) => [m.text, m.section, m.assertion])).toEqual([
      ['pneumonia', 'IMPRESSION', 'negated'],
      ['effusion', 'IMPRESSION', 'affirmed'],
      ['atelectasis', 'IMPRESSION', 'affirmed'],
    ]);
    const bad = await run(['nlp', '--content-type', 'application/pdf', file('x.pdf', '%PDF-1.4')]);
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain('--content-type: content type application/pdf is not supported');
  });

  it('--jsonl reports each bad line by number and goes on; exit 3 when some lines were bad', async () => {
    const lines = Buffer.concat([
      Buffer.from('{"text":"rule out pneumonia","targets":["pneumonia"]}\n'),
      Buffer.from('{oops\n'),
      Buffer.from('{"text":"no fever \u00e9'),
      Buffer.from([0xc3, 0x28]), // invalid UTF-8 inside line 3
      Buffer.from('"}\r\n\n'),
      Buffer.from('{"text": 3}\n'),
      Buffer.from('{"text":"<p>No <b>pneumonia</b></p>","contentType":"text/html"}\n'),
      Buffer.from('{"text":"a\\u0000b\\u0000c"}\n'),
      Buffer.from('{"text":"History of pneumonia."}\n'),
      Buffer.from('{"text":"%PDF-1.4","contentType":"application/pdf"}'),
    ]);
    const r = await run(['nlp', '--jsonl', file('in.jsonl', lines)]);
    expect(r.code).toBe(3);
    const out = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(out).toEqual([
      expect.objectContaining({ line: 1, mentions: [expect.objectContaining({ target: 'pneumonia', temporality: 'hypothetical', assertion: 'hypothetical' })] }),
      { line: 2, error: { code: 'input-invalid', message: 'not valid JSON' } },
      { line: 3, error: { code: 'input-invalid', message: 'not valid UTF-8' } },
      { line: 5, error: { code: 'input-invalid', message: 'expected an object with a string "text"' } },
      expect.objectContaining({ line: 6, mentions: [expect.objectContaining({ text: 'pneumonia', negation: 'negated' })] }),
      { line: 7, error: { code: 'input-invalid', message: '"text": data is binary (NUL bytes)' } },
      expect.objectContaining({ line: 8, mentions: [expect.objectContaining({ text: 'pneumonia', temporality: 'historical', assertion: 'historical' })] }),
      { line: 9, error: { code: 'input-invalid', message: '"contentType": content type application/pdf is not supported (text/plain, text/html, application/xhtml+xml)' } },
    ]);
    expect(r.stderr).toContain('line 2: not valid JSON');
    expect(r.stderr).toContain('line 3: not valid UTF-8');
    expect(r.stderr).toContain('3 line(s) analysed, 5 bad line(s) reported');
  });

  it('ends quietly when its reader goes away (| head): exit 141, no stack trace, for a text and for JSON Lines', async () => {
    const text = file('long.txt', 'No pneumonia. Consolidation in the right lower lobe.\n'.repeat(4000));
    const jsonl = file('long.jsonl', '{"text":"No pneumonia. Consolidation in the right lower lobe."}\n'.repeat(4000));
    for (const args of [[text], ['--jsonl', jsonl]]) {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'nlp', ...args], { cwd: PACKAGE_ROOT, env: { ...process.env, FHIR_ML_CONFIG: '' } });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const code = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      // As `head -c 100` does once it has what it wants.
      await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
      child.stdout.destroy();
      expect(await code).toBe(141);
      expect(stderr).not.toMatch(/EPIPE|Error|\n\s+at /);
    }
  });

  it('evaluate: per split, dimension and class precision, recall, F1 and the confusion matrix', async () => {
    const labelled = [
      { split: 'dev', text: 'No pneumonia.', target: 'pneumonia', start: 3, negation: 'negated', temporality: 'recent', experiencer: 'patient' },
      { split: 'dev', text: 'History of pneumonia.', target: 'pneumonia', start: 11, negation: 'affirmed', temporality: 'historical', experiencer: 'patient' },
      { split: 'dev', text: 'Mother had no fever.', target: 'fever', start: 14, negation: 'negated', temporality: 'recent', experiencer: 'other' },
      { split: 'heldout', text: 'Fever.', target: 'fever', start: 0, negation: 'affirmed', temporality: 'recent', experiencer: 'patient' },
      { split: 'heldout', text: 'Cough.', target: 'wheeze', negation: 'affirmed', temporality: 'recent', experiencer: 'patient' },
    ];
    const f = file('labelled.jsonl', labelled.map((l) => JSON.stringify(l)).join('\n'));
    const r = await run(['nlp', 'evaluate', '--json', f]);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.dev.mentions).toBe(3);
    expect(report.dev.dimensions.negation.classes.negated).toMatchObject({ precision: 1, recall: 1, support: 2 });
    expect(report.dev.dimensions.experiencer.confusion).toEqual({ patient: { patient: 2 }, other: { other: 1 } });
    expect(report.heldout).toMatchObject({ mentions: 2, notFound: 1 });
    expect(report.heldout.dimensions.negation.classes.affirmed).toMatchObject({ precision: 1, recall: 0.5 });
    const text = await run(['nlp', 'evaluate', '--split', 'dev', f]);
    expect(text.stdout).toContain('== dev: 3 mentions (0 target(s) not found) ==');
    expect(text.stdout).not.toContain('== heldout');
    const bad = await run(['nlp', 'evaluate', file('bad.jsonl', '{"split":"test","text":"x","target":"x"}\n')]);
    expect(bad.code).toBe(64);
    expect(bad.stderr).toMatch(/bad\.jsonl: 1 bad line\(s\): line 1: split:/);
  });
});
