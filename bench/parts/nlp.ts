/**
 * NLP benchmark (the NLP work's bench/nlp.ts): report throughput on ~300-word reports on one core, and
 * the evaluation on the labelled sets (the held-out negation figures are the goals).
 */
import { runNlpBench } from '../nlp.js';
import type { BenchContext, BenchPart, GoalRow } from '../part.js';

// Acceptance of the NLP work on the held-out part: negation precision >= 0.95, recall >= 0.96.
const GOALS = { reportsPerSecond: 1000, negationPrecision: 0.95, negationRecall: 0.96 };

async function run(ctx: BenchContext): Promise<GoalRow[]> {
  const r = await runNlpBench({ log: ctx.log });
  ctx.log(
    `nlp: ${r.reportsPerSecond} reports/s best, ${r.medianReportsPerSecond} median, on ~${r.wordsPerReport}-word reports (one core); ` +
      `held-out negation precision ${r.negationPrecision.toFixed(3)}, recall ${r.negationRecall.toFixed(3)}`,
  );
  return [
    {
      measure: `reports/s on ~${r.wordsPerReport}-word reports, one core (best round; median ${r.medianReportsPerSecond})`,
      goal: `>= ${GOALS.reportsPerSecond}`,
      measured: String(r.reportsPerSecond),
      met: r.reportsPerSecond >= GOALS.reportsPerSecond,
    },
    { measure: 'held-out negation precision', goal: `>= ${GOALS.negationPrecision.toFixed(2)}`, measured: r.negationPrecision.toFixed(3), met: r.negationPrecision >= GOALS.negationPrecision },
    { measure: 'held-out negation recall', goal: `>= ${GOALS.negationRecall.toFixed(2)}`, measured: r.negationRecall.toFixed(3), met: r.negationRecall >= GOALS.negationRecall },
  ];
}

export const nlpPart: BenchPart = {
  name: 'nlp',
  description: 'clinical NLP throughput and the evaluation on the labelled sets',
  run,
};
