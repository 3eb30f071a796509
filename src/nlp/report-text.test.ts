import type { Binary, DiagnosticReport } from 'fhir/r4.js';
import { htmlToText } from './html.js';
import { analyzeReport } from './index.js';
import { isExcluded, reportText, type ReportTextOk } from './report-text.js';

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const report = (extra: Partial<DiagnosticReport>): DiagnosticReport => ({
  resourceType: 'DiagnosticReport',
  id: 'r1',
  status: 'final',
  code: { coding: [{ system: 'http://loinc.org', code: '36643-5' }] },
  ...extra,
});
const ok = (r: ReturnType<typeof reportText>): ReportTextOk => {
  if (isExcluded(r)) throw new Error(`unexpectedly excluded: ${r.excluded}`);
  return r;
};

describe('htmlToText', () => {
  it('drops script and style contents, decodes entities, keeps headings on their own lines', () => {
    const html =
      '<html><head><title>t</title><style>p{color:red}</style></head><body><h2>Findings</h2><p>No pneumothorax &amp; no effusion.<script>alert("x<p>")</script></p>' +
      '<p><b>IMPRESSION:</b> Right lower lobe pneumonia.</p><div>Size &lt; 5&nbsp;mm &#8212; &#x2713;</div></body></html>';
    const { text, removedActive } = htmlToText(html);
    // Block boundaries become line breaks (adjacent blocks a blank line: a paragraph break).
    expect(text).toBe('Findings\n\nNo pneumothorax & no effusion.\n\nIMPRESSION: Right lower lobe pneumonia.\n\nSize < 5 mm \u2014 \u2713');
    expect(removedActive).toEqual(['script']);
  });

  it('handles unclosed scripts, comments, quoted ">" in attributes and bare "<"', () => {
    expect(htmlToText('<p title="a>b">keep</p><!-- hidden --> x < 3<script>never').text).toBe('keep\nx < 3');
    expect(htmlToText('&lt;script&gt;alert(1)&lt;/script&gt;').text).toBe('<script>alert(1)</script>');
  });
});

describe('htmlToText on real EHR markup (streaming parser, full entity table)', () => {
  it('decodes every HTML named entity, numeric references and legacy forms without a semicolon', () => {
    expect(htmlToText('<p>&alpha;-thalassemia &rarr; Hb 9.1 &ge; 9; T &frac13;; &hearts; &Ccedil;a &amp co; 5 &lt 6; &#x1F600; &unknownentity;</p>').text).toBe(
      '\u03b1-thalassemia \u2192 Hb 9.1 \u2265 9; T \u2153; \u2665 \u00c7a & co; 5 < 6; \u{1F600} &unknownentity;',
    );
  });

  it('reads an XHTML narrative: self-closing tags, CDATA, namespaces, tables as rows with cell breaks', () => {
    const xhtml =
      '<div xmlns="http://www.w3.org/1999/xhtml"><h3>Findings</h3><table><tr><th>Finding</th><th>Result</th></tr>' +
      '<tr><td>No effusion</td><td>Pneumonia in the right lower lobe</td></tr></table><p>Line one<br/>Line two</p><div/>' +
      '<p><![CDATA[Heart size normal.]]></p><pre>Fever:   none\nCough:   yes</pre></div>';
    expect(htmlToText(xhtml).text).toBe(
      'Findings\n\nFinding   Result\n\nNo effusion   Pneumonia in the right lower lobe\n\nLine one\nLine two\n\nHeart size normal.\n\nFever:   none\nCough:   yes',
    );
  });

  it('drops active content with everything inside it, however nested or unclosed, and counts it', () => {
    const r = htmlToText('<p>A</p><iframe src="x"><p>pneumonia</p></iframe><object><param name="a"><embed src="y">pneumonia</object><p>B</p><svg><text>pneumonia</text></svg><applet>pneumonia');
    expect(r.text).toBe('A\n\nB');
    expect(r.removedActive.sort()).toEqual(['applet', 'embed', 'iframe', 'object']);
  });

  it('a table cell boundary ends a negation scope in the analyzer', () => {
    const report: DiagnosticReport = {
      resourceType: 'DiagnosticReport',
      id: 'tbl',
      status: 'final',
      code: {},
      presentedForm: [{ contentType: 'application/xhtml+xml', data: b64('<table><tr><td>No effusion</td><td>Pneumonia in the right lower lobe</td></tr></table>') }],
    };
    expect(analyzeReport(report).mentions.map((m) => [m.text, m.negation])).toEqual([
      ['effusion', 'negated'],
      ['Pneumonia', 'affirmed'],
    ]);
  });
});

