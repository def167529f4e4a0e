import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ServedVersionMismatch, ValidationError } from '../../lib/errors.ts';
import {
  RuntimeApiError,
  RuntimeProtocolError,
  RuntimeTimeout,
  RuntimeUnavailable,
} from '../../proxy/haproxy/errors.ts';
import {
  chunkBatch,
  HaproxyRuntime,
  type RuntimeTransport,
  runtimeClientFor,
  sameSerial,
} from '../../proxy/haproxy/runtime.ts';
import { unixSocketTransport } from '../../proxy/haproxy/runtime-transport.ts';
import { createTestCa, issueTestLeaf } from '../support/haproxy-minimal.ts';

/** A scripted HAProxy: answers each request line through `reply`, recording what was sent. */
function fakeHaproxy(reply: (request: string, socket: string) => string) {
  const requests: string[] = [];
  const transport: RuntimeTransport = async (socket, request) => {
    requests.push(request);
    return reply(request, socket);
  };
  return { requests, transport };
}

/** Answers a `;`-separated batch the way HAProxy does: one answer per command, each ending in an empty line. */
function batchReply(request: string, each: (cmd: string) => string): string {
  return request
    .replace(/\n$/, '')
    .split(/(?<!\\);/)
    .map((cmd) => `${each(cmd)}\n`)
    .join('');
}

const ACL = '/run/acl/allow.acl';

describe('HaproxyRuntime.replaceAcl', () => {
  it('prepares, adds every entry to the new version in batches, then commits', async () => {
    const fake = fakeHaproxy((req) => {
      if (req.startsWith('prepare acl')) return 'New version created: 7\n\n';
      if (req.startsWith('add acl')) return batchReply(req, () => '');
      if (req.startsWith('commit acl')) return '\n';
      return 'Unknown command\n\n';
    });
    const rt = new HaproxyRuntime({ adminSocket: '/s', transport: fake.transport, batchSize: 2 });
    const result = await rt.replaceAcl(ACL, ['10.0.0.0/8', 'fd00::/8', '192.0.2.1']);
    expect(result).toEqual({ version: 7, count: 3 });
    expect(fake.requests).toEqual([
      `prepare acl ${ACL}\n`,
      `add acl @7 ${ACL} 10.0.0.0/8;add acl @7 ${ACL} fd00::/8\n`,
      `add acl @7 ${ACL} 192.0.2.1\n`,
      `commit acl @7 ${ACL}\n`,
    ]);
  });

  it('never commits when one entry is refused, and clears the prepared version', async () => {
    const fake = fakeHaproxy((req) => {
      if (req.startsWith('prepare acl')) return 'New version created: 2\n\n';
      if (req.startsWith('add acl'))
        return batchReply(req, (c) =>
          c.endsWith('bad') ? "'bad' is not a valid IPv4 or IPv6 address.\n" : '',
        );
      return '\n';
    });
    const rt = new HaproxyRuntime({ adminSocket: '/s', transport: fake.transport });
    const error = await rt.replaceAcl(ACL, ['10.0.0.0/8', 'bad']).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RuntimeApiError);
    expect(error).toMatchObject({ command: 'add acl', reason: 'invalid-argument' });
    expect(fake.requests.some((r) => r.startsWith('commit'))).toBe(false);
    expect(fake.requests.at(-1)).toBe(`clear acl @2 ${ACL}\n`);
  });

  it('rejects an injected entry before talking to HAProxy', async () => {
    const fake = fakeHaproxy(() => '\n');
    const rt = new HaproxyRuntime({ adminSocket: '/s', transport: fake.transport });
    await expect(rt.replaceAcl(ACL, ['10.0.0.0/8', '1.1.1.1\ncommit acl @1 x'])).rejects.toThrow(
      ValidationError,
    );
    expect(fake.requests).toEqual([]);
  });

  it('treats a batch answered short as a protocol error and does not commit', async () => {
    const fake = fakeHaproxy((req) => {
      if (req.startsWith('prepare acl')) return 'New version created: 3\n\n';
      if (req.startsWith('add acl')) return '\n\n'; // two answers for three commands: cut mid-batch
      return '\n';
    });
    const rt = new HaproxyRuntime({ adminSocket: '/s', transport: fake.transport });
    await expect(rt.replaceAcl(ACL, ['1.1.1.1', '2.2.2.2', '3.3.3.3'])).rejects.toThrow(RuntimeProtocolError);
    expect(fake.requests.some((r) => r.startsWith('commit'))).toBe(false);
  });

  it('runs two replacements of the same ACL one after the other', async () => {
    let version = 0;
    const log: string[] = [];
    const transport: RuntimeTransport = async (_s, req) => {
      log.push(req.split(' ').slice(0, 2).join(' '));
      await new Promise((r) => setTimeout(r, 1));
      if (req.startsWith('prepare')) return `New version created: ${++version}\n\n`;
      if (req.startsWith('add')) return batchReply(req, () => '');
      return '\n';
    };
    const rt = new HaproxyRuntime({ adminSocket: '/s', transport });
    await Promise.all([rt.replaceAcl(ACL, ['1.1.1.1']), rt.replaceAcl(ACL, ['2.2.2.2'])]);
    expect(log).toEqual(['prepare acl', 'add acl', 'commit acl', 'prepare acl', 'add acl', 'commit acl']);
  });
});

