import { z } from 'zod';

/**
 * Codes a Condition may carry, and how a coding matches one: the one home of this rule, shared by the
 * model card's intended-use criteria (src/models) and the `condition` mapping source (src/features).
 * Pure.
 *
 * `descendants: true` also matches the code's children in a code system whose hierarchy is lexical
 * (ICD-10, ICD-10-CM: E11 matches E11.9 and E11.65); refused for other systems, whose hierarchies need a
 * terminology server (list their codes instead).
 */
export const LEXICAL_HIERARCHY_SYSTEMS = ['http://hl7.org/fhir/sid/icd-10', 'http://hl7.org/fhir/sid/icd-10-cm'] as const;

export const conditionCodeSchema = z
  .strictObject({
    system: z.string().min(1),
    code: z.string().min(1),
    display: z.string().optional(),
    descendants: z.boolean().optional(),
  })
  .refine((c) => !c.descendants || (LEXICAL_HIERARCHY_SYSTEMS as readonly string[]).includes(c.system), {
    message: `descendants is only supported for ${LEXICAL_HIERARCHY_SYSTEMS.join(', ')} (other hierarchies need a terminology server: list the codes)`,
  });

export type ConditionCode = z.infer<typeof conditionCodeSchema>;

const normalize = (code: string) => code.replace(/\./g, '').toUpperCase();

/** Whether a coding matches a code (exactly, or as a lexical descendant when `descendants` is set). */
export function codeMatches(coding: { system?: string; code?: string }, code: ConditionCode): boolean {
  if (!coding.system || !coding.code || coding.system !== code.system) return false;
  if (coding.code === code.code) return true;
  return code.descendants === true && normalize(coding.code).startsWith(normalize(code.code));
}

/** Whether any coding of a concept matches any of the codes. */
export function conceptMatches(concept: { coding?: { system?: string; code?: string }[] } | undefined, codes: readonly ConditionCode[]): boolean {
  return (concept?.coding ?? []).some((coding) => codes.some((code) => codeMatches(coding, code)));
}

/**
 * The codings to put in a `code` search for these codes, or undefined when a search by code cannot
 * express them (a `descendants` code: FHIR token search has no portable prefix match, so every
 * Condition of the patients is fetched and matched here). The pull planner removes repeats.
 */
export function searchableCodes(codes: readonly ConditionCode[]): { system: string; code: string }[] | undefined {
  if (codes.some((c) => c.descendants)) return undefined;
  return codes.map((c) => ({ system: c.system, code: c.code }));
}
