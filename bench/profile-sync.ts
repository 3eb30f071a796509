/**
 * Profiling aid (not part of `npm run bench`): seeds N patients into a FHIR server child process and runs
 * one sync worker with --cpu-prof, writing the profile to PROFILE_DIR (default /tmp).
 *   node --import tsx bench/profile-sync.ts 5000
 */
import { spawn } from 'node:child_process';
import { seed, startServerProcess, stopServer } from './lib.js';
import { packagePath } from '../src/core/paths.js';
import { DEMO_AS_OF } from '../src/demo/seed.js';

const n = Number(process.argv[2] ?? 5000);
const server = await startServerProcess();
await seed(server.url, n);
const dir = process.env.PROFILE_DIR ?? '/tmp';
await new Promise<void>((resolve, reject) => {
  const child = spawn(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--import', 'tsx', packagePath('bench/sync-worker.ts'), server.url, DEMO_AS_OF.toISOString(), ''], {
    stdio: 'inherit',
  });
  child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker ${code}`))));
});
await stopServer(server);
