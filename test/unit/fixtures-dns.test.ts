import { type ChildProcess, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { promises as dnsPromises } from 'node:dns';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DnsType,
  decodeDnsMessage,
  encodeDnsMessage,
  frameDnsTcp,
  readDnsTcpFrame,
} from '../../lib/net/dns.ts';
import { type DnsServer, dnsQuery, QUERY_EDNS, startDnsServer } from '../support/dns.ts';
import { HAPROXY, HAPROXY_BIN } from '../support/haproxy.ts';

let server: DnsServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

function resolverFor(dns: DnsServer): dnsPromises.Resolver {
  // One try, short timeout: a broken responder fails the test quickly instead of hanging it.
  const resolver = new dnsPromises.Resolver({ timeout: 1000, tries: 1 });
  resolver.setServers([dns.address]);
  return resolver;
}

function rawQuery(name: string, type: number, id: number): Buffer {
  return encodeDnsMessage(dnsQuery(name, type, { id, edns: QUERY_EDNS }));
}

describe('startDnsServer', () => {
  it('answers A and AAAA queries from node:dns through its resolver', async () => {
    server = await startDnsServer({
      records: { 'api.internal': ['169.254.171.5', 'fd00:ec2:80::5'] },
      ttl: 7,
    });
    const resolver = resolverFor(server);
    expect(await resolver.resolve4('api.internal', { ttl: true })).toEqual([
      { address: '169.254.171.5', ttl: 7 },
    ]);
    expect(await resolver.resolve6('API.internal')).toEqual(['fd00:ec2:80::5']);
    expect(server.queries('api.internal')).toBe(2);
    expect(server.queries('api.internal', DnsType.AAAA)).toBe(1);
  });

  it('answers NXDOMAIN for unknown names', async () => {
    server = await startDnsServer({ records: {} });
    await expect(resolverFor(server).resolve4('missing.internal')).rejects.toMatchObject({
      code: 'ENOTFOUND',
    });
    expect(server.log).toMatchObject([{ name: 'missing.internal', type: DnsType.A, rcode: 3 }]);
  });

  it('serves changed answers after setRecords, and from a function', async () => {
    server = await startDnsServer({ records: { 'api.internal': ['10.0.0.1'] } });
    const resolver = resolverFor(server);
    expect(await resolver.resolve4('api.internal')).toEqual(['10.0.0.1']);
    server.setRecords({ 'api.internal': ['10.0.0.2'] });
    expect(await resolver.resolve4('api.internal')).toEqual(['10.0.0.2']);
    let n = 0;
    server.setRecords((name) => (name === 'api.internal' ? [`10.0.1.${++n}`] : undefined));
    expect(await resolver.resolve4('api.internal')).toEqual(['10.0.1.1']);
    expect(await resolver.resolve4('api.internal')).toEqual(['10.0.1.2']);
  });

  it('fails on demand with SERVFAIL, or by not answering', async () => {
    server = await startDnsServer({ records: { 'api.internal': ['10.0.0.1'] } });
    const resolver = resolverFor(server);
    server.setFailure('servfail');
    await expect(resolver.resolve4('api.internal')).rejects.toMatchObject({ code: 'ESERVFAIL' });
    server.setFailure('drop');
    await expect(resolver.resolve4('api.internal')).rejects.toMatchObject({ code: 'ETIMEOUT' });
    server.setFailure(undefined);
    expect(await resolver.resolve4('api.internal')).toEqual(['10.0.0.1']);
  });

  it('echoes id, question and an OPT record over UDP, as HAProxy resolvers require', async () => {
    server = await startDnsServer({ records: { 'api.internal': ['10.0.0.1'] } });
    const socket = dgram.createSocket('udp4');
    try {
      const reply = await new Promise<Buffer>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no DNS answer within 2 s')), 2000);
        socket.once('message', (msg) => {
          clearTimeout(timer);
          resolve(msg);
        });
        socket.send(rawQuery('Api.Internal', DnsType.A, 0xbeef), server!.port, '127.0.0.1');
      });
      const decoded = decodeDnsMessage(reply);
      expect(decoded).toMatchObject({
        kind: 'ok',
        message: {
          id: 0xbeef,
          flags: { qr: true, rcode: 0 },
          questions: [{ name: 'Api.Internal', type: DnsType.A, class: 1 }],
          answers: [{ name: 'Api.Internal', data: { kind: 'a', address: '10.0.0.1' } }],
          edns: { version: 0, udpPayloadSize: 1232 },
        },
      });
      expect(server.log[0]).toMatchObject({ transport: 'udp', hadEdns: true });
    } finally {
      socket.close();
    }
  });

  it('answers over TCP on the same port, one frame per query', async () => {
    server = await startDnsServer({ records: { 'api.internal': ['10.0.0.1', '10.0.0.2'] } });
    const socket = net.connect(server.port, '127.0.0.1');
    try {
      const frames = Buffer.concat([
        frameDnsTcp(rawQuery('api.internal', DnsType.A, 1)),
        frameDnsTcp(rawQuery('x.internal', DnsType.A, 2)),
      ]);
      // Sent split mid-frame, to exercise reassembly.
      socket.write(frames.subarray(0, 5));
      socket.write(frames.subarray(5));
      const replies = await new Promise<Buffer[]>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no TCP DNS answers within 2 s')), 2000);
        let pending = Buffer.alloc(0);
        const got: Buffer[] = [];
        socket.on('data', (chunk) => {
          pending = Buffer.concat([pending, chunk]);
          for (let frame = readDnsTcpFrame(pending); frame.kind === 'ok'; frame = readDnsTcpFrame(pending)) {
            got.push(frame.message);
            pending = pending.subarray(frame.length);
          }
          if (got.length === 2) {
            clearTimeout(timer);
            resolve(got);
          }
        });
        socket.on('error', reject);
      });
      const [first, second] = replies.map((r) => decodeDnsMessage(r));
      expect(first).toMatchObject({ kind: 'ok', message: { id: 1, flags: { rcode: 0 } } });
      expect(first?.kind === 'ok' && first.message.answers).toHaveLength(2);
      expect(second).toMatchObject({ kind: 'ok', message: { id: 2, flags: { rcode: 3 } } });
      expect(server.log.map((e) => e.transport)).toEqual(['tcp', 'tcp']);
    } finally {
      socket.destroy();
    }
  });
});

