import type { ApplicabilityAction, ModelCard } from './model-card.js';
import { formatValue, withUnit } from './format.js';
import type { ApplicabilitySkipReason } from './skip-reasons.js';

/**
 * Applicability of one score: which inputs were imputed, which observed inputs lie outside the
 * training range (card `trainingRanges`, compared in model-input space: the value the model sees), and
 * whether the out-of-distribution check flagged the vector; then the card's `applicabilityPolicy`
 * decides: `score`, `score-preliminary` or `skip`. Pure. Without a policy the decision is `score`, but
 * the findings are still reported. Without training ranges, or without an OOD result, that part is
 * reported as not assessed.
 */

export interface ApplicabilityInput {
  /** Model-input values, in card.featureIds order (FeatureRow.values). */
  values: ArrayLike<number>;
  /** Per column: imputed (FeatureRow.imputed). */
  imputed: readonly boolean[];
  /** Measured values by column id (FeatureRow.raw), for the sentence; ln_tg holds triglycerides in mg/dL. */
  raw?: Readonly<Record<string, number | null>>;
  /** This row's out-of-distribution result (OodRunner.run); absent when the model has no check. */
  ood?: { error: number; flagged: boolean; threshold: number };
  /** Names for the sentence by column id (rationaleFeaturesFromMapping gives them); default the column id. */
  labels?: Readonly<Record<string, string>>;
  /** Shadow mode: whatever the policy decides, a written score is preliminary; the sentence says so. */
  shadow?: boolean;
}

export interface OutOfRange {
  featureId: string;
  side: 'below' | 'above';
  /** Model-input value and the training range it was compared with. */
  value: number;
  min: number;
  max: number;
  /** The same in the measured unit, when the card states it (value from `raw`). */
  measured?: { value?: number; min: number; max: number; unit: string };
}

export interface ApplicabilityTrigger {
  reason: ApplicabilitySkipReason;
  action: ApplicabilityAction;
  detail: string;
}

export interface Applicability {
  /** Number of input columns. */
  inputs: number;
  /** Column ids of imputed inputs. */
  imputed: string[];
  /** Observed inputs outside the training range (imputed inputs are never reported here). */
  outOfRange: OutOfRange[];
  rangesAssessed: boolean;
  ood: { assessed: false } | { assessed: true; error: number; threshold: number; flagged: boolean };
  /** What the card's policy decides. */
  decision: ApplicabilityAction;
  /** Findings the policy acted on, with the action each asked for. */
  triggers: ApplicabilityTrigger[];
  /** Set when decision is `skip`: the reason counted for the patient (one list, skip-reasons.ts). */
  skipReason?: ApplicabilitySkipReason;
  /** One readable sentence for prediction.rationale / note and the JSON output. */
  text: string;
}

const SEVERITY: Record<ApplicabilityAction, number> = { score: 0, 'score-preliminary': 1, skip: 2 };
/** When several findings ask for `skip`, the reason counted is the first of this list. */
const SKIP_PRECEDENCE: ApplicabilitySkipReason[] = ['out-of-distribution', 'input-out-of-range', 'too-many-imputed'];

