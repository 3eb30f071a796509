import { AdapterError, toAdapterError } from './errors.js';
import { exitCodeFor, httpStatusFor, operationOutcomeFor } from './error-mapping.js';

describe('AdapterError', () => {
  it('wraps plain objects thrown by third parties, keeping the cause', () => {
    const thrown = { response: { status: 500 }, message: 'boom' };
    const err = toAdapterError(thrown, 'fhir-unavailable', 'GET Observation');
    expect(err).toBeInstanceOf(AdapterError);
    expect(err.code).toBe('fhir-unavailable');
    expect(err.message).toContain('GET Observation');
    expect(err.cause).toBe(thrown);
  });

  it('maps one code to exit code, HTTP status and OperationOutcome in one place', () => {
    const err = new AdapterError('input-invalid', 'bad --as-of');
    expect(exitCodeFor(err)).toBe(64);
    expect(httpStatusFor(err)).toBe(400);
    const oo = operationOutcomeFor(err);
    expect(oo.issue[0].code).toBe('invalid');
    expect(oo.issue[0].details?.text).toBe('bad --as-of');
    expect(exitCodeFor('a string thrown by onnxruntime')).toBe(70);
  });
});
