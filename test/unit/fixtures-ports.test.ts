import { describe, expect, it } from 'vitest';
import { freePort } from '../support/net.ts';

describe('freePort', () => {
  it('never hands out one port twice, even after the last one was closed', async () => {
    const ports = [];
    for (let i = 0; i < 200; i++) ports.push(await freePort(i % 2 === 0 ? '127.0.0.1' : '127.0.0.2'));
    expect(new Set(ports).size).toBe(ports.length);
    // Below the kernel's ephemeral range, so no outgoing connection can be holding one.
    for (const port of ports) expect(port).toBeLessThan(32_768);
  });
});