export function assessApplicability(
  card: Pick<ModelCard, 'id' | 'featureIds' | 'trainingRanges' | 'applicabilityPolicy'>,
  input: ApplicabilityInput,
): Applicability {
  const ids = card.featureIds;
  if (input.values.length !== ids.length || input.imputed.length !== ids.length)
    throw new RangeError(`model ${card.id}: applicability needs ${ids.length} values and imputed flags (${ids.join(', ')})`);
  const imputed = ids.filter((_, j) => input.imputed[j]);
  const outOfRange: OutOfRange[] = [];
  const ranges = card.trainingRanges?.columns;
  if (ranges) {
    ids.forEach((id, j) => {
      const r = ranges[id];
      const v = input.values[j];
      if (!r || input.imputed[j]) return;
      // float32 model inputs against ranges stored to 6 decimals, rounded outward: no tolerance needed
      const side = v < r.min ? 'below' : v > r.max ? 'above' : undefined;
      if (!side) return;
      const raw = input.raw?.[id];
      outOfRange.push({
        featureId: id,
        side,
        value: v,
        min: r.min,
        max: r.max,
        ...(r.measured ? { measured: { ...(typeof raw === 'number' ? { value: raw } : {}), ...r.measured } } : {}),
      });
    });
  }
  const ood: Applicability['ood'] = input.ood ? { assessed: true, ...input.ood } : { assessed: false };

  const policy = card.applicabilityPolicy;
  const triggers: ApplicabilityTrigger[] = [];
  if (policy) {
    const tier = policy.imputed
      .filter((t) => imputed.length > t.moreThan)
      .sort((a, b) => SEVERITY[b.action] - SEVERITY[a.action] || b.moreThan - a.moreThan)[0];
    if (tier) triggers.push({ reason: 'too-many-imputed', action: tier.action, detail: `${imputed.length} of ${ids.length} inputs imputed (more than ${tier.moreThan})` });
    if (outOfRange.length) triggers.push({ reason: 'input-out-of-range', action: policy.outOfRange, detail: outOfRange.map((o) => o.featureId).join(', ') });
    if (ood.assessed && ood.flagged) triggers.push({ reason: 'out-of-distribution', action: policy.outOfDistribution, detail: `reconstruction error ${formatValue(ood.error)} > ${ood.threshold}` });
  }
  const decision = triggers.reduce<ApplicabilityAction>((d, t) => (SEVERITY[t.action] > SEVERITY[d] ? t.action : d), 'score');
  const skipReason = decision === 'skip' ? SKIP_PRECEDENCE.find((r) => triggers.some((t) => t.reason === r && t.action === 'skip')) : undefined;
  const result: Applicability = { inputs: ids.length, imputed, outOfRange, rangesAssessed: ranges !== undefined, ood, decision, triggers, text: '' };
  if (skipReason) result.skipReason = skipReason;
  result.text = applicabilitySentence(result, input.labels, { shadow: input.shadow });
  return result;
}

function rangeText(o: OutOfRange, label: string): string {
  if (o.measured) {
    const value = o.measured.value !== undefined ? withUnit(o.measured.value, o.measured.unit) : 'value';
    return `${label} ${value} ${o.side} the training range (${formatValue(o.measured.min)}-${withUnit(o.measured.max, o.measured.unit)})`;
  }
  return `${label} ${formatValue(o.value)} ${o.side} the training range (${formatValue(o.min)} to ${formatValue(o.max)}, model-input scale)`;
}

/** The readable sentence of an applicability result. */
export function applicabilitySentence(a: Omit<Applicability, 'text'>, labels: Readonly<Record<string, string>> = {}, options: { shadow?: boolean } = {}): string {
  const label = (id: string) => labels[id] ?? id;
  const parts: string[] = [];
  parts.push(a.imputed.length ? `${a.imputed.length} of ${a.inputs} inputs imputed (${a.imputed.map(label).join(', ')})` : `all ${a.inputs} inputs observed`);
  if (!a.rangesAssessed) parts.push('no training range stated for this model');
  else if (a.outOfRange.length) parts.push(`outside the training range: ${a.outOfRange.map((o) => rangeText(o, label(o.featureId))).join('; ')}`);
  else parts.push('observed inputs within the training range');
  if (!a.ood.assessed) parts.push('no out-of-distribution check');
  else
    parts.push(
      a.ood.flagged
        ? `out-of-distribution check flagged the input (reconstruction error ${formatValue(a.ood.error)} above ${a.ood.threshold})`
        : `out-of-distribution check passed (reconstruction error ${formatValue(a.ood.error)}, threshold ${a.ood.threshold})`,
    );
  const preliminaryReasons = a.triggers.filter((t) => t.action === 'score-preliminary').map((t) => t.reason);
  // In shadow mode nothing is written final: the sentence must not say otherwise beside status preliminary.
  const outcome =
    a.decision === 'skip'
      ? `not written (${a.skipReason})`
      : a.decision === 'score-preliminary'
        ? `written as preliminary (${[...preliminaryReasons, ...(options.shadow ? ['shadow mode'] : [])].join(', ')})`
        : options.shadow
          ? 'final, but written as preliminary (shadow mode)'
          : 'written as final';
  return `Applicability: ${parts.join('; ')}. Policy: ${outcome}.`;
}
