import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A fault-injecting HTTP proxy for tests: it stands in front of a real FHIR server (the embedded one)
 * and, for chosen requests, answers with the faults a real server will not produce on demand:
 *
 * - `500`: an OperationOutcome with HTTP 500, the request not forwarded;
 * - `429-seconds` / `429-date`: HTTP 429 with Retry-After as delta-seconds / as an HTTP-date (1 s);
 * - `503-html`: HTTP 503 with an HTML body, as a load balancer sends it;
 * - `reset`: the connection reset (TCP RST) before anything is forwarded;
 * - `lost-after-commit`: forwarded, the server's full answer awaited (it has committed), then the
 *   connection reset: the client cannot know the outcome;
 * - `stall-after-commit`: forwarded and answered by the server, but the answer held back until the
 *   client gives up (its timeout).
 *
 * Faults come from a script (the next fault of the first rule matching a request) or at random at a
 * seeded rate. The random choice depends only on the seed, the method, the path with its query and how
 * often that same request was seen before, never on timing, so a run is reproducible.
 *
 * Response bodies and Location headers naming the server's origin are rewritten to the proxy's, so
 * paging links and locations lead back through the proxy whatever base URL the server advertises.
 */

export const FAULT_KINDS = ['500', '429-seconds', '429-date', '503-html', 'reset', 'lost-after-commit', 'stall-after-commit'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** The transient faults a fault rate draws from by default (stalls cost a client timeout each, so they are scripted). */
export const TRANSIENT_FAULTS: readonly FaultKind[] = ['500', '429-seconds', '429-date', '503-html', 'reset', 'lost-after-commit'];

export interface ProxiedRequest {
  method: string;
  /** Path and query as received. */
  url: string;
  body: string;
}

export interface FaultRule {
  match: (request: ProxiedRequest) => boolean;
  /** Faults for the first matching requests, in order; once used up, the rule no longer applies. */
  faults: FaultKind[];
}

export interface FaultProxyOptions {
  /** The upstream's origin, e.g. http://127.0.0.1:41234 */
  target: string;
  random?: { rate: number; seed: number; kinds?: readonly FaultKind[] };
  script?: FaultRule[];
}

export interface ProxyLogEntry {
  method: string;
  /** Path without the query (the query may name patients; tests need no more). */
  path: string;
  fault?: FaultKind;
  /** The status the client received; absent when the connection was reset or the answer held back. */
  status?: number;
  /** The request reached the server. */
  forwarded: boolean;
  /** The request's body, for a POST (transaction Bundles). */
  body?: string;
}

export interface FaultProxy {
  /** The proxy's origin; append the server's base path. */
  origin: string;
  log: ProxyLogEntry[];
  /** How many times each fault was injected. */
  injected(): Partial<Record<FaultKind, number>>;
  close(): Promise<void>;
}

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const target = new URL(options.target);
  const seen = new Map<string, number>();
  const sockets = new Set<Socket>();
  const held = new Set<http.ServerResponse>();
  const script = (options.script ?? []).map((rule) => ({ match: rule.match, faults: [...rule.faults] }));
  const log: ProxyLogEntry[] = [];
  let origin = '';

  const decide = (request: ProxiedRequest): FaultKind | undefined => {
    const rule = script.find((r) => r.faults.length > 0 && r.match(request));
    if (rule) return rule.faults.shift();
    const random = options.random;
    if (!random || random.rate <= 0) return undefined;
    const key = `${request.method} ${request.url}`;
    const n = seen.get(key) ?? 0;
    seen.set(key, n + 1);
    const [draw, pick] = uniforms(`${random.seed}|${key}|${n}`);
    if (draw >= random.rate) return undefined;
    const kinds = random.kinds ?? TRANSIENT_FAULTS;
    return kinds[Math.floor(pick * kinds.length)];
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const request: ProxiedRequest = { method: req.method ?? 'GET', url: req.url ?? '/', body: body.toString('utf8') };
      const fault = decide(request);
      const entry: ProxyLogEntry = {
        method: request.method,
        path: request.url.split('?')[0],
        fault,
        forwarded: false,
        ...(request.method === 'POST' ? { body: request.body } : {}),
      };
      log.push(entry);
      const reply = (status: number, headers: Record<string, string>, text: string) => {
        entry.status = status;
        res.writeHead(status, { ...headers, 'content-length': String(Buffer.byteLength(text)) });
        res.end(text);
      };
      const outcome = (code: string) =>
        JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics: 'injected by the fault proxy' }] });
      switch (fault) {
        case '500':
          return reply(500, { 'content-type': 'application/fhir+json' }, outcome('exception'));
        case '429-seconds':
          return reply(429, { 'content-type': 'application/fhir+json', 'retry-after': '1' }, outcome('throttled'));
        case '429-date':
          return reply(429, { 'content-type': 'application/fhir+json', 'retry-after': new Date(Date.now() + 1000).toUTCString() }, outcome('throttled'));
        case '503-html':
          return reply(503, { 'content-type': 'text/html' }, '<html><head><title>503 Service Unavailable</title></head><body><h1>Service Unavailable</h1></body></html>');
        case 'reset':
          return resetConnection(req.socket);
      }
      forward(req, body, (upstream) => {
        entry.forwarded = true;
        if (fault === 'lost-after-commit') return resetConnection(req.socket);
        if (fault === 'stall-after-commit') {
          held.add(res);
          res.on('close', () => held.delete(res));
          return;
        }
        if (!upstream) return resetConnection(req.socket);
        const text = upstream.body.split(target.origin).join(origin);
        const headers: Record<string, string> = {};
        for (const [name, value] of Object.entries(upstream.headers)) {
          if (value === undefined || HOP_BY_HOP.has(name)) continue;
          headers[name] = (Array.isArray(value) ? value.join(', ') : value).split(target.origin).join(origin);
        }
        reply(upstream.status, headers, text);
      });
    });
  });

  const forward = (
    req: http.IncomingMessage,
    body: Buffer,
    done: (upstream: { status: number; headers: http.IncomingHttpHeaders; body: string } | undefined) => void,
  ) => {
    const headers: http.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value;
    headers['content-length'] = String(body.length);
    const upstream = http.request(
      { protocol: target.protocol, hostname: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent: false },
      (upRes) => {
        const parts: Buffer[] = [];
        upRes.on('data', (c: Buffer) => parts.push(c));
        upRes.on('end', () => done({ status: upRes.statusCode ?? 502, headers: upRes.headers, body: Buffer.concat(parts).toString('utf8') }));
        upRes.on('error', () => done(undefined));
      },
    );
    upstream.on('error', () => done(undefined));
    upstream.end(body);
  };

  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    origin,
    log,
    injected: () => {
      const counts: Partial<Record<FaultKind, number>> = {};
      for (const e of log) if (e.fault) counts[e.fault] = (counts[e.fault] ?? 0) + 1;
      return counts;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of held) res.destroy();
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'upgrade', 'proxy-connection', 'te', 'trailer']);

/** A TCP reset where the platform offers one (Node >= 16.17), else an abrupt close. */
function resetConnection(socket: Socket): void {
  const withReset = socket as Socket & { resetAndDestroy?: () => Socket };
  if (typeof withReset.resetAndDestroy === 'function') withReset.resetAndDestroy();
  else socket.destroy();
}

/** Two uniforms in [0, 1) from a key: the same key always gives the same pair. */
function uniforms(key: string): [number, number] {
  const digest = createHash('sha256').update(key).digest();
  return [digest.readUInt32BE(0) / 2 ** 32, digest.readUInt32BE(4) / 2 ** 32];
}
