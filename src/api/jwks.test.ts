import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import express from 'express';
import request from 'supertest';
import { parseServiceConfig } from '../config/sources.js';
import { silentLogger } from '../core/log.js';
import { mountJwks } from './jwks.js';

describe('GET /.well-known/jwks.json', () => {
  it('serves the public halves of the sources\' SMART keys and the extra keys, without authentication', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'jwks-'));
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'pem', type: 'pkcs8' });
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'pem', type: 'pkcs8' });
    writeFileSync(path.join(dir, 'current.pem'), rsa);
    writeFileSync(path.join(dir, 'next.pem'), ec);
    const file = path.join(dir, 'sources.yaml');
    const config = parseServiceConfig(
      {
        service: { jwks: { keys: [{ privateKeyFile: 'next.pem', kid: 'next' }] } },
        sources: [{ id: 'ehr', baseUrl: 'https://ehr.example/fhir', models: ['m'], auth: { type: 'smart', clientId: 'c', privateKeyFile: 'current.pem', kid: 'current' } }],
      },
      { file, env: {} },
    );
    const app = express();
    mountJwks(app, { config, logger: silentLogger });
    const res = await request(app).get('/.well-known/jwks.json');
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toContain('max-age');
    const keys = res.body.keys as Record<string, unknown>[];
    expect(keys.map((k) => [k.kid, k.kty, k.alg])).toEqual([
      ['next', 'EC', 'ES384'],
      ['current', 'RSA', 'RS384'],
    ]);
    for (const k of keys) expect(k.d).toBeUndefined();
  });
});
