/**
 * Stable number formatting for committed artefacts: round to a fixed number of significant digits
 * (or decimals) so the last bits of floating-point arithmetic never reach a committed file.
 */
export function sig(x: number, digits = 7): number {
  if (!Number.isFinite(x)) throw new Error(`cannot format non-finite number ${x}`);
  if (x === 0) return 0;
  return Number(x.toPrecision(digits));
}

export function dec(x: number, decimals = 4): number {
  if (!Number.isFinite(x)) throw new Error(`cannot format non-finite number ${x}`);
  const r = Number(x.toFixed(decimals));
  return Object.is(r, -0) ? 0 : r;
}

/** JSON with 2-space indent and a trailing newline; key order is the insertion order of the object. */
export function stableJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
