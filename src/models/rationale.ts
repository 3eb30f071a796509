import type { PredictionRationale } from '../core/types.js';
import type { FeatureSpec } from '../features/index.js';
import { signed, withUnit } from './format.js';

/**
 * Clinician-readable rationale: the largest contributions with the values and units behind them,
 * e.g. "glucose 182 mg/dL raises the risk (+0.21 log-odds)". Pure.
 *
 * Needs, per model-input column: a label, the measured unit, and how to read the value
 * (RationaleFeature; rationaleFeaturesFromMapping derives them from the mapping); the contributions
 * (explain / explainBatch output); the measured values by column id (FeatureRow.raw: the value in the
 * feature's unit BEFORE transforms, so a log-transformed input is shown in its measured unit: ln_tg is
 * shown as triglyceride in mg/dL); optionally the imputed flags by column id.
 */

export interface RationaleFeature {
  /** Model-input column id (card.featureIds), e.g. `ln_tg` or `sex=male`. */
  column: string;
  label: string;
  /** UCUM unit of the measured value. */
  unit?: string;
  /** numeric: value with unit; category: a one-hot column (`sex=male`); finding: 1 present / 0 absent. */
  kind: 'numeric' | 'category' | 'finding';
  /** For category columns: the category the column stands for (`male`). */
  category?: string;
}

/** One contribution for clinicians (the shape travels in `Prediction.rationale`, src/core/types.ts). */
export type RationaleItem = PredictionRationale['items'][number];

/** All items, and all of them as one sentence for prediction.rationale and the JSON output. */
export type Rationale = PredictionRationale;

const PHRASE_END = / \(|,|;|\.(\s|$)/;

/** First phrase of a description, without a trailing "in <unit>" ("Serum urea in mmol/L; ..." -> "Serum urea"). */
function firstPhrase(text: string): string {
  const cut = text.split(PHRASE_END)[0].trim();
  return cut.replace(/ in \S*\/\S*$/, '').trim();
}

/** A code display as a label: "Glucose [Mass/volume] in Blood" -> "Glucose"; "LDL cholesterol direct assay" -> "LDL cholesterol". */
function displayLabel(display: string): string {
  return display
    .replace(/\s*\[.*$/, '')
    .replace(/ (direct assay|by calculation)$/i, '')
    .replace(/ in (Serum or Plasma|Blood|Serum|Plasma)$/i, '')
    .trim();
}

/** Lower-case the first letter unless the first word is an acronym (LDL, HDL). */
function sentenceCase(label: string): string {
  const first = label.split(' ')[0];
  return first.length > 1 && first === first.toUpperCase() ? label : label[0].toLowerCase() + label.slice(1);
}

function labelOf(spec: FeatureSpec): string {
  const s = spec.source;
  switch (s.kind) {
    case 'patient-age':
      return 'age';
    case 'patient-sex':
      return 'sex';
    case 'observation': {
      // a short description says it best ("Total cholesterol."); a long one explains the computation, and
      // the description of a log-transformed input names the transform, not the measured quantity
      const logged = spec.transforms.some((t) => t === 'log' || (typeof t === 'object' && 'log' in t));
      if (spec.description && !logged) {
        const phrase = firstPhrase(spec.description);
        if (phrase.split(/\s+/).length <= 4) return sentenceCase(phrase);
      }
      const display = s.codes.find((c) => c.display)?.display;
      return sentenceCase(display ? displayLabel(display) : spec.id);
    }
    case 'report-finding':
      return sentenceCase(s.findings.find((f) => f.display)?.display ?? spec.id);
    default:
      return sentenceCase(spec.description ? firstPhrase(spec.description) : spec.id);
  }
}

/**
 * Rationale features for every input column of a mapping, labels derived from the source (code display,
 * a short description, the finding); `labels` (by column id) overrides any of them.
 */
export function rationaleFeaturesFromMapping(mapping: { features: FeatureSpec[] }, labels: Readonly<Record<string, string>> = {}): RationaleFeature[] {
  const out: RationaleFeature[] = [];
  for (const spec of mapping.features) {
    if (spec.input === false) continue;
    if (spec.oneHot) {
      for (const category of spec.oneHot) {
        const column = `${spec.id}=${category}`;
        out.push({ column, label: labels[column] ?? labelOf(spec), kind: 'category', category });
      }
      continue;
    }
    const kind = spec.source.kind === 'report-finding' ? 'finding' : 'numeric';
    out.push({ column: spec.id, label: labels[spec.id] ?? labelOf(spec), unit: spec.unit, kind });
  }
  return out;
}

function valueText(f: RationaleFeature, value: number | undefined, imputed: boolean): string {
  if (imputed) return `${f.label} not measured (imputed)`;
  if (value === undefined) return f.label;
  if (f.kind === 'category') return value >= 0.5 ? `${f.label} ${f.category}` : `${f.label} other than ${f.category}`;
  if (f.kind === 'finding') return `${f.label} ${value >= 0.5 ? 'present' : 'absent'}`;
  return `${f.label} ${withUnit(value, f.unit)}`;
}

/** The rationale of one prediction (see the module comment for what it needs). */
export function rationale(
  contributions: readonly { featureId: string; contribution: number }[],
  features: readonly RationaleFeature[],
  raw: Readonly<Record<string, number | null>>,
  imputed: Readonly<Record<string, boolean>> = {},
): Rationale {
  const items = contributions.map((c): RationaleItem => {
    const f = features.find((x) => x.column === c.featureId) ?? { column: c.featureId, label: c.featureId, kind: 'numeric' as const };
    const v = raw[c.featureId];
    const value = typeof v === 'number' && Number.isFinite(v) ? v : undefined;
    const isImputed = imputed[c.featureId] === true;
    const direction = c.contribution > 0 ? 'raises' : c.contribution < 0 ? 'lowers' : 'does not change';
    const text = `${valueText(f, value, isImputed)} ${direction} the risk (${signed(c.contribution)} log-odds)`;
    return { column: c.featureId, label: f.label, ...(value !== undefined ? { value } : {}), ...(f.unit ? { unit: f.unit } : {}), imputed: isImputed, contribution: c.contribution, direction, text };
  });
  return { items, text: items.map((i) => i.text).join('; ') };
}
