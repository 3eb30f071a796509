import { SKIP_REASONS } from '../models/index.js';
import type { PatientResult, SyncResult } from '../sync/index.js';
import type { ShowcasePatient } from './seed-showcase.js';

/**
 * The demo's patient-by-patient part: for each showcase patient, per model, the risk, its rationale,
 * the applicability flags and the proposed plan (what was left out and why), or why the patient was not
 * scored. Pure, so tests can pin it. A model's own scoring gate (CURB-65 needs pneumonia on chest
 * imaging) is not repeated for every patient: only scores and refusals of the safety gates are shown.
 */
export function formatShowcase(result: SyncResult, showcase: ShowcasePatient[]): string {
  const out: string[] = ['Patients one by one (risk, why, applicability, proposed plan)'];
  const safetyReasons = new Set<string>(SKIP_REASONS);
  for (const p of showcase) {
    const lines = result.results.filter((r) => r.patientId === p.id && (r.status === 'scored' || (r.status === 'skipped' && safetyReasons.has(r.reason ?? ''))));
    if (lines.length === 0) continue;
    out.push('');
    out.push(`${p.id}: ${p.story}`);
    for (const r of lines) out.push(...describe(r).map((l) => `  ${l}`));
  }
  return out.join('\n');
}

function describe(r: PatientResult): string[] {
  if (r.status !== 'scored') return [`${r.modelId}: NOT SCORED, ${r.reason}${r.reasonDetail ? ` (${r.reasonDetail})` : ''}`];
  const out = [
    `${r.modelId}: ${r.band} risk, probability ${r.probability!.toFixed(2)}${r.outputs ? ` (${Object.entries(r.outputs).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}; RiskAssessment ${r.riskAssessmentStatus ?? 'not written'}${r.write ? `, ${r.write}` : ''}`,
  ];
  if (r.rationale) out.push(`  why: ${r.rationale.text}`);
  const a = r.applicability;
  if (a) {
    const flags: string[] = [];
    if (a.imputed.length) flags.push(`imputed ${a.imputed.join(', ')}`);
    for (const o of a.outOfRange) flags.push(`${o.input} ${o.side} the training range`);
    if (a.ood.assessed && a.ood.flagged) flags.push('out of distribution');
    out.push(`  applicability: ${flags.length ? flags.join('; ') : 'all inputs observed, within the training range, not out of distribution'} -> ${a.decision}`);
  }
  for (const proposal of r.proposals ?? []) {
    out.push(`  proposed plan: ${proposal.proposed.length ? proposal.proposed.join('; ') : 'nothing to propose'}`);
    for (const o of proposal.omitted) out.push(`    left out: ${o.activity} (${o.reason}, ${o.evidence})`);
  }
  if (r.carePlans) {
    const c = r.carePlans;
    out.push(`  CarePlan: ${c.created} created, ${c.alreadyPresent} already there, ${c.revoked} revoked, ${c.untouched} clinicians' plans untouched`);
  } else if (r.riskAssessmentStatus === 'preliminary') out.push('  no CarePlan: a preliminary score is not acted on');
  return out;
}