describe('chunkBatch', () => {
  const cmd = (n: number) => ({ verb: 'add acl', line: `add acl @1 /a ${'x'.repeat(n)}` });
  it('keeps every line under the byte budget and the command limit, in order', () => {
    const cmds = Array.from({ length: 50 }, (_, i) => cmd(10 + (i % 7)));
    const chunks = chunkBatch(cmds, 8, 100);
    expect(chunks.flat()).toEqual(cmds);
    for (const chunk of chunks) {
      expect(chunk.length).toBeLessThanOrEqual(8);
      expect(chunk.reduce((n, c) => n + c.line.length + 1, 0)).toBeLessThanOrEqual(100);
    }
  });
  it('refuses a single command longer than the buffer', () => {
    expect(() => chunkBatch([cmd(200)], 10, 100)).toThrow(ValidationError);
    expect(chunkBatch([], 10, 100)).toEqual([]);
  });
});

describe('HaproxyRuntime maps', () => {
  it('escapes values with spaces and semicolons instead of losing the rest', async () => {
    const fake = fakeHaproxy(() => '\n');
    const rt = new HaproxyRuntime({ adminSocket: '/s', transport: fake.transport });
    await rt.setMap('/m.map', 'ready', 'a b;c');
    expect(fake.requests).toEqual(['set map /m.map ready a\\ b\\;c\n']);
  });
  it('refuses a key HAProxy would read as an entry reference', async () => {
    const rt = new HaproxyRuntime({ adminSocket: '/s', transport: fakeHaproxy(() => '\n').transport });
    await expect(rt.setMap('/m.map', '#1', 'x')).rejects.toThrow(ValidationError);
  });
});

