import { spawn } from 'node:child_process';
import { startServerProcess, stopServer, TSX } from './lib.js';
const n = Number(process.argv[2]);
const flags = process.argv.slice(3);
const server = await startServerProcess(n);
await new Promise<void>((resolve) => { const c = spawn(process.execPath, [...flags, ...TSX, process.env.MEMW ?? 'bench/_mem.mts', server.url], { stdio: 'inherit' }); c.once('exit', () => resolve()); });
await stopServer(server);
