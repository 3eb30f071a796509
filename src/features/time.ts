/**
 * Time helpers: FHIR date/dateTime/instant parsing (partial dates included) and ISO 8601 durations.
 * Everything is UTC and pure.
 */

const DURATION = /^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/;

export interface Duration {
  years: number;
  months: number;
  weeks: number;
  days: number;
  hours: number;
  minutes: number;
  seconds: number;
}

export function parseDuration(text: string): Duration {
  const m = DURATION.exec(text);
  if (!m) throw new Error(`not an ISO 8601 duration: ${text}`);
  const n = (i: number) => (m[i] ? Number(m[i]) : 0);
  return { years: n(1), months: n(2), weeks: n(3), days: n(4), hours: n(5), minutes: n(6), seconds: n(7) };
}

/** Approximate length in ms (365.25-day years, 30.4375-day months), only for comparing durations. */
export function approxDurationMs(text: string): number {
  const d = parseDuration(text);
  const day = 86_400_000;
  return (
    d.years * 365.25 * day + d.months * 30.4375 * day + d.weeks * 7 * day + d.days * day + d.hours * 3_600_000 + d.minutes * 60_000 + d.seconds * 1000
  );
}

/**
 * Start of a lookback window of `duration` ending at `asOf`: calendar arithmetic in UTC (P1Y before
 * 2024-02-29 is 2023-02-28: the day of month is clamped to the target month's length).
 */
export function windowStart(duration: string, asOf: Date): Date {
  const d = parseDuration(duration);
  const t = new Date(asOf.getTime());
  const totalMonths = d.years * 12 + d.months;
  if (totalMonths) {
    const y = t.getUTCFullYear();
    const mo = t.getUTCMonth() - totalMonths;
    const targetY = y + Math.floor(mo / 12);
    const targetM = ((mo % 12) + 12) % 12;
    const lastDay = new Date(Date.UTC(targetY, targetM + 1, 0)).getUTCDate();
    t.setUTCFullYear(targetY, targetM, Math.min(t.getUTCDate(), lastDay));
  }
  const ms = ((d.weeks * 7 + d.days) * 86_400 + d.hours * 3600 + d.minutes * 60 + d.seconds) * 1000;
  return new Date(t.getTime() - ms);
}

const DATE_TIME =
  /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/;

/**
 * Parses a FHIR date, dateTime or instant into the interval it denotes: `[start, end]` (both
 * inclusive, ms precision). A partial date (`2012`, `2012-09`, `2012-09-17`) covers the whole
 * year/month/day in UTC; a dateTime without a zone is read as UTC. Returns undefined when invalid.
 */
export function parseFhirDateTime(text: string | undefined): { start: number; end: number } | undefined {
  if (typeof text !== 'string') return undefined;
  const m = DATE_TIME.exec(text.trim());
  if (!m) return undefined;
  const y = Number(m[1]);
  const mo = m[2] ? Number(m[2]) - 1 : undefined;
  const d = m[3] ? Number(m[3]) : undefined;
  if (mo !== undefined && (mo < 0 || mo > 11)) return undefined;
  if (d !== undefined && (d < 1 || d > new Date(Date.UTC(y, (mo ?? 0) + 1, 0)).getUTCDate())) return undefined;
  if (mo === undefined) return { start: Date.UTC(y, 0, 1), end: Date.UTC(y + 1, 0, 1) - 1 };
  if (d === undefined) return { start: Date.UTC(y, mo, 1), end: Date.UTC(y, mo + 1, 1) - 1 };
  if (m[4] === undefined) return { start: Date.UTC(y, mo, d), end: Date.UTC(y, mo, d + 1) - 1 };
  const hh = Number(m[4]);
  const mi = Number(m[5]);
  const ss = m[6] ? Number(m[6]) : 0;
  if (hh > 23 || mi > 59 || ss > 60) return undefined;
  const frac = m[7] ? Number(`0.${m[7]}`) * 1000 : 0;
  let offsetMin = 0;
  const zone = m[8];
  if (zone && zone !== 'Z') offsetMin = (zone[0] === '-' ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6)));
  const base = Date.UTC(y, mo, d, hh, mi, ss) - offsetMin * 60_000;
  if (m[6] === undefined) return { start: base, end: base + 59_999 };
  const start = base + Math.floor(frac);
  return { start, end: start };
}
