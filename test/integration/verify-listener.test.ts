/**
 * The verification listener on a real HAProxy 2.6, beside a TLS listener that takes PROXY
 * headers from its trusted peer (the NLB stand-in, 127.0.0.1) only: the control plane's
 * handshake reads what each terminate route serves without a PROXY header, an allowlist entry or
 * a client certificate, sees a hot certificate update at once, is refused from other peers, and
 * never causes an upstream connection.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FleetConfig, parseFleetConfig } from '../../lib/config/index.ts';
import { TaskUnreachable } from '../../lib/errors.ts';
import { normaliseSerial } from '../../lib/pki/index.ts';
import type { FleetTask } from '../../lib/ports.ts';
import { HttpTaskClient } from '../../lib/task-client/index.ts';
import {
  FRONTEND,
  type GatewayLayout,
  gatewayLayout,
  type RunningHaproxy,
  renderGateway,
  startHaproxy,
  writeGateway,
} from '../../proxy/haproxy/index.ts';
import { TERMINATE, terminatePaths } from '../../proxy/haproxy/render-terminate.ts';
import { type HaproxyRuntime, runtimeClientFor } from '../../proxy/haproxy/runtime.ts';
import { command } from '../../proxy/haproxy/runtime-protocol.ts';
import { type LogSink, startLogSink } from '../../proxy/sidecar/log-sink.ts';
import { freePort } from '../support/gateway.ts';
import { proxyV2 } from '../support/proxy-protocol.ts';
import {
  startTcpUpstream,
  type TestCredential,
  type TestPki,
  testPki,
  type Upstream,
} from '../support/tls.ts';

const STRICT = 'strict.verify.test';
const OPEN = 'open.verify.test';
/** The client the NLB stand-in speaks for (PROXY source), and the allowlist that admits it. */
const CLIENT = '198.51.100.7';
const ALLOWLIST = ['198.51.100.0/24'];

let dir: string;
let pki: TestPki;
let rogue: TestPki;
let app: Upstream;
let layout: GatewayLayout;
let config: FleetConfig;
let haproxy: RunningHaproxy;
/** The sidecar's log sink: where HAProxy's access log arrives. */
let sink: LogSink;
const logLinesSeen: string[] = [];
let runtime: HaproxyRuntime;
let ports: { tls: number; verify: number; health: number };
let client: HttpTaskClient;

/** The task as the control plane lists it: `tlsPort` is the verification port. */
const verifyTask = (): FleetTask => ({
  taskId: 'verify-1',
  address: '127.0.0.1',
  adminPort: 1,
  tlsAddress: '127.0.0.1',
  tlsPort: ports.verify,
  lastStatus: 'RUNNING',
});

const bundle = (c: TestCredential) => c.cert + c.chain + c.key;

type Outcome = { kind: 'ok'; serial: string } | { kind: 'refused'; serial?: string; error: string };

/**
 * One exchange through fe_tls the way a client's arrives through the NLB: from `localAddress`,
 * a PROXY v2 header naming `source` (none when `source` is undefined), a TLS handshake, one line
 * that the upstream must echo.
 */
function throughNlb(
  serverName: string,
  options: { source?: string | undefined; credential?: TestCredential; localAddress?: string } = {},
): Promise<Outcome> {
  const source = 'source' in options ? options.source : CLIENT;
  return new Promise((resolve) => {
    let serial: string | undefined;
    let settled = false;
    let data = '';
    let socket: tls.TLSSocket | undefined;
    const raw = net.connect({
      host: '127.0.0.1',
      port: ports.tls,
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    });
    const done = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket?.destroy();
      raw.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => done({ kind: 'refused', error: 'timeout' }), 5000);
    const refused = (error: string) => done({ kind: 'refused', ...(serial ? { serial } : {}), error });
    raw.on('error', (error) => refused(error.message));
    raw.once('connect', () => {
      // The header goes out on the bare connection, before the TLS layer writes its ClientHello.
      if (source !== undefined)
        raw.write(proxyV2({ source: `${source}:40000`, destination: `127.0.0.1:${ports.tls}` }));
      const secure = tls.connect({
        socket: raw,
        servername: serverName,
        rejectUnauthorized: false,
        ...(options.credential ? { cert: options.credential.cert, key: options.credential.key } : {}),
      });
      socket = secure;
      secure.once('secureConnect', () => {
        serial = normaliseSerial(secure.getPeerX509Certificate()?.serialNumber ?? '') ?? '';
        secure.write('ping\n');
      });
      secure.on('data', (chunk: Buffer) => {
        data += chunk.toString();
        if (data.includes('ping')) done({ kind: 'ok', serial: serial ?? '' });
      });
      secure.once('error', (error) => refused(error.message));
      secure.once('close', () => refused('closed'));
    });
  });
}

