/**
 * Profiling aid (not part of `npm run bench`): a FHIR server process seeded with N patients, and one
 * sync worker under `node --cpu-prof` (no recording), writing the profile to PROFILE_DIR (default /tmp).
 * `bench/profile-summary.ts` prints where the time went.
 *   node --import tsx bench/profile-sync.ts 5000
 */
import { spawn } from 'node:child_process';
import { packagePath } from '../src/core/paths.js';
import { DEMO_AS_OF } from '../src/demo/seed.js';
import { startServerProcess, stopServer, TSX } from './lib.js';

const n = Number(process.argv[2] ?? 5000);
const server = await startServerProcess(n);
const dir = process.env.PROFILE_DIR ?? '/tmp';
try {
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, ...TSX, packagePath('bench/sync-worker.ts'), server.url, DEMO_AS_OF.toISOString()], {
      stdio: 'inherit',
    });
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker ${code}`))));
  });
} finally {
  await stopServer(server);
}
