import { mkdtemp, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type LogSink,
  logLine,
  parseOctetFrames,
  refusalLabels,
  startLogSink,
} from '../../proxy/sidecar/log-sink.ts';
import { MetricsRegistry } from '../../proxy/sidecar/metrics.ts';

const frame = (text: string) => {
  const bytes = Buffer.from(text, 'utf8');
  return Buffer.concat([Buffer.from(`${bytes.length} `), bytes]);
};
const NOW = () => new Date('2026-01-02T03:04:05.000Z');

describe('parseOctetFrames', () => {
  it('splits RFC 6587 frames and keeps a partial one for the next chunk', () => {
    const all = Buffer.concat([frame('{"a":1}'), frame('{"b":"two words"}'), frame('{"c":3}')]);
    const cut = all.length - 3;
    const first = parseOctetFrames(all.subarray(0, cut));
    expect(first.messages.map(String)).toEqual(['{"a":1}', '{"b":"two words"}']);
    expect(first.invalid).toBe(false);
    const second = parseOctetFrames(Buffer.concat([first.rest, all.subarray(cut)]));
    expect(second.messages.map(String)).toEqual(['{"c":3}']);
    expect(second.rest.length).toBe(0);
  });

  it('counts bytes, not characters, and waits for a length cut in its digits', () => {
    const text = '{"name":"äpp"}';
    const bytes = frame(text);
    expect(parseOctetFrames(bytes.subarray(0, 1))).toMatchObject({ messages: [], invalid: false });
    expect(parseOctetFrames(bytes).messages.map((m) => m.toString('utf8'))).toEqual([text]);
  });

  it('refuses what is not a length: text, a zero, a leading zero, a frame over 64 KiB', () => {
    for (const bad of ['hello world', '0 x', '012 {}', '70000 {}', 'x']) {
      expect(parseOctetFrames(Buffer.from(bad)).invalid, bad).toBe(true);
    }
  });
});

describe('logLine', () => {
  it('passes a JSON object through unchanged and reads its frontend and refusal', () => {
    const text = '{"frontend":"fe_tls","refusal":"no-route","n":1}';
    expect(logLine(text, NOW)).toEqual({
      line: text,
      wrapped: false,
      frontend: 'fe_tls',
      refusal: 'no-route',
    });
  });

  it('wraps anything else into a JSON line, so stdout carries JSON only', () => {
    for (const text of ['plain text', '[1,2]', '"a string"', '{"broken":', 'null']) {
      const out = logLine(text, NOW);
      expect(out.wrapped, text).toBe(true);
      expect(JSON.parse(out.line)).toEqual({
        time: '2026-01-02T03:04:05.000Z',
        component: 'haproxy',
        message: text,
      });
    }
  });

  it("reads HAProxy's announcement of lines the ring had no room for (3.2 ends it with a NUL)", () => {
    expect(logLine('1 event dropped', NOW)).toMatchObject({ droppedLines: 1, wrapped: false });
    const out = logLine('223 events dropped\u0000', NOW);
    expect(out.droppedLines).toBe(223);
    expect(JSON.parse(out.line)).toMatchObject({ message: '223 events dropped', dropped_lines: 223 });
  });
});

describe('refusalLabels', () => {
  it('keeps label values bounded: unknown listeners and reasons become other', () => {
    expect(refusalLabels('fe_http', 'invalid-host')).toEqual({ frontend: 'fe_http', reason: 'invalid-host' });
    expect(refusalLabels('fe_tls', 'proxy-header-missing')).toEqual({
      frontend: 'fe_tls',
      reason: 'proxy-header-missing',
    });
    expect(refusalLabels('fe_terminate', 'tls-handshake-failed').reason).toBe('tls-handshake-failed');
    expect(refusalLabels('evil"frontend', 'x'.repeat(300))).toEqual({ frontend: 'other', reason: 'other' });
    expect(refusalLabels(undefined, 'no-route').frontend).toBe('other');
  });
});

