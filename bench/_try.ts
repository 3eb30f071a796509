import { analyzeText } from '../src/nlp/index.js';
const texts = [
  "INDICATION: new confusion, fever. R/O pneumonia.\n\nFINDINGS: There is no evidence of pneumonia. Mild cardiomegaly. Nodule is not seen. No change in the 4 mm nodule.\nIMPRESSION:\n1. No acute process.\n2. Pneumonia cannot be excluded.",
  "Pneumonia is absent. Negative for pneumonia. Without consolidation. Pneumonia has been ruled out. History of pneumonia. Mother had pneumonia. If fever develops, evaluate for pneumonia. Rule out pneumonia. Possible pneumonia. Suspicious for consolidation. Findings may represent atelectasis.",
];
for (const t of texts) {
  const r = analyzeText(t, { targets: ['acute process'] });
  console.log(r.sentences.map(s => `[${s.section}] ${s.text}`).join('\n'));
  for (const m of r.mentions) console.log(m.text, m.start, m.end, m.section, m.concept?.id, m.assertion, m.trigger ?? '', t.slice(m.start, m.end) === m.text);
  console.log('summary', r.summary);
}
