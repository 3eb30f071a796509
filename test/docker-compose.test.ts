import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';

/**
 * docker-compose.yml is for users (no Docker here), so these checks read it: what it publishes and what
 * its comments promise must match what it defines.
 */
const file = path.resolve(process.cwd(), 'docker-compose.yml');
const text = readFileSync(file, 'utf8');
const compose = parse(text) as { services: Record<string, { ports?: (string | { host_ip?: string })[] }> };

test('every published port is bound to 127.0.0.1 only', () => {
  const published = Object.entries(compose.services).flatMap(([name, s]) => (s.ports ?? []).map((p) => ({ name, p })));
  expect(published.length).toBeGreaterThan(0);
  for (const { name, p } of published) {
    const hostIp = typeof p === 'string' ? p.split(':').length === 3 && p.split(':')[0] : p.host_ip;
    expect({ name, hostIp }).toEqual({ name, hostIp: '127.0.0.1' });
  }
});

test('the header comment lists exactly the services defined, and its example names a model that exists', () => {
  const header = text.split('\nservices:')[0];
  const listed = [...header.matchAll(/^#\s{2,}([a-z][a-z0-9-]*)\s{2,}/gm)].map((m) => m[1]).sort();
  expect(listed).toEqual(Object.keys(compose.services).sort());
  for (const [, model] of header.matchAll(/--model ([a-z0-9-]+)/g)) {
    expect(existsSync(path.resolve(process.cwd(), 'models', model, 'model-card.json'))).toBe(true);
  }
  for (const [, port] of header.matchAll(/127\.0\.0\.1:(\d+)/g)) {
    expect(text).toContain(`"127.0.0.1:${port}:`);
  }
});
