/**
 * The contract of a benchmark part (`bench/parts/<name>.ts`, registered in `bench/parts/index.ts`):
 * it measures, prints what it measured as it goes, and returns its rows of the goals table that
 * `npm run bench` prints at the end. Goals are measured here, never asserted in tests.
 */
export interface GoalRow {
  /** What was measured, e.g. `adapter/bare at 5,000 patients (median of 3)`. */
  measure: string;
  /** The goal as text (`<= 1.05`); absent for a figure reported for information. */
  goal?: string;
  /** The measured value as text, with its spread where there is one. */
  measured: string;
  /** Whether the goal is met; absent when there is no goal or nothing could be measured. */
  met?: boolean;
}

export interface BenchContext {
  /** Prints one line of the part's running report. */
  log(line: string): void;
}

export interface BenchPart {
  /** `npm run bench -- <name>` runs this part alone. */
  name: string;
  /** One line: what the part measures. */
  description: string;
  run(ctx: BenchContext): Promise<GoalRow[]>;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** `1.023 (0.981–1.066)`: the median with the min–max of the runs (just the value for one run). */
export function spread(xs: number[], digits: number, unit = ''): string {
  const f = (x: number) => `${x.toFixed(digits)}${unit}`;
  if (xs.length === 1) return f(xs[0]);
  return `${f(median(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})`;
}

/** `20,000` */
export function count(n: number): string {
  return n.toLocaleString('en-US');
}

/** The goals table: part, measure, goal, measured, met. */
export function goalsTable(rows: (GoalRow & { part: string })[]): string {
  const cells = [
    ['part', 'measure', 'goal', 'measured', ''],
    ...rows.map((r) => [r.part, r.measure, r.goal ?? '(info)', r.measured, r.met === undefined ? '' : r.met ? 'met' : 'NOT MET']),
  ];
  const widths = cells[0].map((_, i) => Math.max(...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((x, i) => x.padEnd(widths[i])).join('  ').trimEnd();
  return [line(cells[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

/** One measured figure as the service's parts report it; `goal` as text (`<= 0.05`, `>= 20000`). */
export interface MeasuredRow {
  name: string;
  value: number;
  unit: string;
  goal?: string;
}

/** Goal rows from measured figures: `met` from the goal's comparison (`<=` or `>=` a number). */
export function goalRows(rows: MeasuredRow[]): GoalRow[] {
  return rows.map((r) => {
    const m = /^\s*(<=|>=)\s*([\d.,]+)/.exec(r.goal ?? '');
    const limit = m ? Number(m[2].replace(/,/g, '')) : undefined;
    const digits = Math.abs(r.value) >= 100 ? 0 : Math.abs(r.value) >= 1 ? 2 : 4;
    return {
      measure: r.name,
      goal: r.goal,
      measured: `${r.value.toFixed(digits)}${r.unit ? ` ${r.unit}` : ''}`,
      met: m && limit !== undefined && Number.isFinite(r.value) ? (m[1] === '<=' ? r.value <= limit : r.value >= limit) : undefined,
    };
  });
}