describe('reportText', () => {
  it('reads inline base64 text/plain and appends conclusion and conclusion codes under CONCLUSION', () => {
    const r = ok(
      reportText(
        report({
          presentedForm: [{ contentType: 'text/plain; charset=utf-8', data: b64('FINDINGS: Small effusion.') }],
          conclusion: 'Small effusion',
          conclusionCode: [{ coding: [{ system: 'http://snomed.info/sct', code: '233604007', display: 'Pneumonia' }] }],
        }),
      ),
    );
    // "Small effusion" is already in the presented form, so only the code's display is appended.
    expect(r.text).toBe('FINDINGS: Small effusion.\n\nCONCLUSION: Pneumonia.');
    expect(r.sources.map((s) => s.part)).toEqual(['presentedForm[0]', 'conclusionCode[0]']);
    expect(r.text.slice(r.sources[1].start, r.sources[1].end)).toBe('CONCLUSION: Pneumonia.');
  });

  it('uses conclusion alone', () => {
    expect(ok(reportText(report({ conclusion: 'No acute disease.' }))).text).toBe('CONCLUSION: No acute disease.');
  });

  it('resolves url to a Binary from the map (relative, absolute under serverBase, contained)', () => {
    const binaries = new Map<string, Binary>([['Binary/b1', { resourceType: 'Binary', id: 'b1', contentType: 'text/plain', data: b64('IMPRESSION: Pneumonia.') }]]);
    expect(ok(reportText(report({ presentedForm: [{ url: 'Binary/b1' }] }), binaries)).text).toBe('IMPRESSION: Pneumonia.');
    expect(ok(reportText(report({ presentedForm: [{ url: 'https://ehr.example/fhir/Binary/b1/_history/2' }] }), binaries, { serverBase: 'https://ehr.example/fhir/' })).text).toBe(
      'IMPRESSION: Pneumonia.',
    );
    const contained = report({
      contained: [{ resourceType: 'Binary', id: 'c1', contentType: 'text/html', data: b64('<p>Findings: clear</p>') }],
      presentedForm: [{ url: '#c1' }],
    });
    expect(ok(reportText(contained)).text).toBe('Findings: clear');
  });

  it('excludes a report whose only attachment cannot be resolved, or points to another server', () => {
    const r1 = reportText(report({ presentedForm: [{ url: 'Binary/missing', contentType: 'text/plain' }] }), new Map());
    expect(r1).toMatchObject({ excluded: 'bad-attachment', detail: 'presentedForm[0]: referenced Binary was not fetched' });
    const r2 = reportText(report({ presentedForm: [{ url: 'https://evil.example/Binary/b1' }] }), new Map(), { serverBase: 'https://ehr.example/fhir' });
    expect(r2).toMatchObject({ excluded: 'bad-attachment' });
  });

  it('bad base64 is a bad-attachment, not a throw', () => {
    const r = reportText(report({ presentedForm: [{ contentType: 'text/plain', data: 'not*base64!' }] }));
    expect(r).toMatchObject({ excluded: 'bad-attachment', detail: 'presentedForm[0]: data is not valid base64' });
    const bin = reportText(report({ presentedForm: [{ contentType: 'text/plain', data: Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46]).toString('base64') }] }));
    expect(isExcluded(bin) && bin.excluded).toBe('bad-attachment');
  });

  it('reads a UTF-16 attachment with a byte order mark; refuses binary that happens to decode', () => {
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('IMPRESSION: No pneumonia.', 'utf16le')]).toString('base64');
    expect(ok(reportText(report({ presentedForm: [{ contentType: 'text/plain', data: utf16 }] }))).text).toBe('IMPRESSION: No pneumonia.');
    const controls = Buffer.from('\u0001\u0002\u0003\u0004abc\u0005\u0006').toString('base64');
    expect(reportText(report({ presentedForm: [{ contentType: 'text/plain', data: controls }] }))).toMatchObject({ excluded: 'bad-attachment', detail: 'presentedForm[0]: data is binary (control characters)' });
  });

  it('unknown content type (PDF) is unsupported-content-type; other parts still used', () => {
    const pdfOnly = reportText(report({ presentedForm: [{ contentType: 'application/pdf', data: b64('%PDF-1.4') }] }));
    expect(pdfOnly).toMatchObject({ excluded: 'unsupported-content-type', detail: 'presentedForm[0]: content type application/pdf' });
    const mixed = ok(
      reportText(report({ presentedForm: [{ contentType: 'application/pdf', data: b64('%PDF') }, { contentType: 'text/plain', data: b64('No pneumonia.') }] })),
    );
    expect(mixed.text).toBe('No pneumonia.');
    expect(mixed.issues).toEqual([{ part: 'presentedForm[0]', reason: 'unsupported-content-type', detail: 'content type application/pdf' }]);
  });

  it('empty report', () => {
    expect(reportText(report({}))).toMatchObject({ excluded: 'empty-report' });
    expect(reportText(report({ conclusion: '   ', presentedForm: [{ contentType: 'text/plain', data: b64('  \n ') }] }))).toMatchObject({ excluded: 'empty-report' });
  });

  it('HTML with a script: script removed, rest used, counted as unsafe-content', () => {
    const html = '<p>FINDINGS: No consolidation.</p><script>document.write("pneumonia")</script>';
    const r = ok(reportText(report({ presentedForm: [{ contentType: 'text/html', data: b64(html) }] })));
    expect(r.text).toBe('FINDINGS: No consolidation.');
    expect(r.issues).toEqual([{ part: 'presentedForm[0]', reason: 'unsafe-content', detail: 'removed active HTML: script' }]);
    const onlyScript = reportText(report({ presentedForm: [{ contentType: 'text/html', data: b64('<script>x()</script>') }] }));
    expect(onlyScript).toMatchObject({ excluded: 'unsafe-content' });
  });
});
