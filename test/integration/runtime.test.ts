import { once } from 'node:events';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RuntimeApiError } from '../../proxy/haproxy/errors.ts';
import { HaproxyRuntime, sameSerial } from '../../proxy/haproxy/runtime.ts';
import { command, encodeVersion } from '../../proxy/haproxy/runtime-protocol.ts';
import { HAPROXY } from '../support/haproxy.ts';
import {
  createTestCa,
  freePort,
  issueTestLeaf,
  type MinimalHaproxy,
  startMinimalHaproxy,
  type TestCa,
  type TestLeaf,
} from '../support/haproxy-minimal.ts';

/** An echo server standing in for the upstream. */
async function startEcho(): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.pipe(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return { server, port: address.port, sockets };
}

/** Connects from `localAddress` and reports whether bytes make it through HAProxy and back. */
async function reaches(port: number, localAddress: string): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port, localAddress });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 3000);
    socket.on('connect', () => socket.write('ping'));
    socket.on('data', (d) => done(String(d) === 'ping'));
    socket.on('error', () => done(false));
    socket.on('close', () => done(false));
  });
}

/** An open connection through HAProxy that echoes, for session and reload tests. */
async function openConnection(port: number, localAddress = '127.0.0.1'): Promise<Socket> {
  const socket = createConnection({ host: '127.0.0.1', port, localAddress });
  await once(socket, 'connect');
  await echoes(socket, 'hello');
  return socket;
}

async function echoes(socket: Socket, text: string): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    let got = '';
    const timer = setTimeout(() => finish(false), 3000);
    const onData = (d: Buffer) => {
      got += String(d);
      if (got === text) finish(true);
    };
    const onClose = () => finish(false);
    function finish(ok: boolean) {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      resolve(ok);
    }
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.write(text);
  });
}

/** The serial of the leaf a fresh TLS handshake sees (optionally presenting a client certificate). */
async function handshake(
  port: number,
  servername: string,
  client?: TestLeaf,
): Promise<{ serial: string; echoed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      servername,
      rejectUnauthorized: false,
      ...(client ? { cert: client.certificatePem, key: client.privateKeyPem } : {}),
    });
    let serial = '';
    const timer = setTimeout(() => finish(new Error('TLS handshake timed out')), 3000);
    function finish(error?: Error, echoed = false) {
      clearTimeout(timer);
      socket.destroy();
      if (error && serial === '') reject(error);
      else resolve({ serial, echoed });
    }
    socket.on('secureConnect', () => {
      serial = socket.getPeerCertificate().serialNumber;
      socket.write('ping');
    });
    // With TLS 1.3 a rejected client certificate shows up after the handshake, as an alert.
    socket.on('data', (d) => finish(undefined, String(d) === 'ping'));
    socket.on('error', (e) => finish(e));
    socket.on('close', () => finish(new Error('closed')));
  });
}

