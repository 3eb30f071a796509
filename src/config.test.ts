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
});