/** A handshake with the verify port from `localAddress`, then one line of application data. */
function verifyRaw(
  localAddress = '127.0.0.1',
): Promise<{ handshake: boolean; received: number; error?: string }> {
  return new Promise((resolve) => {
    let handshake = false;
    let received = 0;
    let settled = false;
    // node:tls takes no local address: bind the TCP socket, then wrap it.
    const raw = net.connect({ host: '127.0.0.1', port: ports.verify, localAddress });
    raw.on('error', () => {}); // reported through the TLS socket
    const socket = tls.connect({ socket: raw, servername: STRICT, rejectUnauthorized: false });
    const done = (error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      raw.destroy();
      resolve({ handshake, received, ...(error ? { error } : {}) });
    };
    const timer = setTimeout(() => done('timeout'), 5000);
    socket.once('secureConnect', () => {
      handshake = true;
      socket.write('ping\n');
    });
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    socket.once('error', (error: NodeJS.ErrnoException) => done(error.code ?? error.message));
    socket.once('close', () => done());
  });
}

/** Access-log lines from index `since` on, once one of them satisfies `predicate` (within 5 s). */
async function waitForLine(predicate: (line: string) => boolean, since: number): Promise<string[]> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const lines = logLinesSeen.slice(since);
    if (lines.some(predicate)) return lines;
    if (Date.now() > deadline) throw new Error(`no matching log line within 5 s; saw:\n${lines.join('\n')}`);
    await new Promise((wake) => setTimeout(wake, 25));
  }
}

/** `show stat` counters of one frontend, by column name. */
async function frontendStats(name: string): Promise<Record<string, number>> {
  const answer = await runtime.execute(command('show stat'));
  const [header, ...rows] = answer.trim().split('\n');
  const columns = header!.replace(/^# /, '').split(',');
  const row = rows.map((r) => r.split(',')).find((r) => r[0] === name && r[1] === 'FRONTEND');
  if (row === undefined) throw new Error(`no frontend ${name} in show stat`);
  return Object.fromEntries(columns.map((c, i) => [c, Number(row[i] ?? Number.NaN)]));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-verify-'));
  pki = await testPki({ serverNames: [STRICT, OPEN], caName: 'Verify Test CA' });
  rogue = await testPki({ caName: 'Verify Rogue CA' });
  app = await startTcpUpstream({ mode: 'echo' });
  ports = { tls: await freePort(), verify: await freePort(), health: await freePort() };
  config = parseFleetConfig({
    fleet: 'verify-test',
    listeners: { bind: ['127.0.0.1'], ...ports, http: null, metrics: null },
    proxyProtocol: { enabled: true, trustedPeers: ['127.0.0.1/32'] },
    verify: { trustedPeers: ['127.0.0.1/32'] },
    resolvers: { nameservers: ['127.0.0.1:53'] },
    certificates: [
      { name: 'gateway', secretId: 'cert/gateway', commonName: STRICT, dns: [STRICT, OPEN], usage: 'server' },
    ],
    trust: { secretId: 'trust' },
    routes: [
      {
        mode: 'terminate',
        serverName: STRICT,
        certificate: 'gateway',
        clientAuth: 'strict',
        upstream: { kind: 'local', port: app.port },
      },
      {
        mode: 'terminate',
        serverName: OPEN,
        certificate: 'gateway',
        clientAuth: 'none',
        upstream: { kind: 'local', port: app.port },
      },
    ],
  });
  layout = gatewayLayout(join(dir, 'gw'));
  await writeGateway(layout.root, renderGateway(config, { layout, allowlistCidrs: ALLOWLIST }));
  // What the sidecar writes before HAProxy starts: the served bundle (0600) and the trust bundle.
  const paths = terminatePaths(layout);
  await writeFile(paths.certificate('gateway'), bundle(pki.server), { mode: 0o600 });
  await writeFile(paths.trust, pki.ca.cert);
  sink = await startLogSink({ path: layout.logSocket, output: (line) => logLinesSeen.push(line.trimEnd()) });
  haproxy = await startHaproxy({ layout });
  await haproxy.waitReady();
  runtime = runtimeClientFor(layout);
  client = new HttpTaskClient({ nudgeKey: Buffer.from('unused: no nudges here'), timeoutMs: 5000 });
});

