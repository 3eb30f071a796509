/**
 * Where a CPU profile's time went (`node --cpu-prof` output, e.g. from bench/profile-sync.ts): self time
 * by function and by file or package, and inclusive time by function.
 *   node --import tsx bench/profile-summary.ts <file.cpuprofile> [top=40]
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const [file, topArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: bench/profile-summary.ts <file.cpuprofile> [top]');
  process.exit(64);
}
const top = Number(topArg ?? 40);
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const root = new URL('..', import.meta.url).href;
const short = (url: string) => url.replace(/^.*node_modules\//, 'node_modules/').replace(root, '');
const label = (n: ProfileNode) => `${n.callFrame.functionName || '(anonymous)'} ${short(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
const fileOf = (n: ProfileNode) => {
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(n.callFrame.url);
  return pkg ? `package ${pkg[1]}` : short(n.callFrame.url) || n.callFrame.functionName;
};

const time = new Map<number, number>();
profile.samples.forEach((id, i) => time.set(id, (time.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
const total = [...time.values()].reduce((a, b) => a + b, 0);
const self = new Map<string, number>();
const files = new Map<string, number>();
const inclusive = new Map<string, number>();
const add = (m: Map<string, number>, k: string, t: number) => m.set(k, (m.get(k) ?? 0) + t);
for (const [id, t] of time) {
  const node = byId.get(id)!;
  add(self, label(node), t);
  add(files, fileOf(node), t);
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const l = label(byId.get(cur)!);
    if (!seen.has(l)) add(inclusive, l, t);
    seen.add(l);
  }
}

function print(title: string, m: Map<string, number>): void {
  console.log(`\n== ${title} (of ${(total / 1e6).toFixed(2)} s sampled)`);
  for (const [k, t] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${(t / 1e3).toFixed(0).padStart(7)} ms ${((100 * t) / total).toFixed(1).padStart(5)}%  ${k}`);
  }
}
print('self time by function', self);
print('self time by file or package', files);
print('inclusive time by function', inclusive);