describe('HaproxyRuntime.updateCertificate', () => {
  let CERT = '';
  let SERIAL = '';
  beforeAll(async () => {
    const leaf = await issueTestLeaf(await createTestCa(), ['one.test']);
    CERT = leaf.certificatePem;
    SERIAL = leaf.serial;
  });
  const certInfo = (name: string, serial: string) =>
    `Filename: ${name}\nStatus: Used\nSerial: ${serial}\nnotBefore: Nov 23 16:13:05 2026 GMT\nnotAfter: Nov 25 16:13:05 2026 GMT\nSubject: /CN=one.test\nIssuer: /CN=one.test\n\n`;

  it('sets, checks the staged serial, commits and reads back', async () => {
    const fake = fakeHaproxy((req) => {
      if (req.startsWith('set ssl cert')) return 'Transaction created for certificate /c.pem!\n\n';
      if (req.startsWith('show ssl cert')) return certInfo(req.split(' ')[3]!.trim(), SERIAL);
      if (req.startsWith('commit ssl cert')) return 'Committing /c.pem..\nSuccess!\n\n';
      return 'Unknown command\n\n';
    });
    const rt = new HaproxyRuntime({ adminSocket: '/s', transport: fake.transport });
    const result = await rt.updateCertificate('/c.pem', CERT);
    expect(sameSerial(result.serial, SERIAL)).toBe(true);
    expect(fake.requests.map((r) => r.split('\n')[0])).toEqual([
      'set ssl cert /c.pem <<',
      'show ssl cert */c.pem',
      'commit ssl cert /c.pem',
      'show ssl cert /c.pem',
    ]);
  });

  it('aborts instead of committing when the staged serial is not the new one', async () => {
    const fake = fakeHaproxy((req) => {
      if (req.startsWith('set ssl cert')) return 'Transaction updated for certificate /c.pem!\n\n';
      if (req.startsWith('show ssl cert')) return certInfo('*/c.pem', '01');
      if (req.startsWith('abort ssl cert')) return "Transaction aborted for certificate '/c.pem'!\n\n";
      return '\n';
    });
    const rt = new HaproxyRuntime({ adminSocket: '/s', transport: fake.transport });
    await expect(rt.updateCertificate('/c.pem', CERT)).rejects.toThrow(ServedVersionMismatch);
    expect(fake.requests.map((r) => r.split(' ').slice(0, 2).join(' '))).toEqual([
      'set ssl',
      'show ssl',
      'abort ssl',
    ]);
  });

  it('aborts when HAProxy refuses the commit and reports its reason without the PEM', async () => {
    const fake = fakeHaproxy((req) => {
      if (req.startsWith('set ssl cert')) return 'Transaction created for certificate /c.pem!\n\n';
      if (req.startsWith('show ssl cert')) return certInfo('*/c.pem', SERIAL);
      if (req.startsWith('commit ssl cert'))
        return "The transaction must contain at least a certificate and a private key!\nCan't commit /c.pem!\n\n";
      if (req.startsWith('abort ssl cert')) return "Transaction aborted for certificate '/c.pem'!\n\n";
      return '\n';
    });
    const rt = new HaproxyRuntime({ adminSocket: '/s', transport: fake.transport });
    const error = await rt.updateCertificate('/c.pem', CERT).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'RuntimeApiError', command: 'commit ssl cert', reason: 'rejected' });
    expect(String((error as Error).message)).not.toContain('MIIB');
    expect(fake.requests.at(-1)).toBe('abort ssl cert /c.pem\n');
  });

  it('refuses a bundle without a parseable certificate before talking to HAProxy', async () => {
    const fake = fakeHaproxy(() => '\n');
    const rt = new HaproxyRuntime({ adminSocket: '/s', transport: fake.transport });
    await expect(rt.updateCertificate('/c.pem', 'not a pem')).rejects.toThrow(ValidationError);
    await expect(
      rt.updateCertificate('/c.pem', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----'),
    ).rejects.toThrow(ValidationError);
    expect(fake.requests).toEqual([]);
  });

  it("refuses a payload larger than HAProxy's buffer instead of letting HAProxy hang up", async () => {
    const fake = fakeHaproxy(() => '\n');
    const rt = new HaproxyRuntime({ adminSocket: '/s', transport: fake.transport, bufferSize: 1024 });
    await expect(rt.setSslCert('/site.pem', CERT.repeat(3))).rejects.toThrow(/buffer/);
    expect(fake.requests).toEqual([]);
  });

  it('compares serials regardless of case and leading zero bytes', () => {
    expect(sameSerial('00ABCD', 'abcd')).toBe(true);
    expect(sameSerial('AB:CD', 'ABCD')).toBe(true);
    expect(sameSerial('ABCE', 'ABCD')).toBe(false);
  });
});

