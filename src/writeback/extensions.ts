import type { Extension, Quantity, RiskAssessment } from 'fhir/r4.js';
import { AdapterError } from '../core/errors.js';
import { packagePath } from '../core/paths.js';
import type { Applicability } from '../models/applicability.js';

/**
 * Extensions this adapter writes, each defined by a StructureDefinition kept in
 * mappings/extensions/<id>.json (canonical URL under the adapter's base), and the pure functions that
 * build them.
 */

export const EXTENSION_BASE = 'https://fhir-ml-adapter.dev/fhir/StructureDefinition/';
/** On RiskAssessment.prediction: imputed and out-of-range inputs, OOD result, policy decision. */
export const APPLICABILITY_EXTENSION_URL = `${EXTENSION_BASE}prediction-applicability`;
/** On CarePlan: model, band, as-of, content hash, omitted activities, superseded-by. */
export const CAREPLAN_PROPOSAL_EXTENSION_URL = `${EXTENSION_BASE}careplan-proposal`;
/** On ActivityDefinition: how recent a completed Procedure or result must be to satisfy it. */
export const SATISFIED_WITHIN_EXTENSION_URL = `${EXTENSION_BASE}activity-satisfied-within`;
export const EXTENSION_DEFINITIONS_DIR: string = packagePath('mappings', 'extensions');

const UCUM = 'http://unitsofmeasure.org';
/** Decimals in extensions: 7 significant digits, the precision of the float32 values behind them. */
const decimal = (v: number) => Number(v.toPrecision(7));

function quantity(value: number, unit: string): Quantity {
  return unit === '1' ? { value: decimal(value), system: UCUM, code: '1' } : { value: decimal(value), unit, system: UCUM, code: unit };
}

/** The applicability extension for one prediction. */
export function applicabilityExtension(a: Applicability): Extension {
  if (a.decision === 'skip') throw new AdapterError('internal', `a score the policy skips (${a.skipReason}) must not be written`);
  const extension: Extension[] = [
    { url: 'decision', valueCode: a.decision },
    { url: 'inputCount', valueInteger: a.inputs },
    ...a.imputed.map((id): Extension => ({ url: 'imputedInput', valueString: id })),
    ...a.outOfRange.map(
      (o): Extension => ({
        url: 'outOfRangeInput',
        extension: [
          { url: 'input', valueString: o.featureId },
          { url: 'side', valueCode: o.side },
          { url: 'modelInput', valueDecimal: decimal(o.value) },
          { url: 'trainingMin', valueDecimal: decimal(o.min) },
          { url: 'trainingMax', valueDecimal: decimal(o.max) },
          ...(o.measured?.value !== undefined ? [{ url: 'measured', valueQuantity: quantity(o.measured.value, o.measured.unit) }] : []),
          ...(o.measured ? [{ url: 'measuredRange', valueRange: { low: quantity(o.measured.min, o.measured.unit), high: quantity(o.measured.max, o.measured.unit) } }] : []),
        ],
      }),
    ),
  ];
  if (a.ood.assessed)
    extension.push({
      url: 'outOfDistribution',
      extension: [
        { url: 'reconstructionError', valueDecimal: decimal(a.ood.error) },
        { url: 'threshold', valueDecimal: a.ood.threshold },
        { url: 'flagged', valueBoolean: a.ood.flagged },
      ],
    });
  extension.push({ url: 'summary', valueString: a.text });
  return { url: APPLICABILITY_EXTENSION_URL, extension };
}

/**
 * The RiskAssessment with its applicability: the extension on every prediction, the sentence as a note,
 * and status `preliminary` when the policy says so. Throws when the policy says `skip`: nothing may be
 * written for that patient. Pure: returns a new resource.
 */
export function withApplicability(riskAssessment: RiskAssessment, a: Applicability): RiskAssessment {
  const ext = applicabilityExtension(a);
  return {
    ...riskAssessment,
    status: a.decision === 'score-preliminary' ? 'preliminary' : riskAssessment.status,
    prediction: (riskAssessment.prediction ?? []).map((p) => ({
      ...p,
      extension: [...(p.extension ?? []).filter((e) => e.url !== APPLICABILITY_EXTENSION_URL), ext],
    })),
    note: [...(riskAssessment.note ?? []), { text: a.text }],
  };
}

/** The value of a sub-extension (first match), for readers of the adapter's own extensions. */
export function subExtension(ext: Extension | undefined, url: string): Extension | undefined {
  return ext?.extension?.find((e) => e.url === url);
}
