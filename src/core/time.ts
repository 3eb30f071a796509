import { AdapterError } from './errors.js';

/**
 * The one calendar helper: FHIR date/dateTime parsing (partial dates included), ISO 8601 and UCUM
 * durations, duration arithmetic and the as-of parser. Everything is UTC and pure.
 *
 * Month-end rule (one rule for every calendar step, lookback starts and horizon ends alike): adding or
 * subtracting months or years keeps the day of the month, clamped to the length of the target month.
 * 31 Jan + 1 month = 28 Feb (29 in a leap year); 29 Feb 2024 - 1 year = 28 Feb 2023. This is FHIRPath's
 * rule for calendar durations; the time of day is kept. Weeks, days, hours, minutes and seconds are
 * fixed lengths (a UTC day is 24 h).
 */

export interface Duration {
  years: number;
  months: number;
  weeks: number;
  days: number;
  hours: number;
  minutes: number;
  seconds: number;
}

const ZERO: Duration = { years: 0, months: 0, weeks: 0, days: 0, hours: 0, minutes: 0, seconds: 0 };

/** ISO 8601 duration (P2Y, P30D, PT48H ...), integer parts only. */
export const ISO_DURATION = /^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/;

export function parseDuration(text: string): Duration {
  const m = ISO_DURATION.exec(text);
  if (!m) throw new Error(`not an ISO 8601 duration: ${text}`);
  const n = (i: number) => (m[i] ? Number(m[i]) : 0);
  return { years: n(1), months: n(2), weeks: n(3), days: n(4), hours: n(5), minutes: n(6), seconds: n(7) };
}

function fixedMs(d: Duration): number {
  return ((d.weeks * 7 + d.days) * 86_400 + d.hours * 3600 + d.minutes * 60 + d.seconds) * 1000;
}

/**
 * `date` moved by `duration` forwards (`sign` 1) or backwards (-1): calendar months and years first
 * (the month-end rule above), then the fixed-length parts. Calendar parts must be whole numbers.
 */
export function addDuration(date: Date, duration: Partial<Duration>, sign: 1 | -1 = 1): Date {
  const d = { ...ZERO, ...duration };
  const totalMonths = d.years * 12 + d.months;
  if (!Number.isInteger(d.years) || !Number.isInteger(d.months)) throw new RangeError('calendar durations (months, years) must be whole numbers');
  const t = new Date(date.getTime());
  if (totalMonths) {
    const mo = t.getUTCMonth() + sign * totalMonths;
    const targetY = t.getUTCFullYear() + Math.floor(mo / 12);
    const targetM = ((mo % 12) + 12) % 12;
    const lastDay = new Date(Date.UTC(targetY, targetM + 1, 0)).getUTCDate();
    t.setUTCFullYear(targetY, targetM, Math.min(t.getUTCDate(), lastDay));
  }
  return new Date(t.getTime() + sign * fixedMs(d));
}

/** The last lookback start computed per duration (a run asks for the same few, per patient and feature). */
const lastLookback = new Map<string, { asOf: number; start: number }>();

/** Start of a lookback window of `duration` (ISO 8601) ending at `asOf`. */
export function lookbackStart(duration: string, asOf: Date): Date {
  const at = asOf.getTime();
  const hit = lastLookback.get(duration);
  if (hit && Object.is(hit.asOf, at)) return new Date(hit.start);
  const start = addDuration(asOf, parseDuration(duration), -1);
  // Durations come from mappings (a handful); the bound only guards against unexpected callers.
  if (lastLookback.size >= 256) lastLookback.clear();
  lastLookback.set(duration, { asOf: at, start: start.getTime() });
  return start;
}

/** UCUM time units a model horizon may use, as durations of one unit. */
const UCUM_TIME: Record<string, keyof Duration> = { s: 'seconds', min: 'minutes', h: 'hours', d: 'days', wk: 'weeks', mo: 'months', a: 'years' };
export const UCUM_TIME_UNITS = Object.keys(UCUM_TIME);

/** A UCUM time quantity (`{ value: 30, unit: 'd' }`) as a duration. */
export function ucumDuration(q: { value: number; unit: string }): Partial<Duration> {
  const part = UCUM_TIME[q.unit];
  if (!part) throw new RangeError(`unsupported time unit "${q.unit}" (use ${UCUM_TIME_UNITS.join(', ')})`);
  return { [part]: q.value };
}

/** End of a prediction horizon (a UCUM time quantity) that starts at `asOf`. */
export function horizonEnd(asOf: Date, horizon: { value: number; unit: string }): Date {
  return addDuration(asOf, ucumDuration(horizon), 1);
}

const DATE_TIME = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/;

/**
 * Parses a FHIR date, dateTime or instant into the interval it denotes: `[start, end]` (both
 * inclusive, ms precision). A partial date (`2012`, `2012-09`, `2012-09-17`) covers the whole
 * year/month/day in UTC; a dateTime without a zone is read as UTC. Returns undefined when invalid.
 */