describe('startLogSink', () => {
  let dir: string;
  let sink: LogSink | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-sink-'));
  });
  afterEach(async () => {
    await sink?.close();
    sink = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  const connect = (path: string) =>
    new Promise<net.Socket>((resolve, reject) => {
      const socket = net.connect(path, () => resolve(socket));
      socket.once('error', reject);
    });

  it('writes every framed line to its output, counts refusals, and exports them', async () => {
    const out: string[] = [];
    sink = await startLogSink({ path: join(dir, 'run', 'log.sock'), output: (l) => out.push(l), now: NOW });
    expect((await stat(sink.path)).mode & 0o777).toBe(0o600);
    const socket = await connect(sink.path);
    const bytes = Buffer.concat([
      frame('{"frontend":"fe_tls","refusal":"no-route"}'),
      frame('{"frontend":"fe_tls","refusal":"-"}'),
      frame('{"frontend":"fe_http","refusal":"invalid-host"}'),
      frame('not json'),
      frame('3 events dropped'),
    ]);
    // One byte at a time: frames cut anywhere are put back together.
    for (const byte of bytes) socket.write(Buffer.from([byte]));
    await expect.poll(() => out.length).toBe(5);
    socket.destroy();
    expect(out.every((l) => l.endsWith('\n') && JSON.parse(l) !== null)).toBe(true);
    expect(sink.counts()).toMatchObject({ lines: 5, wrapped: 1, overflows: 1 });
    sink.observeDropped(100, 2);
    // A reload: the new worker counts from 0 again; the total keeps what the old one had.
    sink.observeDropped(200, 1);
    expect(sink.dropped()).toBe(3 + 2 + 1);
    const registry = new MetricsRegistry();
    sink.contributor(registry);
    const text = registry.render();
    expect(text).toContain('portcullis_access_log_lines_total 5');
    expect(text).toContain('portcullis_access_log_dropped_lines_total 6');
    expect(text).toContain('portcullis_access_log_ring_overflows_total 1');
    expect(text).toContain('portcullis_gateway_refusals_total{frontend="fe_http",reason="invalid-host"} 1');
    expect(text).toContain('portcullis_gateway_refusals_total{frontend="fe_tls",reason="no-route"} 1');
    expect(text).not.toContain('reason="-"');
  });

  it('stops reading while its output is full and goes on after drain, losing nothing', async () => {
    const written: string[] = [];
    let release: (() => void) | undefined;
    const slow = new Writable({
      highWaterMark: 64,
      write(chunk: Buffer, _encoding, callback) {
        written.push(chunk.toString());
        release = callback;
      },
    });
    sink = await startLogSink({ path: join(dir, 'log.sock'), output: slow });
    const socket = await connect(sink.path);
    const count = 2000;
    socket.write(Buffer.concat(Array.from({ length: count }, (_, i) => frame(`{"i":${i}}`))));
    for (let i = 0; i < 10_000 && written.length < count; i++) {
      await new Promise((r) => setTimeout(r, 0));
      const next = release;
      release = undefined;
      next?.();
    }
    expect(written.length).toBe(count);
    expect(written.map((l) => JSON.parse(l).i)).toEqual(Array.from({ length: count }, (_, i) => i));
    socket.destroy();
  });

  it('closes a connection that does not speak the framing, and says so in a JSON line', async () => {
    const out: string[] = [];
    sink = await startLogSink({ path: join(dir, 'log.sock'), output: (l) => out.push(l), now: NOW });
    const socket = await connect(sink.path);
    const closed = new Promise((r) => socket.once('close', r));
    socket.write('GET / HTTP/1.1\r\n\r\n');
    await closed;
    expect(out).toHaveLength(1);
    expect(JSON.parse(out[0]!).message).toMatch(/unframed bytes/);
  });

  it('replaces a stale socket file, and removes its socket on close', async () => {
    const path = join(dir, 'log.sock');
    const stale: string[] = [];
    const first = await startLogSink({ path, output: (l) => stale.push(l) });
    // A restarted sidecar finds the file of the previous one and listens in its place.
    const out: string[] = [];
    sink = await startLogSink({ path, output: (l) => out.push(l) });
    const socket = await connect(path);
    socket.write(frame('{"to":"second"}'));
    await expect.poll(() => out.length).toBe(1);
    expect(stale).toEqual([]);
    socket.destroy();
    await sink.close();
    sink = undefined;
    await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' });
    await first.close();
  });
});
