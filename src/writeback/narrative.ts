import type { CarePlan, Narrative, RiskAssessment } from 'fhir/r4.js';

/**
 * Human-readable narratives (`text`, status `generated`) of what the adapter writes, built purely from
 * the finished resource itself, so they say nothing the structured data does not. Many EHRs show an
 * external resource through its narrative only; FHIR asks resources to carry one (dom-6). The XHTML is
 * the subset R4 allows (no scripts, no attributes but the namespace), every text escaped.
 */

const XHTML_NS = 'http://www.w3.org/1999/xhtml';

function escapeXhtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]!);
}

function narrative(blocks: string[]): Narrative {
  return { status: 'generated', div: `<div xmlns="${XHTML_NS}">${blocks.join('')}</div>` };
}

const p = (text: string) => `<p>${escapeXhtml(text)}</p>`;
const day = (instant: string | undefined) => instant?.slice(0, 10);

/** The RiskAssessment's narrative: the risk and its window, the rationale, the notes (applicability, shadow mode), its status. */
export function riskAssessmentNarrative(ra: RiskAssessment): Narrative {
  const blocks: string[] = [];
  const title = ra.code?.text ?? 'Risk assessment';
  for (const prediction of ra.prediction ?? []) {
    const band = prediction.qualitativeRisk?.coding?.[0]?.code;
    const percent = prediction.probabilityDecimal === undefined ? undefined : `${(prediction.probabilityDecimal * 100).toFixed(1)} %`;
    const outcome = prediction.outcome?.text ?? prediction.outcome?.coding?.[0]?.display;
    const window = prediction.whenPeriod ? `, from ${day(prediction.whenPeriod.start)} to ${day(prediction.whenPeriod.end)}` : '';
    const risk = [band && `${band} risk`, percent && `(${percent})`].filter(Boolean).join(' ');
    blocks.push(`<p><b>${escapeXhtml(title)}</b>: ${escapeXhtml(`${risk || 'risk'}${window}.`)}</p>`);
    if (outcome) blocks.push(p(`Outcome: ${outcome}`));
    if (prediction.rationale) blocks.push(p(`Rationale: ${prediction.rationale}`));
  }
  for (const note of ra.note ?? []) if (note.text) blocks.push(p(note.text));
  const by = ra.performer?.display ?? ra.method?.text;
  blocks.push(
    p(
      `Status ${ra.status}, as of ${day(ra.occurrenceDateTime) ?? 'unknown'}${by ? `, computed by the model ${by}` : ''}. ` +
        'Asserted by an artificial intelligence model: decision support for a clinician, not a diagnosis.',
    ),
  );
  return narrative(blocks);
}

/** The CarePlan proposal's narrative: what it is, each proposed activity, the notes (what was left out and why, the order). */
export function carePlanNarrative(carePlan: CarePlan): Narrative {
  const blocks: string[] = [];
  blocks.push(`<p><b>${escapeXhtml(carePlan.title ?? 'Care plan proposal')}</b> (${escapeXhtml(`${carePlan.status} ${carePlan.intent}`)})</p>`);
  if (carePlan.description) blocks.push(p(carePlan.description));
  const items = (carePlan.activity ?? []).flatMap((a) => {
    const d = a.detail;
    if (!d) return [];
    const what = d.code?.text ?? d.code?.coding?.find((c) => c.display)?.display ?? d.description ?? d.code?.coding?.[0]?.code ?? 'activity';
    // A description that already names the activity stands alone.
    const line = !d.description || d.description === what ? what : d.description.startsWith(what) ? d.description : `${what}: ${d.description}`;
    return [`<li>${escapeXhtml(`${line} (${d.status})`)}</li>`];
  });
  if (items.length) blocks.push(`<ul>${items.join('')}</ul>`);
  for (const note of carePlan.note ?? []) if (note.text) blocks.push(p(note.text));
  return narrative(blocks);
}
