/**
 * `npm run bench [-- <part>...]`: speed and memory goals, measured, never asserted in tests. Runs every
 * registered part (bench/parts/index.ts) or the ones named, prints each part's report as it goes, then
 * one table of goals against what was measured.
 *
 * Environment: BENCH_SIZES (sync population sizes, default 1000,5000,20000), BENCH_REPEATS (alternating
 * adapter/bare runs per size, default 3).
 */
import os from 'node:os';
import { goalsTable, type GoalRow } from './part.js';
import { PARTS } from './parts/index.js';

async function main(): Promise<void> {
  const names = process.argv.slice(2);
  const unknown = names.filter((n) => !PARTS.some((p) => p.name === n));
  if (unknown.length) {
    console.error(`unknown bench part(s): ${unknown.join(', ')}; parts: ${PARTS.map((p) => `${p.name} (${p.description})`).join('; ')}`);
    process.exit(64);
  }
  const parts = names.length ? PARTS.filter((p) => names.includes(p.name)) : PARTS;
  const started = new Date();
  console.log(`bench ${started.toISOString()} on ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown CPU'}), node ${process.version}, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const rows: (GoalRow & { part: string })[] = [];
  for (const part of parts) {
    console.log(`\n== ${part.name}: ${part.description}`);
    const t0 = performance.now();
    for (const row of await part.run({ log: (line) => console.log(line) })) rows.push({ part: part.name, ...row });
    console.log(`(${part.name} took ${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  }
  console.log(`\n== goals (load average at the end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')})\n${goalsTable(rows)}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