export function parseFhirDateTime(text: string | undefined): { start: number; end: number } | undefined {
  // The text parsed last is remembered: a resource's effective and issued are often the same instant.
  if (typeof text === 'string' && text === lastParsed.text) return lastParsed.span && { ...lastParsed.span };
  const span = parseDateTimeParts(text)?.span;
  if (typeof text === 'string') lastParsed = { text, span: span && { ...span } };
  return span;
}
let lastParsed: { text?: string; span?: { start: number; end: number } } = {};

function parseDateTimeParts(text: string | undefined): { span: { start: number; end: number }; precision: 'year' | 'month' | 'day' | 'time'; zoned: boolean } | undefined {
  if (typeof text !== 'string') return undefined;
  const m = DATE_TIME.exec(text.trim());
  if (!m) return undefined;
  const y = Number(m[1]);
  const mo = m[2] ? Number(m[2]) - 1 : undefined;
  const d = m[3] ? Number(m[3]) : undefined;
  if (mo !== undefined && (mo < 0 || mo > 11)) return undefined;
  // Days in the month as Date.UTC counts them (years 0-99 are 1900-1999 there, as in the spans below).
  if (d !== undefined && (d < 1 || d > (Date.UTC(y, (mo ?? 0) + 1, 1) - Date.UTC(y, mo ?? 0, 1)) / 86_400_000)) return undefined;
  if (mo === undefined) return { span: { start: Date.UTC(y, 0, 1), end: Date.UTC(y + 1, 0, 1) - 1 }, precision: 'year', zoned: false };
  if (d === undefined) return { span: { start: Date.UTC(y, mo, 1), end: Date.UTC(y, mo + 1, 1) - 1 }, precision: 'month', zoned: false };
  if (m[4] === undefined) return { span: { start: Date.UTC(y, mo, d), end: Date.UTC(y, mo, d + 1) - 1 }, precision: 'day', zoned: false };
  const hh = Number(m[4]);
  const mi = Number(m[5]);
  const ss = m[6] ? Number(m[6]) : 0;
  if (hh > 23 || mi > 59 || ss > 60) return undefined;
  const frac = m[7] ? Number(`0.${m[7]}`) * 1000 : 0;
  let offsetMin = 0;
  const zone = m[8];
  if (zone && zone !== 'Z') offsetMin = (zone[0] === '-' ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6)));
  const base = Date.UTC(y, mo, d, hh, mi, ss) - offsetMin * 60_000;
  if (m[6] === undefined) return { span: { start: base, end: base + 59_999 }, precision: 'time', zoned: zone !== undefined };
  const start = base + Math.floor(frac);
  return { span: { start, end: start }, precision: 'time', zoned: zone !== undefined };
}

/** The easternmost time zone (UTC+14): the date there is the latest date that is "today" anywhere. */
const EARLIEST_ZONE_MS = 14 * 3_600_000;

/**
 * The as-of instant of a run, from `--as-of` (or an API field):
 * - absent: now;
 * - a date (`2025-06-30`): the end of that day (UTC), or now when the day is today, so a nightly job
 *   can pass its own date; a date that is today in any time zone (up to UTC+14) counts as today;
 * - a dateTime with a time zone (`2025-06-30T23:59:59Z`, `...+02:00`): that instant.
 * Only instants after now are refused (a score is never dated after the data it could see).
 * Throws AdapterError('input-invalid') naming the value and what is wrong.
 */
export function parseAsOf(value: string | undefined, now: Date = new Date(), what = '--as-of'): Date {
  if (value === undefined) return now;
  const parts = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?$/.test(value) ? parseDateTimeParts(value) : undefined;
  if (!parts) {
    throw new AdapterError('input-invalid', `${what} "${value}" is not a date (YYYY-MM-DD) or dateTime with a time zone (2025-06-30T23:59:59Z)`);
  }
  const nowMs = now.getTime();
  if (parts.precision === 'day') {
    if (parts.span.start > nowMs + EARLIEST_ZONE_MS) {
      throw new AdapterError('input-invalid', `${what} ${value} is in the future (now is ${now.toISOString()}); only instants up to now can be scored`);
    }
    return new Date(Math.min(parts.span.end, nowMs));
  }
  if (parts.span.start > nowMs) {
    throw new AdapterError('input-invalid', `${what} ${value} is in the future (now is ${now.toISOString()}); only instants up to now can be scored`);
  }
  return new Date(parts.span.start);
}

/** Completed years at as-of (UTC calendar). A partial birthDate counts as its last day, so age is never overstated. */
export function completedYears(birthDate: string | undefined, asOf: Date): number | null {
  if (typeof birthDate !== 'string' || birthDate.includes('T')) return null; // FHIR date only
  const span = parseFhirDateTime(birthDate);
  if (!span) return null;
  const b = new Date(span.end);
  if (b.getTime() > asOf.getTime()) return null;
  let years = asOf.getUTCFullYear() - b.getUTCFullYear();
  const beforeBirthday =
    asOf.getUTCMonth() < b.getUTCMonth() || (asOf.getUTCMonth() === b.getUTCMonth() && asOf.getUTCDate() < b.getUTCDate());
  if (beforeBirthday) years--;
  return years;
}
