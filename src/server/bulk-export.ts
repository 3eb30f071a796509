import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { OperationOutcomeError, notFound } from '@medplum/core';
import type { Bundle, Group, OperationOutcome, Resource } from '@medplum/fhirtypes';
import type { Request, Response, Router } from 'express';
import { type ExportLevel, type ExportRequest, parseExportRequest, rawExportParams } from './bulk-export-request.js';
import { patientCompartment, patientCompartmentTypes } from './compartment.js';
import type { Logger } from '../core/log.js';
import { searchParameterFor } from './definitions.js';
import { referencesAt, type IndexedMemoryRepository } from './repository.js';

/**
 * Bulk Data `$export` (FHIR Bulk Data Access IG v2) at system, Patient and Group level, with the async
 * request pattern: kick-off (`Prefer: respond-async`) -> 202 + Content-Location -> status polls (202
 * with X-Progress and Retry-After, then 200 with the manifest) -> NDJSON files -> DELETE.
 *
 * The export is a snapshot taken at kick-off: references to the stored versions (never copied, never
 * changed: updates store new objects), so a job costs a pointer per resource and the files are
 * serialised line by line as they are downloaded. `transactionTime` is an instant no later write
 * shares (`repo.reserveInstant`), so a client that passes it as the next `_since` misses nothing.
 * How long a job stays "in progress" is a setting (`inProgressPolls`) rather than real work, so tests
 * see the 202 phase deterministically.
 */
export interface BulkExportOptions {
  /** Status polls answered 202 (in progress) before the manifest (default 1). */
  inProgressPolls?: number;
  /** Retry-After seconds on in-progress answers (default 1). */
  retryAfterSeconds?: number;
  /** Split each type's output into files of at most this many resources (default 0: one file per type). */
  maxResourcesPerFile?: number;
}

export interface BulkExportDeps {
  repo: IndexedMemoryRepository;
  logger: Logger;
  baseUrl: () => string;
  /** True when file downloads need the same bearer token (the server has an `authorize` gate). */
  requiresAccessToken: boolean;
  options: BulkExportOptions;
}

interface ExportFile {
  type: string;
  items: unknown[];
}

interface ExportJob {
  id: string;
  request: string;
  transactionTime: string;
  pollsLeft: number;
  polls: number;
  output: ExportFile[];
  error: ExportFile[];
  deleted: ExportFile[];
}

export interface BulkExportManifest {
  transactionTime: string;
  request: string;
  requiresAccessToken: boolean;
  output: { type: string; url: string; count: number }[];
  error: { type: string; url: string; count: number }[];
  deleted?: { type: string; url: string; count: number }[];
}

const STATUS_PATH = '/$export-status/';
const FILE_PATH = '/$export-file/';
const NDJSON = 'application/fhir+ndjson';

export class BulkExports {
  private readonly jobs = new Map<string, ExportJob>();

  constructor(private readonly deps: BulkExportDeps) {}

  /** Adds the kick-off, status, file and cancel routes to the FHIR router (before the catch-all). */
  register(router: Router): void {
    router.all(/^\/(?:(Patient)\/|Group\/([^/]+)\/)?\$export$/, (req, res) => {
      if (req.method !== 'GET' && req.method !== 'POST') return sendOutcome(res, 405, outcome('error', 'not-supported', `${req.method} is not allowed on $export: use GET or POST`));
      const [, patient, groupId] = /^\/(?:(Patient)\/|Group\/([^/]+)\/)?\$export$/.exec(req.path) ?? [];
      const level: ExportLevel = groupId ? { kind: 'group', groupId } : patient ? { kind: 'patient' } : { kind: 'system' };
      this.kickOff(req, res, level);
    });
    router.get(/^\/\$export-status\/([^/]+)$/, (req, res) => this.status(res, idFrom(req.path, STATUS_PATH)));
    router.delete(/^\/\$export-status\/([^/]+)$/, (req, res) => this.cancel(res, idFrom(req.path, STATUS_PATH)));
    router.get(/^\/\$export-file\/([^/]+)\/(\d+)\.ndjson$/, (req, res, next) => {
      const [jobId, n] = req.path.slice(FILE_PATH.length).replace(/\.ndjson$/, '').split('/');
      this.file(res, jobId, Number(n)).catch(next);
    });
  }

  clear(): void {
    this.jobs.clear();
  }

  /** Number of jobs held (for tests and logs). */
  get size(): number {
    return this.jobs.size;
  }

