import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { AdapterError } from '../core/errors.js';
import { packagePath } from '../core/paths.js';
import { loadConfig } from './index.js';
import { describeServiceConfig, fhirSourceOf, loadServiceConfig, parseServiceConfig } from './sources.js';

const dir = mkdtempSync(path.join(tmpdir(), 'fhirml-sources-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AdapterError);
    expect((err as AdapterError).code).toBe('config-invalid');
    return (err as AdapterError).details!.problems as string[];
  }
  throw new Error('expected a config error');
}

test('the example sources file is valid once its secrets exist', () => {
  const example = parseYaml(readFileSync(packagePath('fixtures', 'service', 'sources.example.yaml'), 'utf8')) as { sources: { auth: { tokenFile?: string; privateKeyFile?: string } }[] };
  const token = path.join(dir, 'ehr-token');
  writeFileSync(token, 'example-token');
  example.sources[0].auth.tokenFile = token;
  writeFileSync(path.join(dir, 'smart-key.pem'), 'a key');
  example.sources[2].auth.privateKeyFile = 'smart-key.pem';
  const config = parseServiceConfig(example, { env: { WARD_FHIR_PASSWORD: 'pw' }, baseDir: dir });
  expect(config.sources.map((s) => s.id)).toEqual(['main-ehr', 'pneumonia-ward', 'regional-ehr']);
  expect(config.sources[2].auth).toMatchObject({ type: 'smart', clientId: 'fhir-ml-adapter', privateKeyFile: path.join(dir, 'smart-key.pem') });
  expect(config.sources[1].schedule).toEqual({ cron: '*/30 * * * *', timezone: 'Europe/Berlin' });
  expect(config.jwtIssuers).toHaveLength(1);
  // As shipped, the token file is missing here: named with its field path.
  expect(problemsOf(() => loadServiceConfig(packagePath('fixtures', 'service', 'sources.example.yaml'), { WARD_FHIR_PASSWORD: 'pw' })).join('\n')).toMatch(
    /sources\.0\.auth\.tokenFile: the file \/run\/secrets\/ehr-token cannot be read/,
  );
});

test('every problem is reported at once, with the file and the field path', () => {
  const file = path.join(dir, 'bad.yaml');
  writeFileSync(
    file,
    `service:
  api: { port: 70000 }
  apiKeys:
    - { name: a, sha256: nothex }
    - { name: a, sha256: ${'a'.repeat(64)}, scrypt: "scrypt$16384$8$1$c2FsdA==$aGFzaA==" }
sources:
  - id: Bad_Id
    baseUrl: ftp://x
    models: []
    schedule: { cron: "every night", timezone: Mars/Olympus }
    options: { rescoreInterval: 30 days, batchSize: 0 }
  - id: ok
    baseUrl: https://fhir.example/R4
    auth: { type: bearer, token: secret-in-file }
    models: [m]
  - id: ok
    baseUrl: https://fhir.example/R4
    auth: { type: basic, username: u, passwordEnv: NOT_SET }
    models: [m]
    schedule: { cron: "61 2 * * *", timezone: Mars/Olympus }
`,
  );
  const problems = problemsOf(() => loadServiceConfig(file, {}));
  const text = problems.join('\n');
  expect(problems.every((p) => p.startsWith(`${file}: `))).toBe(true);
  expect(text).toMatch(/service\.api\.port/);
  expect(text).toMatch(/service\.apiKeys\.0\.sha256: must be 64 lower-case hex digits/);
  expect(text).toMatch(/service\.apiKeys\.1: give exactly one of sha256, scrypt or sha256Env/);
  expect(text).toMatch(/sources\.0\.id: must be 1-40 lower-case/);
  expect(text).toMatch(/sources\.0\.baseUrl: must be an http\(s\) URL/);
  expect(text).toMatch(/sources\.0\.models: must name at least one model/);
  expect(text).toMatch(/sources\.0\.options\.rescoreInterval: rescoreInterval must be an ISO 8601 duration/);
  expect(text).toMatch(/sources\.0\.options\.batchSize/);
  expect(text).toMatch(/sources\.1\.auth: secrets do not belong in the sources file/);
  expect(text).not.toContain('secret-in-file');
});

