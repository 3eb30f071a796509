import cliProgress from 'cli-progress';

/** A progress bar on stderr when attached to a terminal; silent otherwise (logs, CI, pipes). */
export function progressReporter(total?: number): { update: (p: { patientsDone: number }) => void; stop: () => void } {
  if (!process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: total ? 'sync [{bar}] {value}/{total} patients | {eta_formatted}' : 'sync {value} patients',
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total ?? 0, 0);
  return {
    update: (p) => bar.update(p.patientsDone),
    stop: () => bar.stop(),
  };
}
