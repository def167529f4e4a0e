import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalDnsServer, startLocalDnsServer } from '../../lib/local/dns-server.ts';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { LocalAuthority } from '../../lib/local/local-authority.ts';
import { type FleetRegistry, ProcessFleet, RegistryFleet } from '../../lib/local/process-fleet.ts';
import { connectOnce, type TrafficRoute } from '../../lib/local/traffic.ts';
import { type LocalUpstream, startLocalUpstream } from '../../lib/local/upstream.ts';
import { createCsr, generateKey } from '../../lib/pki/index.ts';

function alive(pid: number | null): boolean {
  if (pid === null) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor(condition: () => Promise<boolean> | boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return condition();
}

describe('ProcessFleet (render mode: HAProxy per task rendered from the store)', () => {
  let dir: string;
  let dns: LocalDnsServer;
  let upstream: LocalUpstream;
  let fleet: ProcessFleet | undefined;
  let route: TrafficRoute;
  const pidsSeen: number[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-fleet-'));
    const store = await FileSecretStore.open(join(dir, 'store'));
    const ca = await LocalAuthority.open(join(dir, 'ca'));
    const key = await generateKey();
    const csrPem = await createCsr(key, { commonName: 'svc.fleet.test', dns: ['svc.fleet.test'] });
    const { certificateId } = await ca.issue({
      csrPem,
      commonName: 'svc.fleet.test',
      sans: { dns: ['svc.fleet.test'] },
      validityDays: 1,
      idempotencyToken: randomUUID(),
      usage: 'server',
    });
    const issued = await ca.get(certificateId);
    const caPem = await ca.caCertificates();
    upstream = await startLocalUpstream({
      host: '127.0.0.3',
      tls: { certificatePem: issued.certificatePem, keyPem: key.privateKeyPem },
    });
    dns = await startLocalDnsServer({ records: { 'svc.fleet.test': ['127.0.0.3'] } });
    route = { name: 'passthrough', serverName: 'svc.fleet.test', caPem };
    const config = {
      fleet: 'fleettest',
      listeners: { bind: ['127.0.0.1'] },
      proxyProtocol: { enabled: true, trustedPeers: ['127.0.0.1/32'] },
      resolvers: { nameservers: [dns.address] },
      allowLoopbackDestinations: true,
      routes: [
        {
          serverName: 'svc.fleet.test',
          upstream: { port: upstream.port },
          allowedDestinations: ['127.0.0.3/32'],
        },
      ],
      allowlist: { source: { secretId: 'portcullis/fleettest/allowlist' } },
    };
    await store.create('portcullis/fleettest/fleet-config', JSON.stringify(config), {
      clientRequestToken: randomUUID(),
    });
    await store.create(
      'portcullis/fleettest/allowlist',
      JSON.stringify({ cidrs: ['203.0.113.0/24'], reason: 'test' }),
      {
        clientRequestToken: randomUUID(),
      },
    );
    fleet = await ProcessFleet.start({
      dir: join(dir, 'fleet'),
      fleet: 'fleettest',
      tasks: 2,
      store,
      storeDir: join(dir, 'store'),
      fleetConfigSecretId: 'portcullis/fleettest/fleet-config',
      mode: 'render',
    });
    for (const p of fleet.processes()) if (p.haproxyPid !== null) pidsSeen.push(p.haproxyPid);
  });

  afterAll(async () => {
    await fleet?.stop();
    await upstream?.close();
    await dns?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('lists every task as RUNNING on its own loopback ports', async () => {
    const tasks = await fleet!.listTasks();
    expect(tasks.map((t) => t.taskId)).toEqual(['task-1', 'task-2']);
    expect(new Set(tasks.map((t) => t.tlsPort)).size).toBe(2);
    for (const task of tasks) expect(task).toMatchObject({ tlsAddress: '127.0.0.1', lastStatus: 'RUNNING' });
  });

  it('writes a registry other processes read the same tasks from', async () => {
    const registry = JSON.parse(await readFile(join(dir, 'fleet', 'registry.json'), 'utf8')) as FleetRegistry;
    expect(registry).toMatchObject({ fleet: 'fleettest', mode: 'render', ownerPid: process.pid });
    const reader = new RegistryFleet(join(dir, 'fleet'));
    expect((await reader.listTasks()).map((t) => t.tlsPort)).toEqual(
      (await fleet!.listTasks()).map((t) => t.tlsPort),
    );
    await expect(reader.roll()).rejects.toThrow(/only be replaced by the process that runs them/);
  });

  it('serves the allowlisted source through every task and refuses another', async () => {
    for (const endpoint of fleet!.endpoints()) {
      const allowed = await connectOnce({ endpoint, route, source: '203.0.113.9' });
      expect(allowed, endpoint.taskId).toMatchObject({ ok: true });
      const refused = await connectOnce({ endpoint, route, source: '192.0.2.1', timeoutMs: 3000 });
      expect(refused.ok, endpoint.taskId).toBe(false);
    }
  });

  it('rolls every task one by one: COMPLETED, new processes on the same ports', async () => {
    const before = await fleet!.listTasks();
    const oldPids = fleet!.processes().map((p) => p.haproxyPid);
    const { deploymentId } = await fleet!.roll();
    expect(await fleet!.rolloutState(deploymentId)).toBe('IN_PROGRESS');
    expect(await waitFor(async () => (await fleet!.rolloutState(deploymentId)) === 'COMPLETED', 20_000)).toBe(
      true,
    );
    const after = await fleet!.listTasks();
    expect(after.map((t) => t.tlsPort)).toEqual(before.map((t) => t.tlsPort));
    expect(fleet!.records().map((r) => r.generation)).toEqual([2, 2]);
    for (const pid of oldPids) expect(alive(pid)).toBe(false);
    for (const p of fleet!.processes()) if (p.haproxyPid !== null) pidsSeen.push(p.haproxyPid);
    for (const endpoint of fleet!.endpoints()) {
      expect(await connectOnce({ endpoint, route, source: '203.0.113.9' }), endpoint.taskId).toMatchObject({
        ok: true,
      });
    }
  });

  it('stop leaves no process and no registry behind', async () => {
    await fleet!.stop();
    for (const pid of pidsSeen) expect(alive(pid), String(pid)).toBe(false);
    expect(await new RegistryFleet(join(dir, 'fleet')).listTasks()).toEqual([]);
    await expect(readFile(join(dir, 'fleet', 'registry.json'))).rejects.toThrow(/ENOENT/);
    fleet = undefined;
  });
});
