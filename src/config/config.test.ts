import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AdapterError } from '../core/errors.js';
import { describeConfig, loadConfig } from './index.js';

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    expect(AdapterError.is(e, 'config-invalid')).toBe(true);
    return (e as AdapterError).details?.problems as string[];
  }
  throw new Error('expected a config-invalid error');
}

describe('loadConfig', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'fhir-ml-config-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reports every problem at once, each with where the value came from', () => {
    const problems = problemsOf(() => loadConfig({ fhirUrl: 'ftp://x', batchSize: 0 }, { FHIR_ML_AUTH: 'bearer', FHIR_ML_LOG_LEVEL: 'chatty' }));
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^fhir\.url \(from --fhir-url\): must be an http\(s\) URL/),
        expect.stringMatching(/^sync\.batchSize \(from --batch-size\): /),
        expect.stringMatching(/^fhir\.auth\.token: bearer auth needs a token/),
        expect.stringMatching(/^log\.level \(from FHIR_ML_LOG_LEVEL\): /),
      ]),
    );
    expect(problems).toHaveLength(4);
  });

  it('takes flags over environment over file, in nested sections, and never exposes secrets in its description', () => {
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, 'fhir:\n  url: https://file.example.org/R4\n  concurrency: 2\nsync:\n  batchSize: 40\nmodels:\n  dir: ./my-models\n');
    const config = loadConfig(
      { configFile: file, fhirUrl: 'https://fhir.example.org/R4', batchSize: '25' },
      { FHIR_ML_FHIR_URL: 'https://other.example.org', FHIR_ML_TOKEN: 's3cret', FHIR_ML_BATCH_SIZE: '50', FHIR_ML_CONCURRENCY: '8' },
    );
    expect(config.fhir.url).toBe('https://fhir.example.org/R4');
    expect(config.sync.batchSize).toBe(25);
    expect(config.fhir.concurrency).toBe(8);
    expect(config.fhir.auth).toEqual({ type: 'bearer', token: 's3cret' });
    // paths in the file are relative to the file
    expect(config.models.dir).toBe(path.join(dir, 'my-models'));
    expect(JSON.stringify(describeConfig(config))).not.toContain('s3cret');
  });

  it('rejects an identifier system that would break conditional-create queries', () => {
    expect(problemsOf(() => loadConfig({}, { FHIR_ML_IDENTIFIER_SYSTEM: 'https://x.org/id?a=b' }))[0]).toMatch(/^sync\.identifierSystem \(from FHIR_ML_IDENTIFIER_SYSTEM\)/);
  });

  it('reads secrets only from files a config file names; syntax errors are located, never quoted', () => {
    const tokenFile = path.join(dir, 'token');
    writeFileSync(tokenFile, 'from-file\n');
    const file = path.join(dir, 'config.yaml');
    writeFileSync(file, `fhir:\n  url: https://file.example.org/R4\n  auth:\n    type: bearer\n    tokenFile: ${tokenFile}\n`);
    expect(loadConfig({ configFile: file }, {}).fhir.auth).toEqual({ type: 'bearer', token: 'from-file' });

    writeFileSync(file, 'fhir:\n  auth:\n    token: eyJSECRET: TOKEN\n');
    const syntax = problemsOf(() => loadConfig({ configFile: file }, {}));
    expect(syntax.join('\n')).toMatch(/line 3, column/);
    expect(syntax.join('\n')).not.toContain('eyJSECRET');
    expect(problemsOf(() => loadConfig({}, { FHIR_ML_TOKEN_FILE: path.join(dir, 'missing') }))).toEqual([
      expect.stringMatching(/FHIR_ML_TOKEN_FILE: the file .* cannot be read \(ENOENT\)/),
    ]);
  });

  it('reports all six problems of a config file in one try', () => {
    const file = path.join(dir, 'config.yaml');
    writeFileSync(
      file,
      [
        'fhirUrl: https://old.example.org', // the earlier flat format
        'fhir:',
        '  url: not a url',
        '  auth:',
        '    password: s3cret', // a secret in the file
        '  timeoutMs: 5',
        'sync:',
        '  batchSize: lots',
        'log:',
        '  level: chatty',
      ].join('\n'),
    );
    const problems = problemsOf(() => loadConfig({ configFile: file }, {}));
    expect(problems).toHaveLength(6);
    expect(problems).toEqual(
      expect.arrayContaining([
        `${file}: fhirUrl: unknown key (it is now fhir.url)`,
        `${file}: fhir.auth.password: secrets do not belong in the config file; use the environment or tokenFile/passwordFile`,
        expect.stringMatching(/^fhir\.url \(from .*config\.yaml\): must be an http\(s\) URL/),
        expect.stringMatching(/^fhir\.timeoutMs \(from .*config\.yaml\): /),
        expect.stringMatching(/^sync\.batchSize \(from .*config\.yaml\): /),
        expect.stringMatching(/^log\.level \(from .*config\.yaml\): /),
      ]),
    );
    expect(problems.join('\n')).not.toContain('s3cret');
  });

  it('refuses a bearer token and basic credentials set together, or credentials beside auth none', () => {
    const both = problemsOf(() => loadConfig({}, { FHIR_ML_TOKEN: 't', FHIR_ML_USERNAME: 'u', FHIR_ML_PASSWORD: 'p' }));
    expect(both).toEqual([expect.stringMatching(/a bearer token \(FHIR_ML_TOKEN\) and basic credentials \(FHIR_ML_USERNAME\) are set; set only one/)]);
    expect(problemsOf(() => loadConfig({}, { FHIR_ML_AUTH: 'none', FHIR_ML_TOKEN: 't' }))[0]).toMatch(/FHIR_ML_AUTH is none but credentials are set/);
    expect(problemsOf(() => loadConfig({}, { FHIR_ML_AUTH: 'oauth' }))[0]).toMatch(/fhir\.auth\.type \(from FHIR_ML_AUTH\): must be none, bearer, basic or smart/);
    expect(loadConfig({}, { FHIR_ML_USERNAME: 'u', FHIR_ML_PASSWORD: 'p' }).fhir.auth).toEqual({ type: 'basic', username: 'u', password: 'p' });
  });

  it('configures SMART Backend Services from the environment or the file (key path relative to the file), never beside other credentials', () => {
    const env = {
      FHIR_ML_SMART_CLIENT_ID: 'nightly',
      FHIR_ML_SMART_PRIVATE_KEY_FILE: '/keys/es384.pem',
      FHIR_ML_SMART_ALG: 'ES384',
      FHIR_ML_SMART_SCOPES: 'system/Patient.rs  system/Observation.rs',
    };
    expect(loadConfig({}, env).fhir.auth).toEqual({
      type: 'smart',
      clientId: 'nightly',
      privateKeyFile: '/keys/es384.pem',
      alg: 'ES384',
      scopes: ['system/Patient.rs', 'system/Observation.rs'],
    });
    const file = path.join(dir, 'fhir-ml.yaml');
    writeFileSync(file, 'fhir:\n  auth:\n    type: smart\n    clientId: nightly\n    privateKeyFile: keys/sync.jwk.json\n    scopes: [system/Patient.rs]\n');
    expect(loadConfig({ configFile: file }, {}).fhir.auth).toMatchObject({ type: 'smart', privateKeyFile: path.join(dir, 'keys/sync.jwk.json') });
    expect(problemsOf(() => loadConfig({}, { ...env, FHIR_ML_TOKEN: 't' }))[0]).toMatch(/a bearer token \(FHIR_ML_TOKEN\) and SMART Backend Services settings/);
    const bad = problemsOf(() => loadConfig({}, { FHIR_ML_AUTH: 'smart', FHIR_ML_SMART_SCOPES: 'patient/Observation.rs' }));
    expect(bad.join('\n')).toMatch(/client id must not be empty/);
    expect(bad.join('\n')).toMatch(/private key file must be named/);
    expect(bad.join('\n')).toMatch(/system\/ scopes, not patient\//);
  });

  it('reads the shadow and CarePlan switches as booleans from flags, environment and file, refusing other words', () => {
    expect(loadConfig({}, {}).sync).toMatchObject({ shadow: false, carePlans: true });
    expect(loadConfig({}, { FHIR_ML_SHADOW: 'true', FHIR_ML_CARE_PLANS: '0' }).sync).toMatchObject({ shadow: true, carePlans: false });
    expect(loadConfig({ carePlans: true }, { FHIR_ML_CARE_PLANS: 'no' }).sync.carePlans).toBe(true);
    const file = path.join(dir, 'fhir-ml.yaml');
    writeFileSync(file, 'sync:\n  shadow: true\n');
    expect(loadConfig({ configFile: file }, {}).sync.shadow).toBe(true);
    expect(problemsOf(() => loadConfig({}, { FHIR_ML_SHADOW: 'maybe' }))[0]).toMatch(/sync\.shadow \(from FHIR_ML_SHADOW\)/);
  });

  it('says when DEBUG would make fhir-kit-client trace requests', () => {
    expect(loadConfig({}, {}).log.fhirClientTracing).toBe(false);
    expect(loadConfig({}, { DEBUG: 'fhir-kit-client:*' }).log.fhirClientTracing).toBe(true);
  });
});
