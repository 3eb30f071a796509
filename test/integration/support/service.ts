import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import type { Bundle, FhirResource, RiskAssessment } from 'fhir/r4.js';
import { createApp, type App } from '../../../src/app.js';
import { parseServiceConfig, type ServiceConfig } from '../../../src/config/sources.js';
import { packagePath } from '../../../src/core/paths.js';
import { seedDemo } from '../../../src/demo/demo.js';
import { loadDiabetesRows } from '../../../src/demo/diabetes-rows.js';
import { startFhirServer, type RunningFhirServer } from '../../../src/server/index.js';

/**
 * Shared parts of the service tests: a database of their own on the machine's PostgreSQL (created with a
 * unique name, dropped at the end), the embedded FHIR server seeded with demo patients, a sources config.
 */
export const PG_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(purpose: string): Promise<TestDatabase> {
  const name = `fhirml_${purpose}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  return {
    name,
    url: `postgres://postgres@127.0.0.1:5432/${name}`,
    drop: async () => {
      const c = new pg.Client({ connectionString: PG_ADMIN_URL });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

/**
 * The composition root as a service test needs it: the package's models and mappings, the default
 * identifier system, silent logs, and nothing from the environment. The caller closes it.
 */
export function testApp(): App {
  return createApp({ env: { FHIR_ML_LOG_LEVEL: 'silent' } });
}

export const API_KEY = 'test-key-' + 'x'.repeat(24);
export const API_KEY_SHA256 = createHash('sha256').update(API_KEY).digest('hex');

/** Embedded FHIR server with `count` demo patients whose data end a day before now. */
export async function seededFhirServer(count: number): Promise<{ server: RunningFhirServer; patientIds: string[]; dataAsOf: Date }> {
  const server = await startFhirServer({ port: 0 });
  const rows = loadDiabetesRows().slice(0, count);
  const dataAsOf = new Date(Date.now() - 86_400_000);
  await seedDemo(server, rows, dataAsOf);
  const patientIds = rows.map((_r, i) => `demo-${String(i + 1).padStart(4, '0')}`);
  return { server, patientIds, dataAsOf };
}

export function serviceConfig(
  fhirUrl: string,
  overrides: { source?: Record<string, unknown>; service?: Record<string, unknown>; databaseUrl?: string; apiKeySha256?: string } = {},
): ServiceConfig {
  return parseServiceConfig(
    {
      service: {
        apiKeys: overrides.apiKeySha256 ? [{ name: 'test', sha256: overrides.apiKeySha256 }] : [],
        worker: { heartbeatSeconds: 1, heartbeatTimeoutSeconds: 5, retryLimit: 3, retryDelaySeconds: 1, pollingIntervalSeconds: 0.5, shutdownGraceSeconds: 5, batchConcurrency: 2 },
        ...overrides.service,
      },
      sources: [
        {
          id: 'test',
          baseUrl: fhirUrl,
          models: ['diabetes-progression'],
          options: { batchSize: 5, overlap: 'PT0S', rescoreInterval: 'P7D' },
          ...overrides.source,
        },
      ],
    },
    { env: overrides.databaseUrl ? { DATABASE_URL: overrides.databaseUrl } : {} },
  );
}

/** Every RiskAssessment on the server (all pages), for duplicate and write checks. */
export async function allRiskAssessments(fhirUrl: string): Promise<RiskAssessment[]> {
  const out: RiskAssessment[] = [];
  let url: string | undefined = `${fhirUrl}/RiskAssessment?_count=1000`;
  while (url) {
    const bundle = (await (await fetch(url)).json()) as Bundle;
    for (const e of bundle.entry ?? []) out.push(e.resource as RiskAssessment);
    url = bundle.link?.find((l) => l.relation === 'next')?.url;
  }
  return out;
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 60_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * A worker process of its own (support/worker-child.ts) on the given database and FHIR server, for the
 * crash tests: its stdout lines as they come (WORKER_READY, BATCH_WRITTEN ...), to be killed with SIGKILL.
 */
export function startWorkerChild(env: { databaseUrl: string; fhirUrl: string; sourcePull?: Record<string, unknown> }): { process: ChildProcess; lines: string[] } {
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(packagePath('test', 'integration', 'support'), 'worker-child.ts')], {
    cwd: packagePath(),
    env: {
      ...process.env,
      TEST_DATABASE_URL: env.databaseUrl,
      TEST_FHIR_URL: env.fhirUrl,
      ...(env.sourcePull ? { TEST_SOURCE_PULL: JSON.stringify(env.sourcePull) } : {}),
      FHIR_ML_LOG_LEVEL: 'silent',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  let buffer = '';
  proc.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    const parts = buffer.split('\n');
    buffer = parts.pop()!;
    lines.push(...parts);
  });
  return { process: proc, lines };
}

export type { FhirResource };