  private kickOff(req: Request, res: Response, level: ExportLevel): void {
    const prefer = req.get('prefer') ?? '';
    if (!/respond-async/i.test(prefer)) {
      return sendOutcome(res, 400, outcome('error', 'invalid', '$export needs the header Prefer: respond-async (it runs asynchronously)'));
    }
    const lenient = /handling\s*=\s*lenient/i.test(prefer);
    const i = req.originalUrl.indexOf('?');
    const query = new URLSearchParams(i < 0 ? '' : req.originalUrl.slice(i + 1));
    const baseUrl = this.deps.baseUrl();
    const parsed = parseExportRequest(level, rawExportParams(query, req.method === 'POST' ? req.body : undefined), { baseUrl, lenient });
    const job = this.build(parsed, `${baseUrl}${req.url}`);
    this.jobs.set(job.id, job);
    res
      .status(202)
      .set('Content-Location', `${baseUrl}${STATUS_PATH}${job.id}`)
      .type('application/fhir+json; charset=utf-8')
      .send(JSON.stringify(outcome('information', 'informational', 'Export accepted: poll the Content-Location URL')));
  }

  /** Takes the snapshot: which stored versions each file will hold. */
  private build(request: ExportRequest, requestUrl: string): ExportJob {
    const { repo } = this.deps;
    const transactionTime = repo.reserveInstant();
    const errors: OperationOutcome[] = [];
    const compartment = patientCompartment();
    let patients: Set<string> | undefined;
    if (request.level.kind === 'group') {
      patients = this.groupMembers(request.level.groupId, errors);
    } else if (request.level.kind === 'patient') {
      patients = new Set(repo.ids('Patient').map((id) => `Patient/${id}`));
    }
    if (patients && request.patients) {
      const asked = new Set<string>();
      for (const ref of request.patients) {
        if (patients.has(ref)) asked.add(ref);
        else errors.push(outcome('error', 'not-found', `patient ${ref} is not ${request.level.kind === 'group' ? 'a member of the Group' : 'on this server'}`));
      }
      patients = asked;
    }
    const types = request.types ?? (patients ? patientCompartmentTypes() : repo.types());

    const output: ExportFile[] = [];
    for (const type of types) {
      let resources: Resource[];
      if (!patients) resources = repo.matching({ resourceType: type as Resource['resourceType'] });
      else if (type === 'Patient') resources = [...patients].map((ref) => repo.peek('Patient', ref.slice('Patient/'.length))).filter((r): r is Resource => !!r);
      else resources = repo.referencing(type, compartment.get(type) ?? [], patients);
      if (request.since) {
        const since = request.since;
        resources = resources.filter((r) => (r.meta?.lastUpdated ?? '') > since);
      }
      const filters = request.typeFilters.get(type);
      if (filters) {
        const allowed = new Set<Resource>();
        for (const search of filters) for (const r of repo.matching(search)) allowed.add(r);
        resources = resources.filter((r) => allowed.has(r));
      }
      output.push(...this.split(type, resources));
    }

    const deleted: ExportFile[] = [];
    if (request.since) {
      // A system-level export without _type covers every type, including those with nothing left.
      const wanted = request.types || patients ? new Set(types) : undefined;
      const seen = new Set<string>();
      const bundles: Bundle[] = [];
      for (const change of repo.changesSince(request.since, { inclusive: false })) {
        const key = `${change.resourceType}/${change.id}`;
        if (change.method !== 'DELETE' || (wanted && !wanted.has(change.resourceType)) || seen.has(key)) continue;
        if (repo.peek(change.resourceType, change.id)) continue; // re-created since: it is in the output
        if (patients && !this.wasInCompartment(change.resourceType, change.id, patients)) continue;
        seen.add(key);
        bundles.push({ resourceType: 'Bundle', type: 'transaction', meta: { lastUpdated: change.lastUpdated }, entry: [{ request: { method: 'DELETE', url: key } }] });
      }
      deleted.push(...this.split('Bundle', bundles));
    }
    const count = (files: ExportFile[]): number => files.reduce((n, f) => n + f.items.length, 0);
    this.deps.logger.info(
      { exportLevel: request.level.kind, types: types.length, resources: count(output), files: output.length, errors: errors.length, deleted: count(deleted), since: !!request.since },
      'bulk export ready',
    );
    return {
      id: randomUUID(),
      request: requestUrl,
      transactionTime,
      pollsLeft: Math.max(0, this.deps.options.inProgressPolls ?? 1),
      polls: Math.max(0, this.deps.options.inProgressPolls ?? 1),
      output,
      error: errors.length ? [{ type: 'OperationOutcome', items: errors }] : [],
      deleted,
    };
  }