describe('HaproxyRuntime sessions and errors', () => {
  const detail = (id: string, source: string) =>
    `${id}: [23/Nov/2026:16:15:00.149345] id=7 proto=tcpv4 source=${source}\n  flags=0x4a, conn_retries=0\n  frontend=fe (id=5 mode=tcp), listener=? (id=1) addr=127.0.0.1:18445\n\n`;

  it('cuts the sessions a predicate selects, skipping ids that ended or now name another stream', async () => {
    const fake = fakeHaproxy((req) => {
      if (req === 'show sess\n')
        return [
          '0x1: proto=tcpv4 src=192.0.2.1:1000 fe=fe be=be srv=s ts=00 age=1s',
          '0x2: proto=tcpv4 src=192.0.2.2:1000 fe=fe be=be srv=s ts=00 age=1s',
          '0x3: proto=tcpv4 src=192.0.2.1:1001 fe=fe be=be srv=s ts=00 age=1s',
          '0x4: proto=unix_stream src=unix:1 fe=GLOBAL be=<NONE> srv=<none> ts=00 age=0s',
          '0x5: proto=tcpv4 src=192.0.2.1:1002 fe=fe be=be srv=s ts=00 age=1s',
          '',
          '',
        ].join('\n');
      if (req === 'show sess 0x1\n') return detail('0x1', '192.0.2.1:1000');
      if (req === 'show sess 0x3\n') return detail('0x3', '192.0.2.1:1001');
      // 0x5 ended and its memory now holds another client's stream.
      if (req === 'show sess 0x5\n') return detail('0x5', '198.51.100.9:4000');
      if (req === 'shutdown session 0x3\n') return "No such session (use 'show sess').\n\n";
      return '\n';
    });
    const rt = new HaproxyRuntime({ adminSocket: '/s', transport: fake.transport });
    expect((await rt.showSessions()).map((s) => s.id)).toEqual(['0x1', '0x2', '0x3', '0x5']);
    expect(await rt.cutSessions((s) => s.source?.address === '192.0.2.1')).toBe(1);
    expect(fake.requests.filter((r) => r.startsWith('shutdown'))).toEqual([
      'shutdown session 0x1\n',
      'shutdown session 0x3\n',
    ]);
  });

  it('validates session ids', async () => {
    const rt = new HaproxyRuntime({ adminSocket: '/s', transport: fakeHaproxy(() => '\n').transport });
    await expect(rt.shutdownSession('0x1;shutdown sessions server be/s')).rejects.toThrow(ValidationError);
  });

  it('maps an unknown command and an unknown ACL to typed errors', async () => {
    const unknown = new HaproxyRuntime({
      adminSocket: '/s',
      transport: fakeHaproxy(
        () => 'Unknown command, but maybe one of the following ones is a better match:\n  help\n\n',
      ).transport,
    });
    await expect(unknown.prepareAcl(ACL)).rejects.toMatchObject({ reason: 'unknown-command' });
    const noAcl = new HaproxyRuntime({
      adminSocket: '/s',
      transport: fakeHaproxy(() => 'Unknown ACL identifier. Please use #<id> or <file>.\n\n').transport,
    });
    await expect(noAcl.showAclEntries(9)).rejects.toMatchObject({ reason: 'unknown-identifier' });
  });

  it('builds a client from a gateway layout', () => {
    const rt = runtimeClientFor({ adminSocket: '/a.sock', masterSocket: '/m.sock' });
    expect([rt.adminSocket, rt.masterSocket]).toEqual(['/a.sock', '/m.sock']);
  });
});

