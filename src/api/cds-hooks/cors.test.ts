import express from 'express';
import request from 'supertest';
import { cdsCors } from './cors.js';

function appWith(origins: string[]) {
  const app = express();
  app.use('/cds-services', cdsCors(origins));
  app.get('/cds-services', (_req, res) => res.status(401).json({ resourceType: 'OperationOutcome' }));
  return app;
}

describe('CORS of the CDS Hooks endpoints', () => {
  it('answers a preflight from a listed origin before authentication, without credentials', async () => {
    const res = await request(appWith(['https://ehr.example'])).options('/cds-services/m').set('origin', 'https://ehr.example').set('access-control-request-method', 'POST');
    expect(res.status).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe('https://ehr.example');
    expect(res.headers['access-control-allow-headers']).toBe('Authorization, Content-Type');
    expect(res.headers['access-control-allow-methods']).toContain('POST');
    expect(res.headers['access-control-allow-credentials']).toBeUndefined();
    expect(res.headers.vary).toContain('Origin');
  });

  it('lets the browser read answers (errors included) for listed origins only', async () => {
    const listed = await request(appWith(['https://ehr.example'])).get('/cds-services').set('origin', 'https://ehr.example');
    expect(listed.status).toBe(401);
    expect(listed.headers['access-control-allow-origin']).toBe('https://ehr.example');
    const other = await request(appWith(['https://ehr.example'])).get('/cds-services').set('origin', 'https://evil.example');
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
    const preflight = await request(appWith([])).options('/cds-services').set('origin', 'https://ehr.example');
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('answers any origin with * when configured so', async () => {
    const res = await request(appWith(['*'])).get('/cds-services').set('origin', 'https://sandbox.cds-hooks.org');
    expect(res.headers['access-control-allow-origin']).toBe('*');
  });
});
