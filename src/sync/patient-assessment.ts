import type { Exclusion, FeatureRow, PatientRecord } from '../core/types.js';
import { mapPatient, type MapContext } from '../features/index.js';
import { evaluateIntendedUse, intendedUseConditions, type IntendedUseResult } from '../models/index.js';
import type { SyncModel } from './models.js';

/**
 * One patient for one model, before any score: the model's intended-use gate (never a deceased patient
 * or an inactive record; the card's age, sex and condition criteria, src/models/intended-use.ts) and its
 * mapping (src/features), with the Conditions the gate read counted like every other resource
 * (fetched = used + excluded). Pure. `sync`'s batch step and `fhir-ml features` both start here.
 *
 * The gate decides first: a refused patient is skipped with the gate's reason, whatever the mapping
 * says. The row is still mapped, so the resources pulled for the patient are accounted for (as for any
 * skipped patient, `used` then says what a score would have rested on).
 */

export interface PatientAssessment {
  /** The mapping's row, the gate's Conditions added to basis, exclusions and counts; `skipReason` the gate's first. */
  row: FeatureRow;
  intendedUse: IntendedUseResult;
  /** Why the patient is not scored, and what that rests on (the gate's detail). */
  skip?: { reason: string; detail?: string };
  /** `Condition/<id>` that met the card's required criteria: the CarePlan's `addresses`. */
  evidence: string[];
}

export function assessPatient(model: SyncModel, record: PatientRecord, asOf: Date, mapContext: MapContext): PatientAssessment {
  const card = model.runner.card;
  const input = { patient: record.patient, conditions: record.conditions ?? [], asOf };
  const intendedUse = evaluateIntendedUse(card, input, model.valueSets);
  const row = withConditions(mapPatient(model.mapping, record, asOf, mapContext), intendedUseConditions(card, input, model.valueSets));
  if (!intendedUse.eligible) {
    row.skipReason = intendedUse.reason;
    return { row, intendedUse, skip: { reason: intendedUse.reason, detail: intendedUse.detail }, evidence: [] };
  }
  const evidence = [...new Set(intendedUse.evidence.flatMap((e) => e.references))].sort();
  return { row, intendedUse, evidence, ...(row.skipReason ? { skip: { reason: row.skipReason } } : {}) };
}

/**
 * The row with the gate's Conditions: used ones join the basis (a RiskAssessment rests on the diagnosis
 * that admitted the patient), the others are excluded with their reason. The identity fetched = used +
 * excluded keeps holding: a resource is never both, and one the mapping excluded but the gate used counts
 * once, as used.
 */
function withConditions(row: FeatureRow, conditions: { used: string[]; excluded: Exclusion[] }): FeatureRow {
  if (conditions.used.length === 0 && conditions.excluded.length === 0) return row;
  const basis = new Set([...row.basis, ...conditions.used]);
  const gate = conditions.excluded.map((e) => ({ ...e, detail: `intended use: ${e.detail ?? e.reason}` }));
  const seen = new Set<string>();
  const exclusions = [...row.exclusions, ...gate]
    .filter((e) => !basis.has(e.reference))
    .filter((e) => {
      const key = `${e.reference}\u0000${e.featureId ?? ''}\u0000${e.reason}\u0000${e.detail ?? ''}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    })
    .sort((a, b) => cmp(a.reference, b.reference) || cmp(a.featureId ?? '', b.featureId ?? '') || cmp(a.reason, b.reason));
  const excluded = new Set(exclusions.map((e) => e.reference));
  return {
    ...row,
    basis: [...basis].sort(),
    exclusions,
    counts: { fetched: basis.size + excluded.size, used: basis.size, excluded: excluded.size },
  };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