describe('HaproxyRuntime master CLI', () => {
  const proc = (master: string, worker: number) =>
    `#<PID>          <type>          <reloads>       <uptime>        <version>\n100             master          ${master}   0d00h00m05s     2.6.12\n# workers\n${worker}             worker          0               0d00h00m01s     2.6.12\n# programs\n\n`;

  it('waits until a new worker serves, retrying while the master socket refuses', async () => {
    let calls = 0;
    const transport: RuntimeTransport = async (socket) => {
      calls++;
      if (calls === 1) throw new RuntimeUnavailable(socket, 'connect ECONNREFUSED', { code: 'ECONNREFUSED' });
      return calls < 3 ? proc('0 [failed: 0]', 200) : proc('1 [failed: 0]', 201);
    };
    const rt = new HaproxyRuntime({ adminSocket: '/a', masterSocket: '/m', transport });
    const before = {
      master: { pid: 100, type: 'master', reloads: 0, failedReloads: 0, uptimeSeconds: 0, version: '' },
      workers: [{ pid: 200, type: 'worker', reloads: 0, uptimeSeconds: 0, version: '' }],
      oldWorkers: [],
      programs: [],
    };
    const after = await rt.waitForReload(before, { intervalMs: 1, timeoutMs: 5000 });
    expect(after.workers.map((w) => w.pid)).toEqual([201]);
  });

  it('fails fast when the master counts a failed reload', async () => {
    const transport: RuntimeTransport = async () => proc('1 [failed: 1]', 200);
    const rt = new HaproxyRuntime({ adminSocket: '/a', masterSocket: '/m', transport });
    await expect(
      rt.waitForReload(
        await rt.showProc().then((p) => ({ ...p, master: { ...p.master, failedReloads: 0 } })),
        { intervalMs: 1 },
      ),
    ).rejects.toMatchObject({
      name: 'RuntimeApiError',
      reason: 'reload-failed',
    });
  });

  it('times out when no new worker appears', async () => {
    const rt = new HaproxyRuntime({
      adminSocket: '/a',
      masterSocket: '/m',
      transport: async () => proc('0 [failed: 0]', 200),
    });
    await expect(rt.waitForReload([200], { intervalMs: 1, timeoutMs: 20 })).rejects.toThrow(RuntimeTimeout);
  });

  it("reads 2.6's silent close as pending, 2.7+'s Success=1 as loaded, and other text as a refusal", async () => {
    const silent = new HaproxyRuntime({ adminSocket: '/a', masterSocket: '/m', transport: async () => '' });
    await expect(silent.reload()).resolves.toEqual({ kind: 'pending' });
    const loaded = new HaproxyRuntime({
      adminSocket: '/a',
      masterSocket: '/m',
      transport: async () => 'Success=1\n--\n[NOTICE]   (1) : Loading success.\n\n',
    });
    await expect(loaded.reload()).resolves.toEqual({ kind: 'loaded' });
    const denied = new HaproxyRuntime({
      adminSocket: '/a',
      masterSocket: '/m',
      transport: async () => 'Permission denied\n\n',
    });
    await expect(denied.reload()).rejects.toMatchObject({ reason: 'permission-denied' });
  });

  it('needs a master socket for master commands', async () => {
    const rt = new HaproxyRuntime({ adminSocket: '/a', transport: async () => '' });
    await expect(rt.showProc()).rejects.toThrow(ValidationError);
  });
});

