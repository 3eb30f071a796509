import { parseServiceConfig } from '../config/sources.js';
import { keepsStagedData } from '../fhir/pull-bulk.js';
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

  it('a bulk source keeps its staged data only with a retention longer than zero', () => {
    const config = parseServiceConfig({ sources: [source({ strategy: 'bulk' }), { ...source({ strategy: 'bulk', bulk: { retention: 'P1D' } }), id: 'kept' }] }, { env: {} });
    expect(keepsStagedData(config.sources[0].pull.bulk)).toBe(false);
    expect(keepsStagedData(config.sources[1].pull.bulk)).toBe(true);
    // The service's selection step waits this long plus an hour for its files, and pg-boss caps a job at a day.
    expect(() => parseServiceConfig({ sources: [source({ strategy: 'bulk', bulk: { maxExportWaitMs: 23 * 3_600_000 } })] }, { env: {} })).toThrow(/sources\.0\.pull\.bulk\.maxExportWaitMs/);
    expect(typeof servicePullStrategy(config.sources[0])).toBe('function');
    expect(typeof servicePullStrategy(parseServiceConfig({ sources: [source({ strategy: 'auto' })] }, { env: {} }).sources[0])).toBe('function');
  });
});
