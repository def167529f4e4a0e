/**
 * Client traffic for a local fleet, playing the NLB's clients: new TLS connections in a loop
 * (full handshakes, a small echo round trip, close) and long-lived sessions streaming bytes both
 * ways, each preceded by the PROXY v2 header the NLB would prepend (the fleet trusts loopback as
 * its NLB, so the allowlist decides on the address carried in the header). Clients verify the
 * gateway like real ones: the chain to the CA and the server name. Everything is counted, so the
 * demo and the benchmark report measured figures only.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { encodeProxyV2 } from '../lib/net/proxy-protocol.ts';
import { normaliseSerial } from '../lib/pki/serial.ts';

/** A gateway task's TLS listener. */
export interface TrafficEndpoint {
  taskId: string;
  host: string;
  port: number;
}

/** One route as a client uses it. */
export interface TrafficRoute {
  /** Label in statistics (`mtls`, `passthrough`). */
  name: string;
  serverName: string;
  /** CA bundle the client verifies the served chain with. */
  caPem: string;
  /** Client certificate presented when the server asks (mTLS). `keyPem` is secret. */
  client?: { certificatePem: string; keyPem: string };
}

export interface ConnectOptions {
  endpoint: TrafficEndpoint;
  route: TrafficRoute;
  /** Client address carried in the PROXY v2 header; absent: no header (a direct client). */
  source?: string;
  /** Default 5000. */
  timeoutMs?: number;
}

export type ConnectOutcome =
  | { ok: true; serial: string; ms: number }
  | { ok: false; stage: 'connect' | 'handshake' | 'echo'; error: string; ms: number };

function proxyHeader(source: string, endpoint: TrafficEndpoint): Buffer {
  const v6 = net.isIPv6(source);
  return encodeProxyV2({
    source: { address: source, port: 1024 + Math.floor(Math.random() * 60_000) },
    destination: { address: v6 ? '::1' : endpoint.host, port: endpoint.port },
  });
}

/** Opens the TCP connection, sends the PROXY header, starts TLS; the caller waits for `secureConnect`. */
function openTls(options: ConnectOptions): { raw: net.Socket; socket: tls.TLSSocket } {
  const { endpoint, route } = options;
  const raw = net.connect({ host: endpoint.host, port: endpoint.port });
  raw.setNoDelay(true);
  if (options.source !== undefined) raw.write(proxyHeader(options.source, endpoint));
  const socket = tls.connect({
    socket: raw,
    servername: route.serverName,
    ca: route.caPem,
    ...(route.client === undefined ? {} : { cert: route.client.certificatePem, key: route.client.keyPem }),
  });
  return { raw, socket };
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' ? code : error.message.split('\n')[0]!.slice(0, 200);
  }
  return String(error);
}

/**
 * One new connection: TCP, PROXY header, full TLS handshake (verified), 64 random bytes echoed
 * back, close. Never rejects: failures come back as `{ ok: false, stage }`.
 */
export function connectOnce(options: ConnectOptions): Promise<ConnectOutcome> {
  const started = performance.now();
  const timeoutMs = options.timeoutMs ?? 5000;
  return new Promise<ConnectOutcome>((resolve) => {
    let stage: 'connect' | 'handshake' | 'echo' = 'connect';
    let serial = '';
    let settled = false;
    const { raw, socket } = openTls(options);
    const finish = (outcome: ConnectOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      raw.destroy();
      resolve(outcome);
    };
    const fail = (error: string) => finish({ ok: false, stage, error, ms: performance.now() - started });
    const timer = setTimeout(() => fail(`timeout after ${timeoutMs} ms`), timeoutMs);
    raw.once('connect', () => {
      stage = 'handshake';
    });
    const probe = randomBytes(64);
    let echoed = Buffer.alloc(0);
    socket.once('secureConnect', () => {
      stage = 'echo';
      serial = normaliseSerial(socket.getPeerX509Certificate()?.serialNumber ?? '') ?? '';
      socket.write(probe);
    });
    socket.on('data', (chunk: Buffer) => {
      echoed = Buffer.concat([echoed, chunk]);
      if (echoed.length < probe.length) return;
      if (echoed.subarray(0, probe.length).equals(probe)) {
        finish({ ok: true, serial, ms: performance.now() - started });
      } else {
        fail('echo mismatch');
      }
    });
    socket.once('error', (error) => fail(describe(error)));
    raw.once('error', (error) => fail(describe(error)));
    socket.once('close', () => fail('closed by peer'));
  });
}