describe('unixSocketTransport against a fake HAProxy socket', () => {
  let dir: string;
  let server: Server | undefined;
  const sockets = new Set<Socket>();

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-rt-unit-'));
  });
  afterEach(async () => {
    for (const s of sockets) s.destroy();
    sockets.clear();
    if (server) await new Promise<void>((r) => server!.close(() => r()));
    server = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  async function serve(onRequest: (socket: Socket, request: string) => void): Promise<string> {
    const path = join(dir, 'fake.sock');
    // Half-open like HAProxy: the client's end of request does not close our side.
    server = createServer({ allowHalfOpen: true }, (socket) => {
      sockets.add(socket);
      let buffered = '';
      socket.setEncoding('utf8');
      let answered = false;
      // Like the worker CLI: act once the line is complete, without waiting for a shutdown.
      socket.on('data', (d) => {
        buffered += String(d);
        if (!answered && buffered.endsWith('\n')) {
          answered = true;
          onRequest(socket, buffered);
        }
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((r) => server!.listen(path, () => r()));
    return path;
  }

  const opts = { timeoutMs: 500, maxAnswerBytes: 1024 };

  it('half-closes only when asked (the master CLI waits for it)', async () => {
    const path = join(dir, 'master.sock');
    server = createServer({ allowHalfOpen: true }, (socket) => {
      sockets.add(socket);
      socket.on('end', () => socket.end('after shutdown\n\n'));
      socket.resume();
      socket.on('error', () => undefined);
    });
    await new Promise<void>((r) => server!.listen(path, () => r()));
    expect(await unixSocketTransport(path, 'show proc\n', { ...opts, halfClose: true })).toBe(
      'after shutdown\n\n',
    );
    await expect(unixSocketTransport(path, 'show proc\n', { ...opts, timeoutMs: 100 })).rejects.toThrow(
      RuntimeTimeout,
    );
    const rt = new HaproxyRuntime({ adminSocket: join(dir, 'x'), masterSocket: path, timeoutMs: 500 });
    await expect(rt.reload()).rejects.toMatchObject({ reason: 'unexpected' });
  });

  it('sends the request and reads until HAProxy closes', async () => {
    const path = await serve((s, req) => s.end(`got ${req.trim()}\n\n`));
    expect(await unixSocketTransport(path, 'show info\n', opts)).toBe('got show info\n\n');
    const rt = new HaproxyRuntime({ adminSocket: path, timeoutMs: 500 });
    await expect(rt.execute({ verb: 'show info', line: 'show info' })).resolves.toBe('got show info');
  });

  it('reports a missing socket as RuntimeUnavailable with its code', async () => {
    const error = await unixSocketTransport(join(dir, 'missing.sock'), 'show info\n', opts).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(RuntimeUnavailable);
    expect(error).toMatchObject({ name: 'RuntimeUnavailable', code: 'ENOENT' });
  });

  it('reports a socket file nobody listens on as RuntimeUnavailable', async () => {
    const path = join(dir, 'stale.sock');
    await writeFile(path, '');
    await expect(unixSocketTransport(path, 'show info\n', opts)).rejects.toThrow(RuntimeUnavailable);
  });

  it('reports a connection closed before any answer as RuntimeUnavailable', async () => {
    const path = await serve((s) => s.destroy());
    const rt = new HaproxyRuntime({ adminSocket: path, timeoutMs: 500 });
    await expect(rt.showInfo()).rejects.toThrow(RuntimeUnavailable);
  });

  it('reports a partial answer as a protocol error', async () => {
    const path = await serve((s) => s.end('Name: HAProxy\nVers'));
    const rt = new HaproxyRuntime({ adminSocket: path, timeoutMs: 500 });
    await expect(rt.showInfo()).rejects.toThrow(RuntimeProtocolError);
  });

  it('reports a batch cut short as a protocol error', async () => {
    const path = await serve((s) => s.end('\n\n'));
    const rt = new HaproxyRuntime({ adminSocket: path, timeoutMs: 500 });
    await expect(
      rt.executeBatch([1, 2, 3].map((i) => ({ verb: 'add acl', line: `add acl /a 10.0.0.${i}` }))),
    ).rejects.toThrow(/answered 2 of 3/);
  });

  it('times out when HAProxy never finishes its answer', async () => {
    const path = await serve((s) => s.write('Name: HAProxy\n'));
    const error = await unixSocketTransport(path, 'show info\n', { ...opts, timeoutMs: 100 }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(RuntimeTimeout);
    expect(error).toBeInstanceOf(RuntimeUnavailable);
    expect(error).toMatchObject({ name: 'RuntimeTimeout', timeoutMs: 100 });
  });

  it('stops reading an answer larger than the bound', async () => {
    const path = await serve((s) => s.end(`${'x'.repeat(4096)}\n\n`));
    await expect(unixSocketTransport(path, 'show sess\n', opts)).rejects.toThrow(/larger than 1024/);
  });
});
