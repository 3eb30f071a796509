import type { Bundle, BundleEntry, CarePlan, Device, RiskAssessment } from 'fhir/r4.js';
import { AdapterError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { FhirClient } from '../fhir/client.js';
import { chunk } from '../core/chunk.js';
import { assessmentEntries, fullUrlFor, type AssessmentPlan } from './plan.js';
import { buildDevice, type WritebackModel } from './resources.js';

export interface WriteResult {
  /** RiskAssessments created by this write (each with its Provenance). */
  created: number;
  /** Plans whose RiskAssessment was already on the server: nothing written for them. */
  alreadyPresent: number;
  /** Identifier values of the plans in each group. */
  createdIdentifiers: string[];
  presentIdentifiers: string[];
  /**
   * CarePlan proposals sent with the assessments: identifier values created by this write, those already
   * there (the conditional create matched), and the earlier drafts revoked (CarePlan ids).
   */
  carePlans: { created: string[]; alreadyPresent: string[]; revoked: string[] };
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
 * CarePlan proposals travel in the same transaction as the RiskAssessment they answer (their entries
 * come from the pure write plan: conditional create on the proposal's identifier, Provenance under a
 * deterministic id, revocations of older drafts under If-Match). When the RiskAssessment is already on
 * the server (a re-run, or a shadow run before), the proposal is still sent, pointing at the stored
 * RiskAssessment instead of the transaction's urn:uuid. A 412 on a revocation (a clinician edited the
 * draft since it was read) fails the transaction as a whole; the caller re-reads and re-plans.
 *
 * Unknown outcomes. When a transaction (or the Device create) fails in a way that leaves its outcome
 * unknown (500, 502, 504, timeout, connection lost: the server may have committed it and the answer got
 * lost), the client's transport waits its backoff and the writer reads back by identifier what landed:
 * plans found are counted as created by this write (the batch is never in flight twice, so nobody else
 * wrote them), and only the rest is sent again, within the same retry budget as reads. A plan is
 * recognised by its RiskAssessment's identifier, or, when only its CarePlan was sent, by the CarePlan's:
 * a lost answer never duplicates either. A plan that only revokes is sent again; its If-Match then fails
 * if the first attempt landed, and the caller's re-plan sees the revocation. Failures where
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
    return new Set((await this.findByIdentifier<RiskAssessment>('RiskAssessment', values, onRequest)).keys());
  }

  /** The server ids of the resources of `type` carrying these identifier values (ours), by value. */
  private async findByIdentifier<T extends RiskAssessment | CarePlan>(type: T['resourceType'], values: string[], onRequest: () => void): Promise<Map<string, string>> {
    const present = new Map<string, string>();
    const wanted = new Set(values);
    let duplicates = 0;
    for (const part of chunk(values, 50)) {
      const params = { identifier: part.map((v) => `${this.identifierSystem}|${v}`).join(','), _count: String(part.length * 2), _elements: 'identifier' };
      for await (const page of this.client.search<T>(type, params)) {
        onRequest();
        for (const resource of page.resources) {
          for (const id of resource.identifier ?? []) {
            if (id.system !== this.identifierSystem || !id.value || !wanted.has(id.value)) continue;
            if (present.has(id.value)) duplicates++;
            else if (resource.id) present.set(id.value, resource.id);
          }
        }
      }
    }
    // Counts only: identifiers are derived from patient references.
    if (duplicates) this.logger.warn({ duplicates, resourceType: type }, 'resources found more than once under the same identifier');
    return present;
  }

  async write(plans: AssessmentPlan[]): Promise<WriteResult> {
    const result: WriteResult = { created: 0, alreadyPresent: 0, createdIdentifiers: [], presentIdentifiers: [], carePlans: { created: [], alreadyPresent: [], revoked: [] }, requests: 0 };
    if (plans.length === 0) return result;
    const countRequest = () => result.requests++;
    const present = await this.findByIdentifier<RiskAssessment>(
      'RiskAssessment',
      plans.map((p) => p.identifier.value),
      countRequest,
    );
    for (const plan of plans) {
      if (!present.has(plan.identifier.value)) continue;
      result.alreadyPresent++;
      result.presentIdentifiers.push(plan.identifier.value);
    }
    let pending = plans.map((plan) => writeItem(plan, present.get(plan.identifier.value))).filter((item) => item.entries.length > 0);
    if (pending.length === 0) return result;

    const landed = (item: WriteItem) => {
      if (item.sendsAssessment) {
        result.created++;
        result.createdIdentifiers.push(item.plan.identifier.value);
      }
      result.carePlans.created.push(...item.carePlanCreates);
      result.carePlans.revoked.push(...item.revokes);
    };
    const sent = () => {
      result.requests++;
    };
    sent();
    const response = await this.client.transaction(bundleOf(pending), {
      // After an attempt whose outcome is unknown: what of it landed is this write's; send the rest.
      reconcile: async () => {
        const assessments = await this.findByIdentifier<RiskAssessment>(
          'RiskAssessment',
          pending.filter((i) => i.sendsAssessment).map((i) => i.plan.identifier.value),
          countRequest,
        );
        const carePlanValues = pending.filter((i) => !i.sendsAssessment).flatMap((i) => i.carePlanCreates);
        const carePlans = carePlanValues.length ? await this.findByIdentifier<CarePlan>('CarePlan', carePlanValues, countRequest) : new Map<string, string>();
        const isLanded = (i: WriteItem) =>
          i.sendsAssessment ? assessments.has(i.plan.identifier.value) : i.carePlanCreates.some((v) => carePlans.has(v));
        pending.filter(isLanded).forEach(landed);
        pending = pending.filter((i) => !isLanded(i));
        if (pending.length === 0) return undefined;
        sent();
        return bundleOf(pending);
      },
    });
    if (!response) return result;

    const entries = response.entry ?? [];
    const expected = pending.reduce((n, i) => n + i.entries.length, 0);
    if (response.type !== 'transaction-response' || entries.length !== expected) {
      throw new AdapterError('fhir-invalid-response', `transaction response has ${entries.length} entries for ${expected} requests`);
    }
    let at = 0;
    for (const item of pending) {
      item.entries.forEach((entry, k) => {
        const index = at + k;
        const status = entries[index].response?.status ?? '';
        const ok = status.startsWith('200') || status.startsWith('201');
        if (!ok) throw new AdapterError('fhir-invalid-response', `transaction entry ${index} (${entry.request?.method} ${entry.request?.url}) answered status "${status}"`);
        if (entry.request?.method !== 'POST') return;
        const value = identifierOfCreate(entry);
        if (entry.resource?.resourceType === 'RiskAssessment') {
          if (status.startsWith('201')) {
            result.created++;
            result.createdIdentifiers.push(item.plan.identifier.value);
          } else {
            // Conditional create matched: another writer got there first. Counted, not hidden.
            result.alreadyPresent++;
            result.presentIdentifiers.push(item.plan.identifier.value);
          }
        } else if (entry.resource?.resourceType === 'CarePlan' && value) {
          (status.startsWith('201') ? result.carePlans.created : result.carePlans.alreadyPresent).push(value);
        }
      });
      result.carePlans.revoked.push(...item.revokes);
      at += item.entries.length;
    }
    return result;
  }
}

