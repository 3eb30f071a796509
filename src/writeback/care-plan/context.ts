import type { QualitativeRisk } from '../../core/types.js';
import type { Applicability } from '../../models/applicability.js';

/**
 * The assessment context: the object PlanDefinition `action.condition` FHIRPath expressions are evaluated
 * against, available as the root and as the environment variable `%assessment`:
 *
 *   %assessment.band = 'high'
 *   %assessment.probability >= 0.6
 *   %assessment.outputs.score >= 3                                    (CURB-65 score)
 *   %assessment.features.bmi.value >= 30 and %assessment.features.bmi.unit = 'kg/m2'
 *   %assessment.features.`sex=male`.value = 1                         (one-hot columns need backticks)
 *   %assessment.findings.where(code = '233604007' and assertion = 'affirmed').exists()
 *
 * `features` holds OBSERVED values only, in the mapping's measured unit (before transforms: ln_tg holds
 * triglycerides in mg/dL), for every mapping feature including non-input ones (sbp, dbp). An imputed
 * input is absent, so no action ever triggers on a guessed value. Write conditions with the unit
 * (`... and unit = 'mg/dL'`) so a mapping unit change makes them false instead of wrong.
 */
export interface AssessmentContext {
  modelId: string;
  modelVersion: string;
  /** As-of instant (ISO 8601). */
  asOf: string;
  band: QualitativeRisk;
  probability: number;
  /** The model's other outputs by name (CURB-65: score). */
  outputs: Record<string, number>;
  /** Observed values by feature (or one-hot column) id, in the measured unit. */
  features: Record<string, { value: number; unit?: string }>;
  /** Input columns that were imputed. */
  imputed: string[];
  /** Report findings (NLP) for the patient within the mapping's lookback. */
  findings: { system: string; code: string; display?: string; assertion: string }[];
  /** The applicability of the score, when assessed. */
  applicability?: { decision: Applicability['decision']; outOfRange: string[]; outOfDistribution: boolean };
}

export interface AssessmentContextInput {
  prediction: { modelId: string; modelVersion: string; probability: number; band: QualitativeRisk; outputs?: Record<string, number> };
  asOf: Date;
  /** FeatureRow fields: input columns, imputed flags, measured values by feature/column id. */
  row: { columns: readonly string[]; imputed: readonly boolean[]; raw: Readonly<Record<string, number | null>> };
  /** Measured unit by feature id (the mapping's `unit`). */
  units: Readonly<Record<string, string | undefined>>;
  findings?: AssessmentContext['findings'];
  applicability?: Applicability;
}

/** Builds the context from a prediction and its feature row (pure). */
export function buildAssessmentContext(input: AssessmentContextInput): AssessmentContext {
  const { prediction, row } = input;
  const imputed = row.columns.filter((_, j) => row.imputed[j]);
  const features: AssessmentContext['features'] = {};
  for (const [id, value] of Object.entries(row.raw)) {
    if (typeof value !== 'number' || !Number.isFinite(value) || imputed.includes(id)) continue;
    const unit = input.units[id];
    features[id] = unit ? { value, unit } : { value };
  }
  return {
    modelId: prediction.modelId,
    modelVersion: prediction.modelVersion,
    asOf: input.asOf.toISOString(),
    band: prediction.band,
    probability: prediction.probability,
    outputs: { ...(prediction.outputs ?? {}) },
    features,
    imputed,
    findings: input.findings ?? [],
    ...(input.applicability
      ? {
          applicability: {
            decision: input.applicability.decision,
            outOfRange: input.applicability.outOfRange.map((o) => o.featureId),
            outOfDistribution: input.applicability.ood.assessed && input.applicability.ood.flagged,
          },
        }
      : {}),
  };
}