/** A session that streams bytes both ways until closed. */
export interface LongLivedSession {
  readonly endpoint: TrafficEndpoint;
  readonly route: string;
  readonly source: string | undefined;
  /** Bytes sent and verified as echoed. */
  bytesEchoed(): number;
  /** `undefined` while open (or closed by us); the reason otherwise. */
  droppedReason(): string | undefined;
  /** Resolves once the session is established (TLS done). Rejects when it could not be. */
  readonly established: Promise<void>;
  /** Resolves when the socket closed, for whatever reason. */
  readonly closed: Promise<void>;
  close(): void;
}

/**
 * Opens a long-lived session: after the handshake it writes `chunkBytes` every `intervalMs` and
 * checks that exactly those bytes come back. A close it did not ask for (or an echo that does
 * not match) is recorded as a drop.
 */
export function openLongLived(
  options: ConnectOptions & { intervalMs?: number; chunkBytes?: number },
): LongLivedSession {
  const intervalMs = options.intervalMs ?? 200;
  const chunkBytes = options.chunkBytes ?? 1024;
  const { raw, socket } = openTls(options);
  let outstanding = Buffer.alloc(0);
  let echoedBytes = 0;
  let dropped: string | undefined;
  let closing = false;
  let ticker: NodeJS.Timeout | undefined;
  const established = new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('close', () => reject(new Error(dropped ?? 'closed before the handshake completed')));
  });
  established.catch(() => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const drop = (reason: string) => {
    if (closing || dropped !== undefined) return;
    dropped = reason;
    socket.destroy();
  };
  socket.once('secureConnect', () => {
    ticker = setInterval(() => {
      const chunk = randomBytes(chunkBytes);
      outstanding = Buffer.concat([outstanding, chunk]);
      // A session whose echo lags far behind is as good as dropped for its user.
      if (outstanding.length > chunkBytes * 50) drop('echo stalled');
      else socket.write(chunk);
    }, intervalMs);
  });
  socket.on('data', (chunk: Buffer) => {
    if (!outstanding.subarray(0, chunk.length).equals(chunk)) {
      drop('echo mismatch');
      return;
    }
    outstanding = outstanding.subarray(chunk.length);
    echoedBytes += chunk.length;
  });
  socket.on('error', (error) => drop(describe(error)));
  raw.on('error', (error) => drop(describe(error)));
  socket.once('close', () => {
    if (ticker) clearInterval(ticker);
    if (!closing && dropped === undefined) dropped = 'closed by peer';
  });
  return {
    endpoint: options.endpoint,
    route: options.route.name,
    source: options.source,
    bytesEchoed: () => echoedBytes,
    droppedReason: () => dropped,
    established,
    closed,
    close() {
      if (closing) return;
      closing = true;
      if (ticker) clearInterval(ticker);
      socket.end();
      setTimeout(() => socket.destroy(), 500).unref();
    },
  };
}

export interface TrafficOptions {
  /** The tasks to spread connections over (read again for every connection). */
  endpoints: () => readonly TrafficEndpoint[];
  routes: readonly TrafficRoute[];
  /** Client address in the PROXY header; absent: no header. */
  source?: string;
  /** Parallel connection loops. Default 2. */
  workers?: number;
  /** Pause between two connections of one loop. Default 20 ms. */
  pauseMs?: number;
  /** Long-lived sessions per route, spread over the tasks. Default 1 per task and route. */
  longLivedPerRoute?: number;
  /** Per-connection deadline. Default 5000 ms. */
  timeoutMs?: number;
}

/** What one phase of traffic saw. */
export interface TrafficStats {
  handshakes: number;
  failedHandshakes: number;
  /** The first few failures, for the report (`task route stage: error`). */
  failures: string[];
  byRoute: Record<string, { handshakes: number; failed: number }>;
  longLived: number;
  droppedLongLived: number;
  longLivedBytes: number;
  /** Per served serial, per task: when a client first saw it (ms since the epoch). */
  firstSeen: Record<string, Record<string, number>>;
}

/**
 * New connections in loops plus long-lived sessions, until `stop()`. Counters cover the whole
 * run; `stats()` can be read at any time.
 *
 * @example
 * const traffic = new TrafficGenerator({ endpoints: () => fleet.endpoints(), routes, source: '203.0.113.10' });
 * await traffic.start();
 * … rotate …
 * const stats = await traffic.stop();
 */
