import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Clock } from '../../core/clock.js';

/**
 * A scripted HTTP peer for tests: a real node:http server whose answers the test decides request by
 * request, for the faults a real FHIR server will not produce on demand (429s, drops, stalls).
 */

export interface RecordedRequest {
  method: string;
  /** Path and query as received. */
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export type PeerHandler = (
  request: RecordedRequest,
  res: http.ServerResponse,
  context: { index: number; socket: import('node:net').Socket; baseUrl: string },
) => void | Promise<void>;

export interface ScriptedPeer {
  baseUrl: string;
  origin: string;
  requests: RecordedRequest[];
  /** Highest number of requests being handled at the same time. */
  maxInFlight: number;
  close(): Promise<void>;
}

export async function startPeer(handler: PeerHandler, basePath = '/fhir'): Promise<ScriptedPeer> {
  let inFlight = 0;
  const sockets = new Set<import('node:net').Socket>();
  const peer: ScriptedPeer = {
    baseUrl: '',
    origin: '',
    requests: [],
    maxInFlight: 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const recorded: RecordedRequest = {
        method: req.method ?? 'GET',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      const index = peer.requests.push(recorded) - 1;
      inFlight += 1;
      peer.maxInFlight = Math.max(peer.maxInFlight, inFlight);
      let done = false;
      const finish = () => {
        if (!done) {
          done = true;
          inFlight -= 1;
        }
      };
      res.on('close', finish);
      req.socket.on('close', finish);
      Promise.resolve(handler(recorded, res, { index, socket: req.socket, baseUrl: peer.baseUrl })).catch((err) => {
        res.statusCode = 599;
        res.end(String(err));
      });
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  peer.origin = `http://127.0.0.1:${port}`;
  peer.baseUrl = `${peer.origin}${basePath}`;
  return peer;
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/fhir+json', ...headers });
  res.end(JSON.stringify(body));
}

export function searchset(resources: object[], next?: string, included: object[] = []): object {
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    link: next ? [{ relation: 'next', url: next }] : [],
    entry: [
      ...resources.map((resource) => ({ resource, search: { mode: 'match' } })),
      ...included.map((resource) => ({ resource, search: { mode: 'include' } })),
    ],
  };
}

/** A Clock whose sleeps return at once and are recorded, so tests assert delays without waiting. */
export function recordingClock(now = new Date('2025-01-15T12:00:00Z')): Clock & { sleeps: number[] } {
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => new Date(now),
    sleep: async (ms: number) => {
      sleeps.push(ms);
    },
  };
}
