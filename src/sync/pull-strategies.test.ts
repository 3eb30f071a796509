import { parseServiceConfig } from '../config/sources.js';
import { AdapterError } from '../core/errors.js';
import { servicePullStrategy } from './pull-strategies.js';

const source = (pull: unknown) => ({ id: 'ehr', baseUrl: 'https://ehr.example/fhir', models: ['m'], ...(pull === undefined ? {} : { pull }) });

describe('a source\'s pull options', () => {
  it('default to the search strategy and validate every field', () => {
    const config = parseServiceConfig({ sources: [source(undefined), { ...source({ strategy: 'per-patient', patientConcurrency: 8, bulk: { retention: 'P2D' } }), id: 'two' }] }, { env: {} });
    expect(config.sources[0].pull.strategy).toBe('search');
    expect(config.sources[1].pull).toMatchObject({ strategy: 'per-patient', patientConcurrency: 8, bulk: { retention: 'P2D', typeFilter: true } });
    const bad = () => parseServiceConfig({ sources: [source({ strategy: 'fast', bulk: { retention: 'two days', trustedOrigins: ['https://files.example/path'] } })] }, { env: {} });
    expect(bad).toThrow(/sources\.0\.pull\.strategy: Invalid option/);
    expect(bad).toThrow(/sources\.0\.pull\.bulk\.retention: must be an ISO 8601 duration/);
    expect(bad).toThrow(/sources\.0\.pull\.bulk\.trustedOrigins\.0: must be an origin/);
  });

  it('the service refuses bulk at start, saying where bulk runs', () => {
    const config = parseServiceConfig({ sources: [source({ strategy: 'bulk' })] }, { env: {} });
    let error: unknown;
    try {
      servicePullStrategy(config.sources[0]);
    } catch (err) {
      error = err;
    }
    expect(AdapterError.is(error, 'config-invalid')).toBe(true);
    expect((error as Error).message).toContain('fhir-ml sync --pull-strategy bulk');
    expect(typeof servicePullStrategy(parseServiceConfig({ sources: [source({ strategy: 'auto' })] }, { env: {} }).sources[0])).toBe('function');
  });
});
