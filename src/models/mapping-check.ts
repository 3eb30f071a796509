import { AdapterError } from '../core/errors.js';
import { inputColumns, valueColumns, type Mapping } from '../features/index.js';
import type { ModelCard } from './model-card.js';

type CardLike = Pick<ModelCard, 'id' | 'featureIds'>;

/** Throws `model-mismatch` naming the differing columns when `columns` are not exactly the model's featureIds. */
export function checkModelAgainstMapping(model: { card: CardLike } | CardLike, columns: string[], mappingId?: string): void {
  const card = 'card' in model ? model.card : model;
  const expected = card.featureIds;
  if (expected.length === columns.length && expected.every((c, i) => c === columns[i])) return;
  const missing = expected.filter((c) => !columns.includes(c));
  const extra = columns.filter((c) => !expected.includes(c));
  const parts: string[] = [];
  if (missing.length) parts.push(`missing from mapping: ${missing.join(', ')}`);
  if (extra.length) parts.push(`not expected by model: ${extra.join(', ')}`);
  if (!missing.length && !extra.length) {
    const i = expected.findIndex((c, k) => c !== columns[k]);
    parts.push(`order differs at position ${i}: model expects ${expected[i]}, mapping has ${columns[i]}`);
  }
  const src = mappingId ? `mapping ${mappingId}` : 'mapping';
  throw new AdapterError('model-mismatch', `model ${card.id} and ${src} disagree on input columns: ${parts.join('; ')}`, {
    details: { modelId: card.id, mappingId, missing, extra },
  });
}

/**
 * Columns and preprocessing together: the mapping's columns must equal the card's featureIds, and
 * each standardised column of the card must be produced by a feature whose last transform is a
 * `standardize` with the card's mean/std (relative tolerance `rtol`); unstandardised columns must
 * have no standardize transform. Returns nothing; throws `model-mismatch` listing every problem.
 */
export function checkMappingAgainstCard(card: ModelCard, mapping: Mapping, rtol = 1e-6): void {
  checkModelAgainstMapping(card, inputColumns(mapping), mapping.id);
  const problems: string[] = [];
  const close = (a: number, b: number) => Math.abs(a - b) <= rtol * Math.max(Math.abs(a), Math.abs(b), 1e-12);
  for (const f of mapping.features) {
    if (f.input === false) continue;
    const cols = valueColumns(f);
    const std = f.transforms.filter((t): t is Extract<typeof t, { standardize: unknown }> => typeof t === 'object' && 'standardize' in t);
    for (const col of cols) {
      const want = card.preprocessing.columns[col];
      if (want === null || want === undefined) {
        if (std.length) problems.push(`${col}: mapping standardizes it, card does not`);
        continue;
      }
      const last = f.transforms.at(-1);
      if (std.length !== 1 || !last || typeof last !== 'object' || !('standardize' in last)) {
        problems.push(`${col}: card standardizes (mean ${want.mean}, std ${want.std}); mapping needs exactly one standardize transform, last`);
        continue;
      }
      const got = last.standardize;
      if (!close(got.mean, want.mean) || !close(got.std, want.std))
        problems.push(`${col}: mapping standardize mean ${got.mean} std ${got.std}, card mean ${want.mean} std ${want.std}`);
    }
  }
  if (problems.length)
    throw new AdapterError('model-mismatch', `model ${card.id} and mapping ${mapping.id} disagree on preprocessing: ${problems.join('; ')}`, {
      details: { modelId: card.id, mappingId: mapping.id },
    });
}