afterAll(async () => {
  await haproxy?.stop();
  await sink?.close();
  // Every line the gateway logged is HAProxy's own JSON (none wrapped by the sink).
  expect(logLinesSeen.filter((l) => l.includes('"component":"haproxy"') || !JSON.parse(l))).toEqual([]);
  await app?.close();
  await pki?.cleanup();
  await rogue?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the verification listener', () => {
  it('shows a strict-mTLS route its served certificate without a client certificate', async () => {
    const served = await client.servedCertificate(verifyTask(), STRICT);
    expect(served.serial).toBe(normaliseSerial(pki.server.serial));
    expect(await client.servedCertificate(verifyTask(), OPEN)).toMatchObject({ serial: served.serial });
  });

  it('completes the handshake whatever client certificate a verifier presents', async () => {
    const served = await client.servedCertificate(verifyTask(), STRICT, {
      clientCertificate: { certificatePem: rogue.client.cert, keyPem: rogue.client.key },
    });
    expect(served.serial).toBe(normaliseSerial(pki.server.serial));
  });

  it('serves a certificate replaced through the runtime API at once, exactly as the TLS listener does', async () => {
    const rotated = await pki.issue({ name: 'rotated', commonName: STRICT, dns: [STRICT, OPEN] });
    const path = terminatePaths(layout).certificate('gateway');
    const update = await runtime.updateCertificate(path, bundle(rotated));
    expect(normaliseSerial(update.serial)).toBe(normaliseSerial(rotated.serial));

    const served = await client.servedCertificate(verifyTask(), STRICT);
    expect(served.serial).toBe(normaliseSerial(rotated.serial));
    // One certificate store for both binds: clients get the very certificate the verifier saw.
    expect(await throughNlb(STRICT, { credential: pki.client })).toEqual({
      kind: 'ok',
      serial: served.serial,
    });
    expect(await throughNlb(OPEN)).toEqual({ kind: 'ok', serial: served.serial });
  });

  it('refuses a peer outside verify.trustedPeers before any TLS, and counts it', async () => {
    const before = await frontendStats(FRONTEND.verify);
    const outcome = await verifyRaw('127.0.0.5');
    expect(outcome).toMatchObject({ handshake: false, received: 0 });
    const after = await frontendStats(FRONTEND.verify);
    expect(after.dcon! - before.dcon!).toBe(1);
  });

  it('never connects upstream, answers no data, logs nothing and leaves the route counters alone', async () => {
    const table = async () =>
      (await runtime.execute(command('show table', TERMINATE.table)))
        .split('\n')
        .filter((l) => l.includes('key=') && !l.startsWith('#'))
        .map((l) => l.replace(/use=\d+ exp=\d+ /, ''))
        .sort();
    const counters = await table();
    const upstreamBefore = app.connections.length;
    const sessionsBefore = await frontendStats(FRONTEND.verify);
    const logLines = logLinesSeen.length;

    for (const name of [STRICT, OPEN, STRICT]) await client.servedCertificate(verifyTask(), name);
    // Application data after the handshake goes nowhere: the session is closed (reset) unanswered.
    expect(await verifyRaw()).toMatchObject({ handshake: true, received: 0 });

    const sessionsAfter = await frontendStats(FRONTEND.verify);
    expect(sessionsAfter.dses! - sessionsBefore.dses!).toBe(4);
    // A client through fe_tls does connect upstream: the counter below can tell.
    expect((await throughNlb(OPEN)).kind).toBe('ok');
    await app.waitForConnections(upstreamBefore + 1);
    expect(app.connections.length).toBe(upstreamBefore + 1);
    // The client's line arrives once HAProxy saw its connection close; none ever for a verification.
    const logged = (
      await waitForLine(
        (l) => l.includes(`"frontend":"${TERMINATE.frontend}","client":"${CLIENT}"`) && l.includes(OPEN),
        logLines,
      )
    ).join('\n');
    expect(logged).not.toContain(FRONTEND.verify);
    // Only the client's handshake above is counted; the four verifications are not traffic.
    const after = await table();
    expect(after.join('\n')).toMatch(/key=open\.verify\.test .*gpc0=\d+/);
    const handshakes = (lines: string[]) =>
      lines
        .map((l) => Number(/key=open\.verify\.test .*?gpc0=(\d+)/.exec(l)?.[1] ?? 0))
        .reduce((a, b) => a + b, 0);
    expect(handshakes(after) - handshakes(counters)).toBe(1);
  });
});

describe('the TLS listener beside it', () => {
  it('still refuses a direct handshake without a PROXY header, even from its trusted peer', async () => {
    const direct: FleetTask = { ...verifyTask(), tlsPort: ports.tls };
    await expect(client.servedCertificate(direct, STRICT)).rejects.toBeInstanceOf(TaskUnreachable);
  });

  it('still refuses PROXY headers from a peer it does not trust', async () => {
    expect((await throughNlb(OPEN, { localAddress: '127.0.0.5' })).kind).toBe('refused');
  });

  it('still refuses a client outside the allowlist', async () => {
    expect((await throughNlb(OPEN, { source: '203.0.113.9' })).kind).toBe('refused');
  });

  it('still requires a client certificate on a strict route and forwards a trusted client', async () => {
    expect((await throughNlb(STRICT)).kind).toBe('refused');
    expect((await throughNlb(STRICT, { credential: rogue.client })).kind).toBe('refused');
    expect((await throughNlb(STRICT, { credential: pki.client })).kind).toBe('ok');
  });
});
