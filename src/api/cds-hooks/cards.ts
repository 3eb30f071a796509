import { randomUUID } from 'node:crypto';
import type { Prediction } from '../../core/types.js';
import type { Applicability, ModelCard } from '../../models/index.js';
import type { Card } from './schema.js';

/**
 * The card of a scored patient: risk and band in the summary, and in the detail the rationale (the
 * largest contributions with the values behind them), the applicability flags (imputed inputs, inputs
 * outside the training range, the out-of-distribution check), the model's intended use, and that nothing
 * was written. Suggestions are the CarePlan proposal's activities, when a proposal is given; the link
 * opens the patient's view in the console by an opaque id (no patient data in the URL). Pure.
 */

export const OVERRIDE_REASON_SYSTEM = 'https://fhir-ml-adapter.dev/cds-override-reason';
export const MODEL_TOPIC_SYSTEM = 'https://fhir-ml-adapter.dev/model';

export interface CardFacts {
  card: Pick<ModelCard, 'id' | 'version' | 'name' | 'intendedUse' | 'horizon' | 'outcome'>;
  prediction: Prediction;
  asOf: Date;
  /** The batch step's applicability of the score, when it assessed one. */
  applicability?: Applicability;
  /** The clinician-readable rationale sentence, when there is one. */
  rationale?: string;
  /** Imputed input columns (from the feature row), used when no applicability assessment is given. */
  imputed: string[];
  /** Proposed activities (the CarePlan proposal's), as suggestions. */
  suggestions?: { label: string; resource: { resourceType: string } & Record<string, unknown> }[];
  /** Why no care plan was proposed, when that is worth saying. */
  proposalNote?: string;
  /** The console's view of this patient and model, addressed by an opaque id. */
  consoleUrl?: string;
}

const HORIZON_UNITS: Record<string, [string, string]> = { h: ['hour', 'hours'], d: ['day', 'days'], wk: ['week', 'weeks'], mo: ['month', 'months'], a: ['year', 'years'] };

export function riskCard(facts: CardFacts): Card & { uuid: string } {
  const { card, prediction } = facts;
  const pct = formatPercent(prediction.probability);
  const preliminary = facts.applicability?.decision === 'score-preliminary';
  const title = shortTitle(card.name);
  const summary = `${title}: ${prediction.band} risk (${pct})${preliminary ? ', preliminary' : ''}`.slice(0, 139);
  const [one, many] = HORIZON_UNITS[card.horizon.unit] ?? [card.horizon.unit, card.horizon.unit];
  const horizon = `${card.horizon.value} ${card.horizon.value === 1 ? one : many}`;

  const lines = [
    `**Risk:** ${pct} (${prediction.band}) within ${horizon}: ${card.outcome.coding[0]?.display ?? card.outcome.text.split('.')[0]}.`,
    `**Why:** ${facts.rationale ?? topContributions(prediction)}`,
`**Applicability:** ${facts.applicability?.text.replace(/^Applicability:\s*/, '') ?? (facts.imputed.length ? `imputed inputs: ${facts.imputed.join(', ')}.` : 'every input observed.')}${preliminary ? ' The model\'s policy makes this score preliminary.' : ''}`,
    `**Intended use:** ${card.intendedUse}`,
    ...(facts.proposalNote ? [`**Care plan:** ${facts.proposalNote}`] : []),
    `_Model ${card.id} ${card.version}, computed at ${facts.asOf.toISOString()} from the data the EHR made available; nothing was written to the chart._`,
  ];
  const uuid = randomUUID();
  const out: Card & { uuid: string } = {
    uuid,
    summary,
    detail: lines.join('\n\n'),
    indicator: prediction.band === 'certain' ? 'critical' : prediction.band === 'high' ? 'warning' : 'info',
    source: { label: `fhir-ml-adapter: ${title}`.slice(0, 200), topic: { system: MODEL_TOPIC_SYSTEM, code: card.id, display: card.name } },
    overrideReasons: [
      { system: OVERRIDE_REASON_SYSTEM, code: 'not-applicable', display: 'The model does not apply to this patient' },
      { system: OVERRIDE_REASON_SYSTEM, code: 'data-not-current', display: 'The data behind the score is outdated or wrong' },
      { system: OVERRIDE_REASON_SYSTEM, code: 'clinical-judgement', display: 'Clinical judgement differs' },
    ],
  };
  if (facts.suggestions?.length) {
    out.suggestions = facts.suggestions.map((s) => ({
      label: s.label.slice(0, 200),
      uuid: randomUUID(),
      actions: [{ type: 'create' as const, description: s.label.slice(0, 500), resource: s.resource }],
    }));
    out.selectionBehavior = 'any';
  }
  if (facts.consoleUrl) out.links = [{ label: 'Open in the fhir-ml console', url: facts.consoleUrl, type: 'absolute' }];
  return out;
}

/** "Diabetes progression at 1 year (above-median), logistic regression" -> "Diabetes progression at 1 year". */
function shortTitle(name: string): string {
  return name.split(/,| \(/)[0].trim().slice(0, 90);
}

function formatPercent(p: number): string {
  const pct = p * 100;
  return `${pct < 1 || pct > 99 ? pct.toFixed(1) : Math.round(pct)}%`;
}

function topContributions(prediction: Prediction): string {
  const top = [...(prediction.explanation ?? [])].sort((a, b) => Math.abs(b.contribution) - Math.abs(a.contribution)).slice(0, 3);
  if (!top.length) return 'no explanation was computed.';
  return `${top.map((c) => `${c.featureId} ${c.contribution >= 0 ? 'raises' : 'lowers'} the risk (${c.contribution >= 0 ? '+' : ''}${c.contribution.toFixed(2)} log-odds)`).join('; ')}.`;
}
