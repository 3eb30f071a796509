import { createRequire } from 'node:module';

/**
 * Thin typed wrapper over @lhncbc/ucum-lhc (CommonJS, no type declarations). Conversions are pure
 * functions of (value, from, to, molar mass); results are memoised per unit pair where linear.
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

/** Converts `value` from `from` to `to` (mass <-> substance with `molarMass` g/mol). */
export function convertUnit(value: number, from: string, to: string, molarMass?: number): Conversion {
  if (from === to) return { ok: true, value };
  if (!isValidUcum(from)) return { ok: false, message: 'not a valid UCUM unit' };
  const res = utils.convertUnitTo(from, value, to, molarMass ? { molecularWeight: molarMass } : {});
  if (res.status === 'succeeded' && typeof res.toVal === 'number' && Number.isFinite(res.toVal)) return { ok: true, value: res.toVal };
  return { ok: false, message: res.msg.join(' ') || 'not convertible' };
}

/** True when values in `from` can be converted to `to` (with `molarMass` if given). */
export function isConvertible(from: string, to: string, molarMass?: number): boolean {
  return convertUnit(1, from, to, molarMass).ok;
}
