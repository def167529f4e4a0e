/**
 * The gateway's log path under a burst, against a real HAProxy: every connection of a burst at
 * `maxconn` leaves exactly one JSON line and HAProxy drops none (`DroppedLogs` stays 0), because
 * lines wait in HAProxy's ring while the sidecar's sink writes them (log-sink.ts). When the ring is
 * made too small for a stalled sink, HAProxy announces the overflow in the ring itself ("N events
 * dropped", not in `DroppedLogs`) and the sink counts it: the signal to alarm on.
 *
 * Measured on HAProxy's own stdout (a pipe read by this process, what this path replaces): a burst
 * of 2000 refusals left 309 lines on 2.6.12 (DroppedLogs 1691), one of 600 left 386 on 3.2.0
 * (DroppedLogs 214); through the ring, 2000 and 600 lines, DroppedLogs 0.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRONTEND, REFUSAL } from '../../proxy/haproxy/index.ts';
import { parseShowInfo } from '../../proxy/haproxy/runtime-parsers.ts';
import { startLogSink } from '../../proxy/sidecar/log-sink.ts';
import { MetricsRegistry } from '../../proxy/sidecar/metrics.ts';
import { buildClientHello } from '../support/client-hello.ts';
import { type GatewayHarness, startGateway } from '../support/gateway.ts';
import { HAPROXY } from '../support/haproxy.ts';

const MAXCONN = 2000;
/** A name no route serves: each connection is refused at once, after its hello. */
const HELLO = buildClientHello({ serverName: 'nowhere.example.test' });

let gw: GatewayHarness;
/** The same gateway with the smallest ring allowed, for the accounting test. */
let small: GatewayHarness;

beforeAll(async () => {
  const config = {
    allowLoopbackDestinations: true,
    limits: {
      maxconn: MAXCONN,
      inspectDelayMs: 3000,
      perSource: { maxConnections: null, maxConnectionRate: null },
    },
    routes: [{ serverName: 'app.example.test', allowedDestinations: ['127.0.0.0/8'] }],
  };
  [gw, small] = await Promise.all([
    startGateway({ config: { fleet: 'logging', ...config }, allowlist: ['127.0.0.0/8'] }),
    startGateway({
      config: { fleet: 'logging-small', ...config, accessLog: { bufferBytes: 64 * 1024 } },
      allowlist: ['127.0.0.0/8'],
    }),
  ]);
}, 60_000);

afterAll(async () => {
  await Promise.all([gw?.close(), small?.close()]);
});

/** Opens `count` connections at once, each sending one hello; resolves when all were closed. */
async function burst(harness: GatewayHarness, count: number): Promise<void> {
  await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<void>((resolve) => {
          const socket = net.connect({ host: '127.0.0.1', port: harness.ports.tls });
          socket.on('error', () => {});
          socket.once('connect', () => socket.write(HELLO));
          socket.once('close', () => resolve());
          socket.setTimeout(10_000, () => socket.destroy());
        }),
    ),
  );
}

async function workerInfo(harness: GatewayHarness) {
  return parseShowInfo((await harness.admin('show info')).trim());
}

async function droppedLogs(harness: GatewayHarness): Promise<number> {
  return Number((await workerInfo(harness)).fields['DroppedLogs']);
}

/** Connections fe_tls accepted so far (`show stat` stot): what each needs a line for. */
async function accepted(harness: GatewayHarness): Promise<number> {
  const row = (await harness.admin('show stat'))
    .split('\n')
    .find((l) => l.startsWith(`${FRONTEND.tls},FRONTEND,`));
  return Number(row?.split(',')[7]);
}

function tlsLines(harness: GatewayHarness, since: number): number {
  return harness
    .logs()
    .slice(since)
    .filter((l) => l.frontend === FRONTEND.tls).length;
}

function noRouteLines(harness: GatewayHarness, since: number): number {
  return harness
    .logs()
    .slice(since)
    .filter((l) => l.frontend === FRONTEND.tls && l.refusal === REFUSAL.noRoute).length;
}

