import type { Bundle, Device, RiskAssessment } from 'fhir/r4.js';
import { AdapterError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { FhirClient } from '../fhir/client.js';
import { chunk } from '../core/chunk.js';
import { buildTransactionBundle, type AssessmentPlan } from './plan.js';
import { buildDevice, type WritebackModel } from './resources.js';

export interface WriteResult {
  /** RiskAssessments created by this write (each with its Provenance). */
  created: number;
  /** Plans whose RiskAssessment was already on the server: nothing written for them. */
  alreadyPresent: number;
  /** Identifier values of the plans in each group. */
  createdIdentifiers: string[];
  presentIdentifiers: string[];
  requests: number;
}

/** The part of a FHIR client the writer needs; FhirClient satisfies it. */
export type WriteClient = Pick<FhirClient, 'search' | 'transaction'>;

/**
 * Sends write plans. Idempotency has two layers:
 * 1. before writing, one search per chunk finds the batch's identifiers already on the server, and those
 *    plans are dropped (Provenance has no identifier, so it must not be re-sent for an existing assessment);
 * 2. the transaction's RiskAssessments are conditional creates, so even a racing writer cannot duplicate one.
 * A transaction is all or nothing; its response is checked entry by entry, and anything unexpected is an
 * error rather than a silently partial success.
 *
 * Unknown outcomes. When a transaction (or the Device create) fails in a way that leaves its outcome
 * unknown (500, 502, 504, timeout, connection lost: the server may have committed it and the answer got
 * lost), the client's transport waits its backoff and the writer reads back by identifier what landed:
 * plans found are counted as created by this write (the batch is never in flight twice, so nobody else
 * wrote them), and only the rest is sent again, within the same retry budget as reads. Failures where
 * the server certainly did nothing (429, 503, connection refused) are resent as they are. The race with
 * an attempt still committing while the read-back runs is described in fhir/transport.ts; should it
 * ever let a second copy in, the identifier pre-check logs the duplicate.
 */
export class FhirWriter {
  private readonly devices = new Map<string, string>();

  constructor(
    private readonly client: WriteClient,
    private readonly identifierSystem: string,
    private readonly logger: Logger = silentLogger,
  ) {}

  /** The model's Device reference, created once (conditional create on its identifier, read back when its outcome is unknown). */
  async ensureDevice(model: WritebackModel): Promise<string> {
    const device = buildDevice(model, this.identifierSystem);
    const identifier = device.identifier![0];
    const key = `${identifier.system}|${identifier.value}`;
    const cached = this.devices.get(key);
    if (cached) return cached;
    let reference = await this.findDevice(key);
    if (!reference) {
      const bundle: Bundle = {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [{ resource: device, request: { method: 'POST', url: 'Device', ifNoneExist: `identifier=${key}` } }],
      };
      let found: string | undefined;
      const response = await this.client.transaction(bundle, {
        reconcile: async () => {
          found = await this.findDevice(key);
          return found ? undefined : bundle;
        },
      });
      reference = response ? locationOf(response, 0, 'Device') : found!;
      this.logger.info({ model: model.id, version: model.version, readBack: !response }, 'model Device registered');
    }
    this.devices.set(key, reference);
    return reference;
  }

  private async findDevice(key: string): Promise<string | undefined> {
    for await (const page of this.client.search<Device>('Device', { identifier: key })) {
      const found = page.resources.find((d) => d.id);
      if (found) return `Device/${found.id}`;
    }
    return undefined;
  }

  /** Identifier values (of `values`) that already have a RiskAssessment on the server. */
  async existingAssessments(values: string[], onRequest: () => void = () => undefined): Promise<Set<string>> {
    const present = new Set<string>();
    const wanted = new Set(values);
    let duplicates = 0;
    for (const part of chunk(values, 50)) {
      const params = { identifier: part.map((v) => `${this.identifierSystem}|${v}`).join(','), _count: String(part.length * 2), _elements: 'identifier' };
      for await (const page of this.client.search<RiskAssessment>('RiskAssessment', params)) {
        onRequest();
        for (const ra of page.resources) {
          for (const id of ra.identifier ?? []) {
            if (id.system !== this.identifierSystem || !id.value || !wanted.has(id.value)) continue;
            if (present.has(id.value)) duplicates++;
            present.add(id.value);
          }
        }
      }
    }
    // Counts only: identifiers are derived from patient references.
    if (duplicates) this.logger.warn({ duplicates }, 'RiskAssessments found more than once under the same identifier');
    return present;
  }

  async write(plans: AssessmentPlan[]): Promise<WriteResult> {
    const result: WriteResult = { created: 0, alreadyPresent: 0, createdIdentifiers: [], presentIdentifiers: [], requests: 0 };
    if (plans.length === 0) return result;
    const countRequest = () => result.requests++;
    const present = await this.existingAssessments(
      plans.map((p) => p.identifier.value),
      countRequest,
    );
    let pending = plans.filter((p) => !present.has(p.identifier.value));
    result.alreadyPresent = plans.length - pending.length;
    result.presentIdentifiers = plans.filter((p) => present.has(p.identifier.value)).map((p) => p.identifier.value);
    if (pending.length === 0) return result;

    const sent = () => {
      result.requests++;
    };
    sent();
    const response = await this.client.transaction(buildTransactionBundle(pending), {
      // After an attempt whose outcome is unknown: what of it landed is this write's; send the rest.
      reconcile: async () => {
        const landed = await this.existingAssessments(
          pending.map((p) => p.identifier.value),
          countRequest,
        );
        for (const plan of pending) {
          if (!landed.has(plan.identifier.value)) continue;
          result.created++;
          result.createdIdentifiers.push(plan.identifier.value);
        }
        pending = pending.filter((p) => !landed.has(p.identifier.value));
        if (pending.length === 0) return undefined;
        sent();
        return buildTransactionBundle(pending);
      },
    });
    if (!response) return result;

    const entries = response.entry ?? [];
    if (response.type !== 'transaction-response' || entries.length !== pending.length * 2) {
      throw new AdapterError('fhir-invalid-response', `transaction response has ${entries.length} entries for ${pending.length * 2} requests`);
    }
    pending.forEach((plan, i) => {
      const status = entries[2 * i].response?.status ?? '';
      const provenanceStatus = entries[2 * i + 1].response?.status ?? '';
      if (!provenanceStatus.startsWith('200') && !provenanceStatus.startsWith('201')) {
        throw new AdapterError('fhir-invalid-response', `transaction entry ${2 * i + 1} (Provenance) answered status "${provenanceStatus}"`);
      }
      if (status.startsWith('201')) {
        result.created++;
        result.createdIdentifiers.push(plan.identifier.value);
      } else if (status.startsWith('200')) {
        // Conditional create matched: another writer got there first. Counted, not hidden.
        result.alreadyPresent++;
        result.presentIdentifiers.push(plan.identifier.value);
      } else {
        throw new AdapterError('fhir-invalid-response', `transaction entry ${2 * i} answered status "${status}"`);
      }
    });
    return result;
  }
}

function locationOf(response: Bundle, index: number, type: string): string {
  const entry = response.entry?.[index];
  const location = entry?.response?.location ?? (entry?.resource?.id ? `${type}/${entry.resource.id}` : undefined);
  const match = location?.match(new RegExp(`(?:^|/)${type}/([A-Za-z0-9\\-.]{1,64})`));
  if (!match) throw new AdapterError('fhir-invalid-response', `transaction response gives no ${type} location`);
  return `${type}/${match[1]}`;
}
