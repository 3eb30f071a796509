import { AdapterError } from './errors.js';
import { addDuration, horizonEnd, lookbackStart, parseAsOf, parseFhirDateTime } from './time.js';

const iso = (d: Date) => d.toISOString();

describe('the month-end rule (one rule for lookback starts and horizon ends)', () => {
  it('clamps the day to the target month: 31 Jan + 1 month = end of February', () => {
    expect(iso(addDuration(new Date('2023-01-31T10:00:00Z'), { months: 1 }))).toBe('2023-02-28T10:00:00.000Z');
    expect(iso(addDuration(new Date('2024-01-31T10:00:00Z'), { months: 1 }))).toBe('2024-02-29T10:00:00.000Z');
    expect(iso(addDuration(new Date('2024-02-29T00:00:00Z'), { years: 1 }))).toBe('2025-02-28T00:00:00.000Z');
  });

  it('is the same rule for a horizon end and a lookback start', () => {
    // horizon: 1 month after 31 January
    expect(iso(horizonEnd(new Date('2024-01-31T12:00:00Z'), { value: 1, unit: 'mo' }))).toBe('2024-02-29T12:00:00.000Z');
    // lookback: 1 month before 31 March
    expect(iso(lookbackStart('P1M', new Date('2024-03-31T12:00:00Z')))).toBe('2024-02-29T12:00:00.000Z');
    expect(iso(lookbackStart('P1Y', new Date('2024-02-29T00:00:00Z')))).toBe('2023-02-28T00:00:00.000Z');
    expect(iso(horizonEnd(new Date('2024-02-29T00:00:00Z'), { value: 1, unit: 'a' }))).toBe('2025-02-28T00:00:00.000Z');
  });

  it('adds fixed-length parts after the calendar ones; refuses fractional months', () => {
    expect(iso(lookbackStart('PT48H', new Date('2024-03-10T12:00:00Z')))).toBe('2024-03-08T12:00:00.000Z');
    expect(iso(lookbackStart('P1M2D', new Date('2024-03-31T00:00:00Z')))).toBe('2024-02-27T00:00:00.000Z');
    expect(iso(horizonEnd(new Date('2024-03-01T00:00:00Z'), { value: 30, unit: 'd' }))).toBe('2024-03-31T00:00:00.000Z');
    expect(() => horizonEnd(new Date(), { value: 1.5, unit: 'a' })).toThrow(/whole numbers/);
    expect(() => horizonEnd(new Date(), { value: 1, unit: 'fortnight' })).toThrow(/unsupported time unit/);
  });

  it('gives the same lookback start when asked again, for alternating as-ofs, and a Date the caller may change', () => {
    const asOfs = ['2024-03-31T12:00:00Z', '2023-01-31T00:00:00Z', '2024-03-31T12:00:00Z'].map((t) => new Date(t));
    for (const asOf of asOfs) {
      for (const duration of ['P1M', 'P2Y', 'PT48H']) {
        const expected = addDuration(asOf, { ...{ P1M: { months: 1 }, P2Y: { years: 2 }, PT48H: { hours: 48 } }[duration] }, -1).toISOString();
        const first = lookbackStart(duration, asOf);
        expect(first.toISOString()).toBe(expected);
        first.setTime(0);
        expect(lookbackStart(duration, asOf).toISOString()).toBe(expected);
      }
    }
    expect(() => lookbackStart('P1X', asOfs[0])).toThrow(/not an ISO 8601 duration/);
    expect(Number.isNaN(lookbackStart('P1Y', new Date(NaN)).getTime())).toBe(true);
  });
});

describe('parseFhirDateTime', () => {
  it('gives the interval a partial date denotes', () => {
    expect(parseFhirDateTime('2024')).toEqual({ start: Date.UTC(2024, 0, 1), end: Date.UTC(2025, 0, 1) - 1 });
    expect(parseFhirDateTime('2024-02-30')).toBeUndefined();
  });
});

describe('parseAsOf', () => {
  const now = new Date('2025-07-01T13:45:12.345Z');

  it('takes a past date as the end of that day (UTC) and a dateTime as given', () => {
    expect(iso(parseAsOf('2025-06-30', now))).toBe('2025-06-30T23:59:59.999Z');
    expect(iso(parseAsOf('2025-06-30T08:00:00+02:00', now))).toBe('2025-06-30T06:00:00.000Z');
    expect(parseAsOf(undefined, now)).toBe(now);
    for (const bad of ['2025-02-31', '2025-13-01', '2025-02-30T10:00:00Z', '30/06/2025', '2025-06-30T10:00', '2025', 'yesterday']) {
      expect(() => parseAsOf(bad, now)).toThrow(/is not a date/);
    }
  });

  it("takes today's date as now, so a nightly job can pass its own date", () => {
    expect(iso(parseAsOf('2025-07-01', now))).toBe(iso(now));
    // already the 2nd east of UTC (Sydney at 23:45 UTC is the next morning): today there, so now
    expect(iso(parseAsOf('2025-07-02', new Date('2025-07-01T23:45:00Z')))).toBe('2025-07-01T23:45:00.000Z');
  });

  it('refuses only instants after now', () => {
    expect(iso(parseAsOf(iso(now), now))).toBe(iso(now));
    const later = () => parseAsOf('2025-07-01T13:45:13Z', now);
    expect(later).toThrow(AdapterError);
    expect(later).toThrow(/--as-of 2025-07-01T13:45:13Z is in the future/);
    expect(() => parseAsOf('2025-07-03', now)).toThrow(/is in the future/);
  });
});

describe('parseFhirDateTime asked again', () => {
  it('gives the same span for the same text, as a new object each time, around invalid texts', () => {
    const expected: Record<string, { start: number; end: number } | undefined> = {
      '2012-12-01T10:00:00Z': { start: Date.UTC(2012, 11, 1, 10), end: Date.UTC(2012, 11, 1, 10) },
      '2024-02-29': { start: Date.UTC(2024, 1, 29), end: Date.UTC(2024, 2, 1) - 1 },
      '2023-02-29': undefined,
      'not a date': undefined,
    };
    for (const t of ['2012-12-01T10:00:00Z', '2012-12-01T10:00:00Z', '2024-02-29', 'not a date', 'not a date', '2024-02-29', '2023-02-29', '2023-02-29']) {
      const span = parseFhirDateTime(t);
      expect(span).toEqual(expected[t]);
      if (span) span.start = 0;
    }
    expect(parseFhirDateTime('2024-02-29')).toEqual(expected['2024-02-29']);
    // Date.UTC reads years 0-99 as 1900-1999: 0004 counts as 1904, a leap year; 0100 is year 100, not one.
    expect(parseFhirDateTime('0004-02-29')).toBeDefined();
    expect(parseFhirDateTime('0100-02-29')).toBeUndefined();
  });
});
