import { AdapterError } from '../core/errors.js';

/**
 * What a server says it refuses about a search, read from a 400, 403 or 422's OperationOutcome detail and
 * issue codes: a search over several patients (SINGLE_PATIENT_REQUIRED and similar, the embedded
 * server's among them, or `too-costly`), or an Observation search without a category. The strategies
 * name the cure from it (`explainRefusal` in strategy.ts) and the care reads adapt to it.
 */

/** Detail codes servers use to say a search must name exactly one patient (the embedded server's among them). */
const SINGLE_PATIENT_CODES = /SINGLE[_-]?PATIENT|PATIENT[_-]?REQUIRED|ONE[_-]?PATIENT|MULTIPLE[_-]?PATIENTS/i;
const CATEGORY_CODES = /CATEGORY[_-]?REQUIRED/i;

export interface SearchRefusal {
  status: number;
  /** The detail and issue codes of the refusal. */
  codes: string[];
  /** The search named more than one patient, and the server wants one. */
  multiPatient: boolean;
  /** The Observation search had no category, and the server wants one. */
  categoryRequired: boolean;
}

/** The refusal `err` is, or undefined for any other failure. */
export function searchRefusal(err: unknown): SearchRefusal | undefined {
  if (!AdapterError.is(err) || (err.status !== 400 && err.status !== 422 && err.status !== 403)) return undefined;
  const codes = [...((err.details?.detailCodes as string[] | undefined) ?? []), ...((err.details?.issueCodes as string[] | undefined) ?? [])];
  const multiPatient = codes.some((c) => SINGLE_PATIENT_CODES.test(c)) || codes.includes('too-costly');
  const categoryRequired = codes.some((c) => CATEGORY_CODES.test(c));
  return multiPatient || categoryRequired ? { status: err.status, codes, multiPatient, categoryRequired } : undefined;
}