test('semantic problems (cron, time zone, duplicate ids, missing secrets) are reported together', () => {
  const problems = problemsOf(() =>
    parseServiceConfig(
      {
        service: { apiKeys: [{ name: 'k', sha256: 'a'.repeat(64) }, { name: 'k', sha256: 'b'.repeat(64) }] },
        sources: [
          { id: 's', baseUrl: 'https://a.example/fhir', models: ['m'], schedule: { cron: '61 2 * * *', timezone: 'Europe/Berlin' } },
          { id: 's', baseUrl: 'https://b.example/fhir', models: ['m'], schedule: { cron: '0 2 * * *', timezone: 'Mars/Olympus' } },
          { id: 't', baseUrl: 'https://c.example/fhir', models: ['m'], auth: { type: 'bearer', tokenEnv: 'NOT_SET' } },
          { id: 'u', baseUrl: 'https://c.example/fhir', models: ['m'], auth: { type: 'basic', username: 'x', passwordFile: 'missing.txt' } },
          { id: 'v', baseUrl: 'https://c.example/fhir', models: ['m'], auth: { type: 'bearer' } },
        ],
      },
      { file: 'sources.yaml', env: {}, baseDir: dir },
    ),
  );
  const text = problems.join('\n');
  expect(text).toMatch(/sources\.0\.schedule\.cron: "61 2 \* \* \*" is not a cron expression/);
  expect(text).toMatch(/sources\.1\.id: duplicate source id "s"/);
  expect(text).toMatch(/sources\.1\.schedule\.timezone: "Mars\/Olympus" is not an IANA time zone/);
  expect(text).toMatch(/sources\.2\.auth\.tokenEnv: the environment variable NOT_SET is not set/);
  expect(text).toMatch(/sources\.3\.auth\.passwordFile: the file .*missing\.txt cannot be read \(ENOENT\)/);
  expect(text).toMatch(/sources\.4\.auth: give exactly one of tokenEnv or tokenFile/);
  expect(text).toMatch(/service\.apiKeys\.1\.name: duplicate API key name "k"/);
});

test('secrets come from the environment or from files relative to the sources file; defaults fill the rest', () => {
  writeFileSync(path.join(dir, 'token.txt'), 'tok-from-file\n');
  writeFileSync(path.join(dir, 'key.pem'), '-----BEGIN PRIVATE KEY-----\n');
  const file = path.join(dir, 'ok.yaml');
  writeFileSync(
    file,
    `sources:
  - id: a
    baseUrl: https://a.example/fhir
    auth: { type: bearer, tokenFile: token.txt }
    models: [m]
    schedule: { cron: "0 2 * * *", timezone: America/New_York }
  - id: b
    baseUrl: https://b.example/fhir
    auth: { type: basic, username: u, passwordEnv: B_PW }
    population: { type: group, id: g1 }
    models: [m]
  - id: c
    baseUrl: https://c.example/fhir
    auth: { type: smart, clientId: adapter, privateKeyFile: key.pem, scopes: [system/Observation.rs] }
    models: [m]
`,
  );
  const config = loadServiceConfig(file, { B_PW: 'pw', DATABASE_URL: 'postgres://u@db/fhirml' });
  const fromEnv = parseServiceConfig({ service: { apiKeys: [{ name: 'ops', sha256Env: 'OPS_SHA' }] } }, { env: { OPS_SHA: 'AB'.repeat(32) } });
  expect(fromEnv.apiKeys).toEqual([{ name: 'ops', sha256: 'ab'.repeat(32) }]);
  expect(problemsOf(() => parseServiceConfig({ service: { apiKeys: [{ name: 'ops', sha256Env: 'OPS_SHA' }] } }, { env: {} })).join()).toMatch(/OPS_SHA must hold 64 hex digits/);
  expect(config.sources[0].auth).toEqual({ type: 'bearer', token: 'tok-from-file' });
  expect(config.sources[0].schedule).toEqual({ cron: '0 2 * * *', timezone: 'America/New_York' });
  // Connection settings a source leaves out come from the adapter's `fhir` section.
  expect(config.sources[0].options).toEqual({ batchSize: 100, rescoreInterval: 'P30D', overlap: 'PT10M' });
  expect(config.sources[1].auth).toEqual({ type: 'basic', username: 'u', password: 'pw' });
  expect(config.sources[1].population).toEqual({ type: 'group', id: 'g1' });
  // SMART Backend Services: the `fhir.auth` settings, the key file's path relative to the sources file.
  expect(config.sources[2].auth).toEqual({ type: 'smart', clientId: 'adapter', privateKeyFile: path.join(dir, 'key.pem'), scopes: ['system/Observation.rs'] });
  expect(config.metrics).toEqual({ host: '127.0.0.1', port: 9464 });
  expect(config.database).toMatchObject({ url: 'postgres://u@db/fhirml', dataDir: path.join(dir, '.fhir-ml', 'pgdata') });
  expect(config.retentionDays).toBe(90);
  const described = JSON.stringify(describeServiceConfig(config));
  expect(described).not.toContain('tok-from-file');
  expect(described).not.toContain('pw');
});

test('a YAML syntax error names the line, not its content', () => {
  const file = path.join(dir, 'broken.yaml');
  writeFileSync(file, 'sources:\n  - id: a\n    token: "unterminated\n');
  expect(() => loadServiceConfig(file, {})).toThrow(/YAML syntax error at line \d+/);
  try {
    loadServiceConfig(file, {});
  } catch (err) {
    expect((err as Error).message).not.toContain('unterminated');
  }
});

test('the docker compose sources file is valid with the key hash in the environment', () => {
  const config = loadServiceConfig(packagePath('fixtures', 'service', 'sources.compose.yaml'), { FHIR_ML_API_KEY_SHA256: 'c'.repeat(64), DATABASE_URL: 'postgres://fhirml:fhirml@postgres:5432/fhirml' });
  expect(config.sources.map((s) => [s.id, s.baseUrl])).toEqual([['hapi', 'http://hapi:8080/fhir']]);
  expect(config.apiKeys).toEqual([{ name: 'compose', sha256: 'c'.repeat(64) }]);
});