  /** `Patient/<id>` of the Group's active members; other members are reported in the error file. */
  private groupMembers(groupId: string, errors: OperationOutcome[]): Set<string> {
    const group = this.deps.repo.peek('Group', groupId) as Group | undefined;
    if (!group) throw new OperationOutcomeError({ ...notFound, issue: [{ severity: 'error', code: 'not-found', details: { text: `Group/${groupId} not found` } }] });
    const baseUrl = this.deps.baseUrl();
    const members = new Set<string>();
    for (const member of group.member ?? []) {
      if (member.inactive) continue;
      let ref = member.entity?.reference ?? '';
      if (ref.startsWith(`${baseUrl}/`)) ref = ref.slice(baseUrl.length + 1);
      if (!/^Patient\/[^/]+$/.test(ref)) {
        errors.push(outcome('error', 'not-supported', `Group member ${ref || '(no reference)'} is not a Patient on this server: not exported`));
      } else if (!this.deps.repo.peek('Patient', ref.slice('Patient/'.length))) {
        errors.push(outcome('error', 'not-found', `Group member ${ref} does not exist on this server`));
      } else {
        members.add(ref);
      }
    }
    return members;
  }

  /** Whether the last version of a deleted resource lay in one of these patients' compartments. */
  private wasInCompartment(resourceType: string, id: string, patients: ReadonlySet<string>): boolean {
    if (resourceType === 'Patient') return patients.has(`Patient/${id}`);
    const last = this.deps.repo.lastVersion(resourceType, id);
    if (!last) return false;
    for (const code of patientCompartment().get(resourceType) ?? []) {
      const expression = searchParameterFor(resourceType, code)?.expression;
      if (expression && referencesAt(last, expression).some((ref) => patients.has(ref))) return true;
    }
    return false;
  }

  private split(type: string, items: unknown[]): ExportFile[] {
    if (items.length === 0) return [];
    const max = this.deps.options.maxResourcesPerFile ?? 0;
    if (!(max > 0) || items.length <= max) return [{ type, items }];
    const files: ExportFile[] = [];
    for (let i = 0; i < items.length; i += max) files.push({ type, items: items.slice(i, i + max) });
    return files;
  }

  private status(res: Response, jobId: string): void {
    const job = this.jobs.get(jobId);
    if (!job) return sendOutcome(res, 404, outcome('error', 'not-found', 'No such export (finished and deleted, cancelled, or never started)'));
    if (job.pollsLeft > 0) {
      job.pollsLeft--;
      const done = job.polls - job.pollsLeft;
      res
        .status(202)
        .set('X-Progress', `in progress (${Math.round((100 * done) / (job.polls + 1))}%)`)
        .set('Retry-After', String(this.deps.options.retryAfterSeconds ?? 1))
        .end();
      return;
    }
    res.status(200).type('application/json').send(JSON.stringify(this.manifest(job)));
  }

  private manifest(job: ExportJob): BulkExportManifest {
    const baseUrl = this.deps.baseUrl();
    let n = 0;
    const entries = (files: ExportFile[]): BulkExportManifest['output'] =>
      files.map((f) => ({ type: f.type, url: `${baseUrl}${FILE_PATH}${job.id}/${++n}.ndjson`, count: f.items.length }));
    const output = entries(job.output);
    const error = entries(job.error);
    const deleted = entries(job.deleted);
    return {
      transactionTime: job.transactionTime,
      request: job.request,
      requiresAccessToken: this.deps.requiresAccessToken,
      output,
      error,
      ...(deleted.length ? { deleted } : {}),
    };
  }

  private cancel(res: Response, jobId: string): void {
    if (!this.jobs.delete(jobId)) return sendOutcome(res, 404, outcome('error', 'not-found', 'No such export'));
    sendOutcome(res, 202, outcome('information', 'informational', 'Export deleted'));
  }

  /** Streams one file as NDJSON, a line per item, waiting for the client when the socket is full. */
  private async file(res: Response, jobId: string, n: number): Promise<void> {
    const job = this.jobs.get(jobId);
    const file = job ? [...job.output, ...job.error, ...job.deleted][n - 1] : undefined;
    if (!file) return sendOutcome(res, 404, outcome('error', 'not-found', 'No such export file'));
    res.status(200).type(NDJSON);
    for (const item of file.items) {
      if (res.destroyed) return;
      if (!res.write(`${JSON.stringify(item)}\n`)) await Promise.race([once(res, 'drain'), once(res, 'close')]);
    }
    res.end();
  }
}

function idFrom(path: string, prefix: string): string {
  return path.slice(prefix.length);
}

function outcome(severity: 'error' | 'information', code: 'invalid' | 'not-found' | 'not-supported' | 'informational', text: string): OperationOutcome {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, details: { text } }] };
}

function sendOutcome(res: Response, status: number, body: OperationOutcome): void {
  res.status(status).type('application/fhir+json; charset=utf-8').send(JSON.stringify(body));
}

