import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { CONTAINER_ROOT, containerLayout, haproxyArgs } from '../../proxy/haproxy/index.ts';

describe('proxy/Dockerfile', () => {
  it('runs HAProxy with exactly haproxyArgs of the container layout', async () => {
    const dockerfile = await readFile(new URL('../../proxy/Dockerfile', import.meta.url), 'utf8');
    const cmd = /^CMD\s+(\[.*\])\s*$/m.exec(dockerfile);
    expect(cmd).not.toBeNull();
    expect(JSON.parse(cmd![1]!)).toEqual(haproxyArgs(containerLayout()));
  });

  it('keeps the shared volume where the container layout expects it', async () => {
    const dockerfile = await readFile(new URL('../../proxy/Dockerfile', import.meta.url), 'utf8');
    expect(dockerfile).toContain(`VOLUME ["${CONTAINER_ROOT}"]`);
    expect(dockerfile).toMatch(/^FROM haproxy:\d+\.\d+/m);
    expect(dockerfile).toMatch(/^USER haproxy$/m);
  });
});

describe('haproxyArgs', () => {
  it('starts master-worker in the foreground with a private master socket', () => {
    expect(haproxyArgs(containerLayout())).toEqual([
      '-W',
      '-db',
      '-S',
      '/var/run/portcullis/run/master.sock,mode,600',
      '-f',
      '/var/run/portcullis/haproxy.cfg',
    ]);
  });
});
