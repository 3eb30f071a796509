import { createRequire } from 'node:module';

/**
 * Thin typed wrapper over @lhncbc/ucum-lhc (CommonJS, no type declarations). Conversions are pure
 * functions of (value, from, to, molar mass). Unit validity is memoised per unit, and a conversion that
 * fails before any arithmetic (incommensurable units, a missing molar mass) per unit pair and molar mass:
 * it fails the same way for every value, and ucum-lhc reports it by throwing, which is costly per value.
 */
interface UcumConvertResult {
  status: 'succeeded' | 'failed' | 'error';
  toVal: number | null;
  msg: string[];
}
interface UcumUtils {
  validateUnitString(unit: string, suggest?: boolean): { status: 'valid' | 'invalid' | 'error'; ucumCode: string | null; msg: string[] };
  convertUnitTo(from: string, value: number, to: string, options?: { molecularWeight?: number }): UcumConvertResult;
}

const require = createRequire(import.meta.url);
const ucumPkg = require('@lhncbc/ucum-lhc') as { UcumLhcUtils: { getInstance(): UcumUtils } };
const utils = ucumPkg.UcumLhcUtils.getInstance();

const validity = new Map<string, boolean>();

/** True when `unit` is a valid case-sensitive UCUM expression (as ucum-lhc parses it). */
export function isValidUcum(unit: string): boolean {
  let ok = validity.get(unit);
  if (ok === undefined) {
    // ucum-lhc silently accepts surrounding whitespace; a mapping unit must be exact.
    ok = unit.trim() === unit && unit.length > 0 && utils.validateUnitString(unit).status === 'valid';
    validity.set(unit, ok);
  }
  return ok;
}

export type Conversion = { ok: true; value: number } | { ok: false; message: string };

/** Messages of conversions that failed without computing a value, by from, to and molar mass. */
const failed = new Map<string, string>();
const MAX_FAILED = 1024;

/** Converts `value` from `from` to `to` (mass <-> substance with `molarMass` g/mol). */
export function convertUnit(value: number, from: string, to: string, molarMass?: number): Conversion {
  if (from === to) return { ok: true, value };
  if (!isValidUcum(from)) return { ok: false, message: 'not a valid UCUM unit' };
  // Only for finite values: ucum-lhc refuses other values before it looks at the units.
  const key = Number.isFinite(value) ? `${from}\u0000${to}\u0000${molarMass || ''}` : undefined;
  const known = key === undefined ? undefined : failed.get(key);
  if (known !== undefined) return { ok: false, message: known };
  const res = utils.convertUnitTo(from, value, to, molarMass ? { molecularWeight: molarMass } : {});
  if (res.status === 'succeeded' && typeof res.toVal === 'number' && Number.isFinite(res.toVal)) return { ok: true, value: res.toVal };
  const message = res.msg.join(' ') || 'not convertible';
  // A value that was computed but is not finite may depend on the value (special units): not memoised.
  if (key !== undefined && res.toVal === null && failed.size < MAX_FAILED) failed.set(key, message);
  return { ok: false, message };
}

/** True when values in `from` can be converted to `to` (with `molarMass` if given). */
export function isConvertible(from: string, to: string, molarMass?: number): boolean {
  return convertUnit(1, from, to, molarMass).ok;
}