export class TrafficGenerator {
  readonly #options: TrafficOptions;
  #running = false;
  #loops: Promise<void>[] = [];
  #sessions: LongLivedSession[] = [];
  #next = 0;
  #stats: TrafficStats = {
    handshakes: 0,
    failedHandshakes: 0,
    failures: [],
    byRoute: {},
    longLived: 0,
    droppedLongLived: 0,
    longLivedBytes: 0,
    firstSeen: {},
  };

  constructor(options: TrafficOptions) {
    if (options.routes.length === 0) throw new Error('traffic needs at least one route');
    this.#options = options;
  }

  /** Opens the long-lived sessions (waits until each is established), then starts the loops. */
  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    const endpoints = this.#options.endpoints();
    if (endpoints.length === 0) throw new Error('traffic needs at least one endpoint');
    for (const route of this.#options.routes) {
      const count = this.#options.longLivedPerRoute ?? endpoints.length;
      for (let i = 0; i < count; i++) {
        this.#sessions.push(
          openLongLived({
            endpoint: endpoints[i % endpoints.length]!,
            route,
            ...(this.#options.source === undefined ? {} : { source: this.#options.source }),
            ...(this.#options.timeoutMs === undefined ? {} : { timeoutMs: this.#options.timeoutMs }),
          }),
        );
      }
    }
    // A session that cannot be established counts as dropped (its reason is kept), it does not abort.
    await Promise.allSettled(this.#sessions.map((s) => s.established));
    const workers = this.#options.workers ?? 2;
    for (let i = 0; i < workers; i++) this.#loops.push(this.#loop());
  }

  async #loop(): Promise<void> {
    const pauseMs = this.#options.pauseMs ?? 20;
    while (this.#running) {
      const endpoints = this.#options.endpoints();
      const routes = this.#options.routes;
      const n = this.#next++;
      const endpoint = endpoints[n % endpoints.length];
      const route = routes[Math.floor(n / Math.max(1, endpoints.length)) % routes.length]!;
      if (endpoint !== undefined) {
        const outcome = await connectOnce({
          endpoint,
          route,
          ...(this.#options.source === undefined ? {} : { source: this.#options.source }),
          ...(this.#options.timeoutMs === undefined ? {} : { timeoutMs: this.#options.timeoutMs }),
        });
        this.#record(endpoint, route, outcome);
      }
      if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  }

  #record(endpoint: TrafficEndpoint, route: TrafficRoute, outcome: ConnectOutcome): void {
    const stats = this.#stats;
    stats.handshakes += 1;
    stats.byRoute[route.name] ??= { handshakes: 0, failed: 0 };
    const perRoute = stats.byRoute[route.name]!;
    perRoute.handshakes += 1;
    if (outcome.ok) {
      stats.firstSeen[outcome.serial] ??= {};
      stats.firstSeen[outcome.serial]![endpoint.taskId] ??= Date.now();
    } else {
      stats.failedHandshakes += 1;
      perRoute.failed += 1;
      if (stats.failures.length < 10) {
        stats.failures.push(`${endpoint.taskId} ${route.name} ${outcome.stage}: ${outcome.error}`);
      }
    }
  }

  /** The counters so far (long-lived figures as of now). */
  stats(): TrafficStats {
    const sessions = this.#sessions;
    return {
      ...this.#stats,
      failures: [...this.#stats.failures],
      byRoute: structuredClone(this.#stats.byRoute),
      firstSeen: structuredClone(this.#stats.firstSeen),
      longLived: sessions.length,
      droppedLongLived: sessions.filter((s) => s.droppedReason() !== undefined).length,
      longLivedBytes: sessions.reduce((sum, s) => sum + s.bytesEchoed(), 0),
    };
  }

  /** Long-lived sessions, for callers that check them one by one. */
  sessions(): readonly LongLivedSession[] {
    return this.#sessions;
  }

  /** Stops the connection loops (each finishes its current connection); sessions stay open. */
  async pauseLoops(): Promise<TrafficStats> {
    this.#running = false;
    await Promise.all(this.#loops);
    this.#loops = [];
    return this.stats();
  }

  /** Stops the loops (each finishes its current connection), closes the sessions, returns the final counters. */
  async stop(): Promise<TrafficStats> {
    this.#running = false;
    await Promise.all(this.#loops);
    const stats = this.stats();
    for (const session of this.#sessions) session.close();
    await Promise.all(
      this.#sessions.map((s) =>
        Promise.race([s.closed, new Promise<void>((resolve) => setTimeout(resolve, 1000).unref())]),
      ),
    );
    return stats;
  }
}