describe(`HaproxyRuntime against ${HAPROXY.label}`, () => {
  let haproxy: MinimalHaproxy;
  let rt: HaproxyRuntime;
  let echo: Awaited<ReturnType<typeof startEcho>>;
  let ca: TestCa;
  let first: TestLeaf;
  const ports = { allow: 0, map: 0, proxy: 0, tls: 0 };
  let allowAcl = '';
  let stateMap = '';

  beforeAll(async () => {
    echo = await startEcho();
    for (const name of Object.keys(ports) as Array<keyof typeof ports>) ports[name] = await freePort();
    ca = await createTestCa('Runtime Test CA');
    first = await issueTestLeaf(ca, ['one.test']);
    haproxy = await startMinimalHaproxy(
      (dir) => `
frontend allow_fe
  bind 127.0.0.1:${ports.allow}
  tcp-request connection reject if !{ src -f ${join(dir, 'allow.acl')} }
  default_backend echo
frontend map_fe
  bind 127.0.0.1:${ports.map}
  tcp-request connection reject if !{ str(ready),map(${join(dir, 'state.map')},0) -m str 1 }
  default_backend echo
frontend proxy_fe
  bind 127.0.0.1:${ports.proxy} accept-proxy
  default_backend echo
frontend tls_fe
  bind 127.0.0.1:${ports.tls} ssl crt ${join(dir, 'site.pem')}
  default_backend echo
backend echo
  server s1 127.0.0.1:${echo.port}
`,
      () => ({
        'allow.acl': '127.0.0.2\n',
        'state.map': 'ready 0\n',
        'site.pem': first.bundlePem,
      }),
      (dir) => [`stats socket ${join(dir, 'user.sock')} mode 600 level user`],
    );
    rt = haproxy.runtime;
    allowAcl = join(haproxy.dir, 'allow.acl');
    stateMap = join(haproxy.dir, 'state.map');
  });

  afterAll(async () => {
    await haproxy?.stop();
    for (const s of echo?.sockets ?? []) s.destroy();
    echo?.server.close();
  });

  it('reads show info', async () => {
    const info = await rt.showInfo();
    expect(info.version).toBe(HAPROXY.capabilities.version.text);
    expect(info.pid).toBeGreaterThan(0);
  });

  it('reads the ACL loaded from a file by its name', async () => {
    expect(await rt.showAclEntries(allowAcl)).toEqual([expect.objectContaining({ value: '127.0.0.2' })]);
  });

  it('replaces the allowlist with 10 000 IPv4 and IPv6 CIDRs and serves exactly them', async () => {
    const entries = ['127.0.0.1/32'];
    for (let i = 0; entries.length < 5000; i++) entries.push(`10.${(i >> 8) & 255}.${i & 255}.0/24`);
    for (let i = 0; entries.length < 10_000; i++) entries.push(`fd00:${i.toString(16)}::/64`);
    expect(await reaches(ports.allow, '127.0.0.1')).toBe(false);
    expect(await reaches(ports.allow, '127.0.0.2')).toBe(true);

    const result = await rt.replaceAcl(allowAcl, entries);

    const served = await rt.showAclEntries(allowAcl);
    expect(result.count).toBe(10_000);
    expect(served).toHaveLength(10_000);
    expect(served.map((e) => e.value)).toEqual(entries);
    expect(await reaches(ports.allow, '127.0.0.1')).toBe(true);
    expect(await reaches(ports.allow, '127.0.0.2')).toBe(false);
  });

  it('keeps serving the committed contents when a transaction is left uncommitted', async () => {
    await rt.replaceAcl(allowAcl, ['127.0.0.1']);
    const version = await rt.prepareAcl(allowAcl);
    expect(await rt.execute(command('add acl', encodeVersion(version), allowAcl, '127.0.0.2'))).toBe('');

    expect((await rt.showAclEntries(allowAcl)).map((e) => e.value)).toEqual(['127.0.0.1']);
    expect((await rt.showAclEntries(allowAcl, { version })).map((e) => e.value)).toEqual(['127.0.0.2']);
    expect(await reaches(ports.allow, '127.0.0.2')).toBe(false);
    expect(await reaches(ports.allow, '127.0.0.1')).toBe(true);
  });

  it('commits nothing when HAProxy refuses one entry of a replacement', async () => {
    await rt.replaceAcl(allowAcl, ['127.0.0.1']);
    const error = await rt.replaceAcl(allowAcl, ['127.0.0.2', 'not-an-address']).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RuntimeApiError);
    expect(error).toMatchObject({ command: 'add acl', reason: 'invalid-argument' });
    expect((await rt.showAclEntries(allowAcl)).map((e) => e.value)).toEqual(['127.0.0.1']);
    expect(await reaches(ports.allow, '127.0.0.2')).toBe(false);
  });

  it('maps unknown ACLs and a user-level socket to typed errors', async () => {
    await expect(rt.showAclEntries(join(haproxy.dir, 'nope.acl'))).rejects.toMatchObject({
      name: 'RuntimeApiError',
      reason: 'unknown-identifier',
    });
    // 2.6 lets a `level user` socket change ACLs and maps; sessions need more.
    const user = new HaproxyRuntime({ adminSocket: join(haproxy.dir, 'user.sock') });
    await expect(user.showSessions()).rejects.toMatchObject({ reason: 'permission-denied' });
  });

  it('flips a frontend with set map, and stores escaped values byte for byte', async () => {
    expect(await reaches(ports.map, '127.0.0.1')).toBe(false);
    await rt.setMap(stateMap, 'ready', '1');
    expect(await reaches(ports.map, '127.0.0.1')).toBe(true);

    await rt.setMap(stateMap, 'ready', 'a b;c\\d #e');
    expect(await rt.execute(command('show map', stateMap))).toMatch(/^0x[0-9a-f]+ ready a b;c\\d #e$/);
    expect(await reaches(ports.map, '127.0.0.1')).toBe(false);
    await rt.setMap(stateMap, 'ready', '1');
    await expect(rt.setMap(stateMap, 'absent', 'x')).rejects.toMatchObject({ reason: 'not-found' });
  });

  it('sees an open connection with its source and closes it with shutdown session', async () => {
    await rt.replaceAcl(allowAcl, ['127.0.0.1']);
    const socket = await openConnection(ports.allow);
    try {
      const session = (await rt.showSessions()).find(
        (s) => s.frontend === 'allow_fe' && s.source?.port === socket.localPort,
      );
      expect(session).toMatchObject({ source: { address: '127.0.0.1' }, backend: 'echo', server: 's1' });
      const closed = once(socket, 'close');
      await rt.shutdownSession(session!.id);
      await closed;
      // Not the closed id: HAProxy may reuse its memory for the very CLI stream that asks.
      await expect(rt.shutdownSession('0x1')).rejects.toMatchObject({ reason: 'not-found' });
    } finally {
      socket.destroy();
    }
  });

  it('cuts the sessions a predicate selects and leaves the others', async () => {
    const keep = await openConnection(ports.allow);
    const cut = await openConnection(ports.allow);
    try {
      const closed = once(cut, 'close');
      expect(await rt.cutSessions((s) => s.frontend === 'allow_fe' && s.source?.port === cut.localPort)).toBe(
        1,
      );
      await closed;
      expect(await echoes(keep, 'still here')).toBe(true);
    } finally {
      keep.destroy();
      cut.destroy();
    }
  });

  it('reports the direct peer, not the PROXY-carried source, in show sess (2.6.12 behaviour)', async () => {
    const socket = createConnection({ host: '127.0.0.1', port: ports.proxy, localAddress: '127.0.0.1' });
    await once(socket, 'connect');
    socket.write('PROXY TCP4 203.0.113.7 127.0.0.1 40123 443\r\n');
    try {
      expect(await echoes(socket, 'hi')).toBe(true);
      const session = (await rt.showSessions()).find((s) => s.frontend === 'proxy_fe');
      expect(session?.source).toEqual({ address: '127.0.0.1', port: socket.localPort });
    } finally {
      socket.destroy();
    }
  });

  it('swaps the certificate a new handshake sees, and keeps it when a bad bundle is offered', async () => {
    const site = join(haproxy.dir, 'site.pem');
    expect(sameSerial((await handshake(ports.tls, 'one.test')).serial, first.serial)).toBe(true);

    const next = await issueTestLeaf(ca, ['one.test']);
    const update = await rt.updateCertificate(site, next.bundlePem);
    expect(sameSerial(update.serial, next.serial)).toBe(true);
    expect(update.info.dnsNames).toEqual(['one.test']);
    expect(sameSerial((await handshake(ports.tls, 'one.test')).serial, next.serial)).toBe(true);

    // A leaf with someone else's key: parses client-side, HAProxy must refuse it.
    const stranger = await issueTestLeaf(ca, ['one.test']);
    const mismatched = `${stranger.certificatePem}\n${next.privateKeyPem}`;
    await expect(rt.updateCertificate(site, mismatched)).rejects.toBeInstanceOf(RuntimeApiError);
    expect(sameSerial((await handshake(ports.tls, 'one.test')).serial, next.serial)).toBe(true);
    // No transaction left open: `show ssl cert` lists none under `# transaction`.
    expect(await rt.execute(command('show ssl cert'))).not.toMatch(/# transaction\n\*/);
  });
});

describe(`HaproxyRuntime master CLI against ${HAPROXY.label}`, () => {
  let haproxy: MinimalHaproxy;
  let echo: Awaited<ReturnType<typeof startEcho>>;
  let port = 0;

  beforeAll(async () => {
    echo = await startEcho();
    port = await freePort();
    haproxy = await startMinimalHaproxy(
      () => `
frontend fe
  bind 127.0.0.1:${port}
  default_backend echo
backend echo
  server s1 127.0.0.1:${echo.port}
`,
    );
  });

  afterAll(async () => {
    await haproxy?.stop();
    for (const s of echo?.sockets ?? []) s.destroy();
    echo?.server.close();
  });

  it('reloads without dropping an open connection, and show proc shows the new worker', async () => {
    const rt = haproxy.runtime;
    const before = await rt.showProc();
    expect(before.workers).toHaveLength(1);
    const socket = await openConnection(port);
    try {
      // 2.7+ answers once the new worker is up; 2.6 closes without a word.
      expect(await rt.reload()).toEqual({
        kind: HAPROXY.capabilities.reloadAnswersStatus ? 'loaded' : 'pending',
      });
      const after = await rt.waitForReload(before, { timeoutMs: 10_000 });

      expect(after.workers.map((w) => w.pid)).not.toContain(before.workers[0]!.pid);
      expect(after.master.reloads).toBe(before.master.reloads + 1);
      expect(after.oldWorkers.map((w) => w.pid)).toContain(before.workers[0]!.pid);
      expect(await echoes(socket, 'across the reload')).toBe(true);
      expect(await reaches(port, '127.0.0.1')).toBe(true);
      expect((await rt.showInfo()).pid).toBe(after.workers[0]!.pid);
    } finally {
      socket.destroy();
    }
  });

  it('reports a reload of a broken configuration as a failed reload', async () => {
    const rt = haproxy.runtime;
    const before = await rt.showProc();
    await haproxy.writeConfig('frontend fe\n  bind 127.0.0.1:1 nonsense-keyword\n');
    const serving = before.workers.map((w) => w.pid);
    if (HAPROXY.capabilities.reloadAnswersStatus) {
      // The answer itself says so, with the alert that names the line at fault.
      await expect(rt.reload()).rejects.toMatchObject({
        name: 'RuntimeApiError',
        reason: 'reload-failed',
        haproxyMessage: expect.stringContaining('nonsense-keyword'),
      });
    } else {
      expect(await rt.reload()).toEqual({ kind: 'pending' });
      await expect(rt.waitForReload(before, { timeoutMs: 10_000 })).rejects.toMatchObject({
        reason: 'reload-failed',
      });
    }
    const after = await rt.showProc();
    expect(after.master.failedReloads).toBe(before.master.failedReloads + 1);
    const listed = HAPROXY.capabilities.failedReloadListsServingWorkerAsOld
      ? after.oldWorkers
      : after.workers;
    expect(listed.map((w) => w.pid)).toEqual(serving);
    expect((await rt.showInfo()).pid).toBe(serving[0]);
    expect(await reaches(port, '127.0.0.1')).toBe(true);
  });
});
