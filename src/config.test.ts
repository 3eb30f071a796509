import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AdapterError } from './core/errors.js';
import { describeConfig, loadConfig } from './config.js';

describe('loadConfig', () => {
  it('reports every problem at once', () => {
    let caught: unknown;
    try {
      loadConfig({ fhirUrl: 'ftp://x', batchSize: 0 }, { FHIR_ML_AUTH: 'bearer', FHIR_ML_LOG_LEVEL: 'chatty' });
    } catch (e) {
      caught = e;
    }
    expect(AdapterError.is(caught, 'config-invalid')).toBe(true);
    const problems = (caught as AdapterError).details?.problems as string[];
    expect(problems.some((p) => p.startsWith('fhirUrl'))).toBe(true);
    expect(problems.some((p) => p.startsWith('batchSize'))).toBe(true);
    expect(problems.some((p) => p.startsWith('auth.token'))).toBe(true);
    expect(problems.some((p) => p.startsWith('logLevel'))).toBe(true);
  });

  it('takes flags over environment and never exposes secrets in its description', () => {
    const config = loadConfig(
      { fhirUrl: 'https://fhir.example.org/R4', batchSize: '25' },
      { FHIR_ML_FHIR_URL: 'https://other.example.org', FHIR_ML_TOKEN: 's3cret', FHIR_ML_BATCH_SIZE: '50' },
    );
    expect(config.fhirUrl).toBe('https://fhir.example.org/R4');
    expect(config.batchSize).toBe(25);
    expect(config.auth).toEqual({ type: 'bearer', token: 's3cret' });
    expect(JSON.stringify(describeConfig(config))).not.toContain('s3cret');
  });

  it('rejects an identifier system that would break conditional-create queries', () => {
    expect(() => loadConfig({}, { FHIR_ML_IDENTIFIER_SYSTEM: 'https://x.org/id?a=b' })).toThrow(/identifierSystem/);
  });

  it('reads a YAML config file below flags and environment, with secrets only from files it names', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fhir-ml-config-'));
    try {
      const tokenFile = path.join(dir, 'token');
      writeFileSync(tokenFile, 'from-file\n');
      const file = path.join(dir, 'config.yaml');
      writeFileSync(file, `fhirUrl: https://file.example.org/R4\nbatchSize: 40\nconcurrency: 2\nauth:\n  type: bearer\n  tokenFile: ${tokenFile}\n`);
      const config = loadConfig({ configFile: file }, { FHIR_ML_CONCURRENCY: '8' });
      expect(config.fhirUrl).toBe('https://file.example.org/R4');
      expect(config.batchSize).toBe(40);
      expect(config.concurrency).toBe(8);
      expect(config.auth).toEqual({ type: 'bearer', token: 'from-file' });

      writeFileSync(file, 'auth:\n  token: s3cret\nbatchSize: lots\n');
      expect(() => loadConfig({ configFile: file }, {})).toThrow(/secrets do not belong in the config file[\s\S]*batchSize/);

      // A syntax error is located, never quoted: the line may hold a secret.
      writeFileSync(file, 'auth:\n  token: eyJSECRET: TOKEN\n');
      expect(() => loadConfig({ configFile: file }, {})).toThrow(/line 2, column/);
      try {
        loadConfig({ configFile: file }, {});
      } catch (e) {
        expect(String((e as Error).message)).not.toContain('eyJSECRET');
      }
      expect(() => loadConfig({}, { FHIR_ML_TOKEN_FILE: path.join(dir, 'missing') })).toThrow(/FHIR_ML_TOKEN_FILE: the file .* cannot be read \(ENOENT\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