describe(`access log under a burst (${HAPROXY.label})`, () => {
  it('logs every connection of a burst at maxconn, one JSON line each, and drops none', async () => {
    const since = gw.logs().length;
    const linesBefore = gw.sink.counts().lines;
    const acceptedBefore = await accepted(gw);
    await burst(gw, MAXCONN);
    expect((await accepted(gw)) - acceptedBefore).toBe(MAXCONN);
    await expect.poll(() => noRouteLines(gw, since), { timeout: 10_000 }).toBe(MAXCONN);
    expect(await droppedLogs(gw)).toBe(0);
    // Every line the sink wrote is one of them, and parses (the harness checks all at close).
    expect(gw.sink.counts().lines - linesBefore).toBe(MAXCONN);
    expect(gw.sink.counts().wrapped).toBe(0);
    expect(gw.haproxy.lines).toEqual([]);
  });

  it('counts the refusals by listener and reason, and exports them with the dropped lines', async () => {
    const since = gw.logs().length;
    await burst(gw, 50);
    await expect.poll(() => noRouteLines(gw, since), { timeout: 5000 }).toBe(50);
    const refusals = gw.sink.counts().refusals.get(`${FRONTEND.tls}\u0000${REFUSAL.noRoute}`);
    expect(refusals).toBe(noRouteLines(gw, 0));
    gw.sink.observeDropped((await workerInfo(gw)).pid, await droppedLogs(gw));
    const registry = new MetricsRegistry();
    gw.sink.contributor(registry);
    const text = registry.render();
    expect(text).toContain(
      `portcullis_gateway_refusals_total{frontend="fe_tls",reason="no-route"} ${refusals}`,
    );
    expect(text).toContain('portcullis_access_log_dropped_lines_total 0');
    expect(text).toMatch(new RegExp(`^portcullis_access_log_lines_total ${gw.sink.counts().lines}$`, 'm'));
  });

  it('announces an overflow of a ring too small for a stalled sink, and the sink counts it', async () => {
    const since = small.logs().length;
    const droppedBefore = await droppedLogs(small);
    const before = { ...small.sink.counts(), lost: small.sink.dropped() };
    const acceptedBefore = await accepted(small);
    small.sink.pause();
    try {
      // More lines than the 64 KiB ring and the socket's buffers hold together.
      for (let i = 0; i < 5; i++) await burst(small, 500);
    } finally {
      small.sink.resume();
    }
    const connections = (await accepted(small)) - acceptedBefore;
    expect(connections).toBe(2500);
    // Lines stop arriving once the ring's contents are through.
    let seen = -1;
    await expect
      .poll(
        () => {
          const now = tlsLines(small, since);
          const settled = now === seen;
          seen = now;
          return settled;
        },
        { timeout: 10_000, interval: 300 },
      )
      .toBe(true);
    const settled = tlsLines(small, since);
    expect(settled).toBeLessThan(connections);
    // HAProxy announces the drops with the first line it logs once the ring has room again. A
    // burst against a stalled sink may end with no such line, so one more connection brings it.
    await burst(small, 1);
    await expect.poll(() => tlsLines(small, since), { timeout: 10_000 }).toBe(settled + 1);
    const lines = settled + 1;
    const overflows = small.sink.counts().overflows - before.overflows;
    expect(overflows).toBeGreaterThan(0);
    const lost = small.sink.dropped() - before.lost;
    expect(lost).toBeGreaterThan(0);
    // A lower bound: HAProxy's announcements undercount a long overflow (module comment).
    expect(lines + lost).toBeLessThanOrEqual(connections + 1);
    // The overflow is not in DroppedLogs: only the ring's announcements tell it.
    expect(await droppedLogs(small)).toBe(droppedBefore);
    const registry = new MetricsRegistry();
    small.sink.contributor(registry);
    const text = registry.render();
    expect(text).toContain(`portcullis_access_log_dropped_lines_total ${small.sink.dropped()}`);
    expect(text).toContain(`portcullis_access_log_ring_overflows_total ${small.sink.counts().overflows}`);
    // The announcements are JSON lines too.
    expect(small.lines().filter((l) => l.includes('"dropped_lines"')).length).toBe(
      small.sink.counts().overflows,
    );
  });

  it('keeps the lines logged while the sidecar is away and hands them to the next one (a sidecar restart)', async () => {
    await gw.sink.close();
    const count = 400;
    await burst(gw, count);
    const out: string[] = [];
    const next = await startLogSink({ path: gw.layout.logSocket, output: (line) => out.push(line) });
    try {
      const noRoute = () =>
        out.filter((l) => {
          const log = JSON.parse(l) as Record<string, unknown>;
          return log.frontend === FRONTEND.tls && log.refusal === REFUSAL.noRoute;
        });
      // Lines arrive, then stop arriving.
      let seen = -1;
      await expect
        .poll(
          () => {
            const now = noRoute().length;
            const settled = now > 0 && now === seen;
            seen = now;
            return settled;
          },
          { timeout: 15_000, interval: 500 },
        )
        .toBe(true);
      // The ring kept what was logged meanwhile; only what HAProxy had already moved into the
      // connection of the sidecar that left (one 16 KiB buffer at most) is gone.
      const shortest = Math.min(...noRoute().map((l) => Buffer.byteLength(l)));
      const lost = count - noRoute().length;
      expect(lost).toBeGreaterThanOrEqual(0);
      expect(lost).toBeLessThanOrEqual(Math.ceil(16_384 / shortest) + 1);
      expect(await droppedLogs(gw)).toBe(0);
    } finally {
      await next.close();
    }
  });
});
