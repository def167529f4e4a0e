import { describe, expect, it } from 'vitest';
import { SESSION_TABLE } from '../../proxy/haproxy/index.ts';
import { HaproxyRuntime } from '../../proxy/haproxy/runtime.ts';
import type { RuntimeTransport } from '../../proxy/haproxy/runtime-transport.ts';
import { cutRemovedSources } from '../../proxy/sidecar/apply.ts';

/** A gateway with one open session: client 10.1.2.3 (from PROXY) through the peer 127.0.0.1:5555. */
function oneSession() {
  const shutdowns: string[] = [];
  const transport: RuntimeTransport = async (_socket, request) => {
    if (request === `show table ${SESSION_TABLE}\n`)
      return `# table: ${SESSION_TABLE}, type: string, size:16, used:1\n0x7f01: key=10.1.2.3@127.0.0.1:5555 use=1 exp=0 conn_cur=1\n\n`;
    if (request === 'show sess\n')
      return '0x9: proto=tcpv4 src=127.0.0.1:5555 fe=fe_tls be=be srv=s ts=00 age=1s\n\n';
    if (request === 'show sess 0x9\n')
      return '0x9: [23/Nov/2026:16:15:00.149345] id=7 proto=tcpv4 source=127.0.0.1:5555\n  flags=0x4a, conn_retries=0\n  frontend=fe_tls (id=5 mode=tcp), listener=? (id=1) addr=127.0.0.1:443\n\n';
    if (request.startsWith('shutdown session')) shutdowns.push(request);
    return '\n';
  };
  return { runtime: new HaproxyRuntime({ adminSocket: '/s', transport }), shutdowns };
}

describe('cutRemovedSources', () => {
  it('cuts an IPv4 client that only a removed IPv4-mapped entry admitted (HAProxy matches it so)', async () => {
    const { runtime, shutdowns } = oneSession();
    expect(await cutRemovedSources(runtime, ['::ffff:10.0.0.0/104', '192.0.2.0/24'], ['192.0.2.0/24'])).toBe(
      1,
    );
    expect(shutdowns).toEqual(['shutdown session 0x9\n']);
  });

  it('keeps an IPv4 client the new list still admits through its IPv4-mapped form', async () => {
    const { runtime, shutdowns } = oneSession();
    expect(await cutRemovedSources(runtime, ['10.0.0.0/8'], ['::ffff:10.0.0.0/104'])).toBe(0);
    expect(shutdowns).toEqual([]);
  });

  it('cuts a client no longer on the list and keeps one still on it', async () => {
    const cut = oneSession();
    expect(await cutRemovedSources(cut.runtime, ['10.0.0.0/8'], ['192.0.2.0/24'])).toBe(1);
    const kept = oneSession();
    expect(await cutRemovedSources(kept.runtime, ['10.0.0.0/8'], ['10.1.0.0/16'])).toBe(0);
  });
});