/** One runtime-API command over HAProxy's stats socket. */
function haproxyCommand(socketPath: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let out = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer to "${command}"`));
    }, 2000);
    socket.on('data', (d) => (out += d));
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    socket.write(`${command}\n`);
  });
}

describe(`startDnsServer as an ${HAPROXY.label} nameserver`, () => {
  let dir: string | undefined;
  let haproxy: ChildProcess | undefined;
  afterEach(async () => {
    if (haproxy && haproxy.exitCode === null) {
      const exited = new Promise((resolve) => haproxy!.once('exit', resolve));
      haproxy.kill('SIGTERM');
      await exited;
    }
    haproxy = undefined;
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('resolves server addresses for HAProxy, over EDNS0, and follows a changed answer', async () => {
    server = await startDnsServer({ records: { 'api.internal': ['127.0.0.5', '::1'] }, ttl: 1 });
    dir = await mkdtemp(join(tmpdir(), 'portcullis-dns-haproxy-'));
    const stats = join(dir, 'stats.sock');
    await writeFile(
      join(dir, 'haproxy.cfg'),
      [
        'global',
        `  stats socket ${stats} level admin`,
        'defaults',
        '  mode tcp',
        '  timeout connect 1s',
        '  timeout client 1s',
        '  timeout server 1s',
        'resolvers test',
        `  nameserver dns1 ${server.address}`,
        '  accepted_payload_size 1232',
        '  hold valid 200ms',
        '  timeout resolve 200ms',
        '  timeout retry 200ms',
        'backend upstreams',
        '  server v4 api.internal:9443 resolvers test init-addr none resolve-prefer ipv4',
        '  server v6 api.internal:9443 resolvers test init-addr none resolve-prefer ipv6',
        '',
      ].join('\n'),
    );
    const output: string[] = [];
    haproxy = spawn(HAPROXY_BIN, ['-db', '-f', join(dir, 'haproxy.cfg')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    haproxy.stdout?.on('data', (d) => output.push(String(d)));
    haproxy.stderr?.on('data', (d) => output.push(String(d)));

    const addresses = async (): Promise<Record<string, string>> => {
      const state = await haproxyCommand(stats, 'show servers state upstreams').catch(() => '');
      const result: Record<string, string> = {};
      for (const line of state.split('\n')) {
        const fields = line.split(' ');
        if (fields[1] === 'upstreams') result[fields[3]!] = fields[4]!;
      }
      return result;
    };
    const waitFor = async (expected: Record<string, string>) => {
      let last: Record<string, string> = {};
      for (let attempt = 0; attempt < 50; attempt++) {
        last = await addresses();
        if (JSON.stringify(last) === JSON.stringify(expected)) return;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      throw new Error(`HAProxy servers are ${JSON.stringify(last)}; log: ${output.join('')}`);
    };

    await waitFor({ v4: '127.0.0.5', v6: '::1' });
    expect(server.log.length).toBeGreaterThan(0);
    expect(server.log.every((entry) => entry.hadEdns && entry.transport === 'udp')).toBe(true);
    server.setRecords({ 'api.internal': ['127.0.0.6', '::1'] });
    await waitFor({ v4: '127.0.0.6', v6: '::1' });
  });
});
