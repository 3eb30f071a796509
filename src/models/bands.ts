import { AdapterError } from '../core/errors.js';
import type { QualitativeRisk } from '../core/types.js';
import type { ModelCard } from './model-card.js';

/** The card's risk band for probability p: the last band whose `min` is <= p. */
export function bandFor(card: Pick<ModelCard, 'id' | 'riskBands'>, p: number): QualitativeRisk {
  if (!Number.isFinite(p) || p < 0 || p > 1)
    throw new AdapterError('inference-failed', `model ${card.id}: probability ${p} is outside [0, 1]`);
  let band = card.riskBands[0].code;
  for (const b of card.riskBands) if (p >= b.min) band = b.code;
  return band;
}