test('SMART settings and connections follow the rules of the fhir section', () => {
  const problems = problemsOf(() =>
    parseServiceConfig(
      {
        sources: [
          { id: 'a', baseUrl: 'https://a.example/fhir', models: ['m'], auth: { type: 'smart', clientId: '', privateKeyFile: 'k.pem', scopes: ['patient/Observation.rs'], alg: 'HS256' } },
          { id: 'b', baseUrl: 'https://b.example/fhir', models: ['m'], auth: { type: 'smart', clientId: 'c', privateKeyFile: 'k.pem', clientSecret: 'x' } },
          { id: 'e', baseUrl: 'https://user:pw@e.example/fhir', models: ['m'] },
          { id: 'f', baseUrl: 'https://f.example/fhir?tenant=1', models: ['m'], options: { concurrency: 0 } },
        ],
      },
      { file: 'sources.yaml', env: {}, baseDir: dir },
    ),
  );
  const text = problems.join('\n');
  expect(text).toMatch(/sources\.0\.auth\.clientId: the SMART client id must not be empty/);
  expect(text).toMatch(/sources\.0\.auth\.scopes\.0: .*a backend service asks for system\/ scopes/);
  expect(text).toMatch(/sources\.0\.auth\.alg/);
  expect(text).toMatch(/sources\.1\.auth: secrets do not belong in the sources file/);
  expect(text).toMatch(/sources\.2\.baseUrl: must not embed credentials \(give them as auth/);
  expect(text).toMatch(/sources\.3\.baseUrl: must be a base URL, without a query or fragment/);
  expect(text).toMatch(/sources\.3\.options\.concurrency/);
  expect(text).not.toContain('pw@');
});

test('resolved credentials are checked with the fhir.auth rules; a SMART key file must be readable', () => {
  const problems = problemsOf(() =>
    parseServiceConfig(
      {
        sources: [
          { id: 'c', baseUrl: 'https://c.example/fhir', models: ['m'], auth: { type: 'smart', clientId: 'c', privateKeyFile: 'missing-key.pem' } },
          { id: 'd', baseUrl: 'https://d.example/fhir', models: ['m'], auth: { type: 'basic', username: 'x:y', passwordEnv: 'PW' } },
        ],
      },
      { file: 'sources.yaml', env: { PW: 'pw' }, baseDir: dir },
    ),
  );
  expect(problems).toEqual([
    `sources.yaml: sources.0.auth.privateKeyFile: the file ${path.join(dir, 'missing-key.pem')} cannot be read (ENOENT)`,
    'sources.yaml: sources.1.auth.username: a basic auth username cannot contain ":"',
  ]);
});

test('a source becomes the client settings of the composition root, with the fhir section for what it leaves out', () => {
  const adapter = loadConfig({}, { FHIR_ML_TIMEOUT_MS: '12000', FHIR_ML_BACKOFF_BASE_MS: '100' });
  const config = parseServiceConfig(
    {
      sources: [
        { id: 'a', baseUrl: 'https://a.example/fhir', models: ['m'], options: { concurrency: 8 } },
        { id: 'b', baseUrl: 'https://b.example/fhir', models: ['m'], auth: { type: 'bearer', tokenEnv: 'B_TOKEN' }, options: { timeoutMs: 5000, maxRetries: 1 } },
      ],
    },
    { env: { B_TOKEN: 'tok' } },
  );
  expect(fhirSourceOf(config.sources[0], adapter.fhir)).toEqual({ ...adapter.fhir, url: 'https://a.example/fhir', auth: { type: 'none' }, concurrency: 8, timeoutMs: 12000 });
  expect(fhirSourceOf(config.sources[1], adapter.fhir)).toMatchObject({ url: 'https://b.example/fhir', auth: { type: 'bearer', token: 'tok' }, timeoutMs: 5000, maxRetries: 1, backoff: { baseMs: 100 } });
});

test('CDS Hooks CORS origins default to any and are checked as origins', () => {
  const cds = (corsOrigins?: unknown) => ({
    service: { cdsHooks: { baseUrl: 'https://adapter.example', clients: [{ issuer: 'ehr', jwksUrl: 'https://ehr.example/jwks.json' }], ...(corsOrigins ? { corsOrigins } : {}) } },
    sources: [{ id: 's', baseUrl: 'https://ehr.example/fhir', models: ['m'] }],
  });
  expect(parseServiceConfig(cds(), { env: {} }).cdsHooks?.corsOrigins).toEqual(['*']);
  expect(parseServiceConfig(cds(['https://ehr.example']), { env: {} }).cdsHooks?.corsOrigins).toEqual(['https://ehr.example']);
  expect(problemsOf(() => parseServiceConfig(cds(['https://ehr.example/app', '*']), { env: {} }))).toEqual([
    expect.stringMatching(/service\.cdsHooks\.corsOrigins\.0: must be an origin/),
  ]);
});