/** One plan as sent: its assessment's entries unless already stored, then its CarePlan entries. */
interface WriteItem {
  plan: AssessmentPlan;
  sendsAssessment: boolean;
  entries: BundleEntry[];
  /** Identifier values of the CarePlans it creates (conditional creates). */
  carePlanCreates: string[];
  /** Ids of the CarePlans it revokes. */
  revokes: string[];
}

function writeItem(plan: AssessmentPlan, storedAssessmentId: string | undefined): WriteItem {
  const sendsAssessment = storedAssessmentId === undefined;
  const carePlans = plan.carePlans ?? [];
  let careEntries = carePlans.flatMap((c) => c.plan.entries);
  if (!sendsAssessment && careEntries.length) {
    // The RiskAssessment is not in this transaction: name the stored one instead of its urn:uuid.
    const urn = fullUrlFor(plan.identifier.value);
    const stored = `RiskAssessment/${storedAssessmentId}`;
    careEntries = careEntries.map((e) => JSON.parse(JSON.stringify(e).split(JSON.stringify(urn)).join(JSON.stringify(stored))) as BundleEntry);
  }
  return {
    plan,
    sendsAssessment,
    entries: [...(sendsAssessment ? assessmentEntries(plan) : []), ...careEntries],
    carePlanCreates: carePlans.filter((c) => c.plan.created).map((c) => c.identifier.value),
    revokes: carePlans.flatMap((c) => c.plan.revoked.map((r) => r.id)),
  };
}

function bundleOf(items: WriteItem[]): Bundle {
  return { resourceType: 'Bundle', type: 'transaction', entry: items.flatMap((i) => i.entries) };
}

/** The identifier value a conditional create names (`identifier=<system>|<value>`). */
function identifierOfCreate(entry: BundleEntry): string | undefined {
  const m = /^identifier=[^|]*\|(.+)$/.exec(entry.request?.ifNoneExist ?? '');
  return m?.[1];
}

function locationOf(response: Bundle, index: number, type: string): string {
  const entry = response.entry?.[index];
  const location = entry?.response?.location ?? (entry?.resource?.id ? `${type}/${entry.resource.id}` : undefined);
  const match = location?.match(new RegExp(`(?:^|/)${type}/([A-Za-z0-9\\-.]{1,64})`));
  if (!match) throw new AdapterError('fhir-invalid-response', `transaction response gives no ${type} location`);
  return `${type}/${match[1]}`;
}
