/**
 * Numbers and units as clinicians read them, for sentences written into resources and JSON output
 * (rationale, applicability). Machine-readable fields keep UCUM codes; only sentences use these.
 */

const UNIT_DISPLAY: Record<string, string> = {
  'mm[Hg]': 'mmHg',
  'kg/m2': 'kg/m²',
  a: 'years',
  mo: 'months',
  wk: 'weeks',
  d: 'days',
  '/min': '/min',
  '1': '',
  '%': '%',
};

/** A UCUM unit for display: mm[Hg] -> mmHg, kg/m2 -> kg/m², a -> years, 1 -> nothing. */
export function displayUnit(ucum: string | undefined): string {
  if (!ucum) return '';
  return UNIT_DISPLAY[ucum] ?? ucum;
}

/** A measured value: whole numbers as they are, others to 3 significant digits (182, 31.2, 4.23, 0.412). */
export function formatValue(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) return String(value);
  const abs = Math.abs(value);
  if (abs >= 100) return String(Math.round(value));
  return String(Number(value.toPrecision(3)));
}

/** `value unit` with a space where the unit needs one (`182 mg/dL`, `12 %`, `4.1`). */
export function withUnit(value: number, ucum: string | undefined): string {
  const unit = displayUnit(ucum);
  if (!unit) return formatValue(value);
  return unit.startsWith('/') ? `${formatValue(value)}${unit}` : `${formatValue(value)} ${unit}`;
}

/** Signed number with a fixed number of decimals: +0.21, -0.15. */
export function signed(value: number, decimals = 2): string {
  const text = Math.abs(value).toFixed(decimals);
  return `${value < 0 && Number(text) !== 0 ? '-' : '+'}${text}`;
}
