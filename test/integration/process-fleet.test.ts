import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initFleet } from '../../cli/commands/init.ts';
import { type LocalDnsServer, startLocalDnsServer } from '../../embedded/dns-server.ts';
import {
  type FleetRegistry,
  freeTaskPorts,
  ProcessFleet,
  RegistryFleet,
  taskAddresses,
} from '../../embedded/process-fleet.ts';
import { type ConnectOutcome, connectOnce, type TrafficRoute } from '../../embedded/traffic.ts';
import { type LocalUpstream, startLocalUpstream } from '../../embedded/upstream.ts';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { LocalAuthority } from '../../lib/local/local-authority.ts';
import { createCsr, generateKey } from '../../lib/pki/index.ts';
import { readNudgeKey } from '../../lib/secrets/nudge-key.ts';
import { HttpTaskClient } from '../../lib/task-client/http-task-client.ts';
import { gatewayLayout } from '../../proxy/haproxy/layout.ts';

const FLEET = 'fleettest';
const FLEET_CONFIG = `portcullis/${FLEET}/fleet-config`;
const NUDGE_KEY = `portcullis/${FLEET}/nudge-key`;
const SERVED = 'svc.fleet.test';
/** Not routed at first; a fleet-config change adds it. */
const ADDED = 'new.fleet.test';
const UPSTREAM_HOST = '127.0.0.3';
const ALLOWED_SOURCE = '203.0.113.9';

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

describe('ProcessFleet: tasks on addresses of their own, one fleet config from the store', () => {
  let dir: string;
  let store: FileSecretStore;
  let dns: LocalDnsServer;
  let upstream: LocalUpstream;
  let fleet: ProcessFleet | undefined;
  let route: TrafficRoute;
  let added: TrafficRoute;
  let ports: { tls: number; health: number; verify: number };
  let fleetDocument: Record<string, unknown>;
  const pidsSeen: number[] = [];

  /** A failed connection's outcome with the task's last access-log lines (written when the session ends). */
  async function why(taskId: string, outcome: ConnectOutcome): Promise<string> {
    if (outcome.ok) return taskId;
    await new Promise((resolve) => setTimeout(resolve, 300));
    return `${taskId}: ${JSON.stringify(outcome)}\n${(await fleet!.accessLog(taskId)).slice(-3).join('\n')}`;
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-fleet-'));
    store = await FileSecretStore.open(join(dir, 'store'));
    const ca = await LocalAuthority.open(join(dir, 'ca'));
    const key = await generateKey();
    const names = [SERVED, ADDED];
    const csrPem = await createCsr(key, { commonName: SERVED, dns: names });
    const { certificateId } = await ca.issue({
      csrPem,
      commonName: SERVED,
      sans: { dns: names },
      validityDays: 1,
      idempotencyToken: randomUUID(),
      usage: 'server',
    });
    const issued = await ca.get(certificateId);
    const caPem = await ca.caCertificates();
    upstream = await startLocalUpstream({
      host: UPSTREAM_HOST,
      tls: { certificatePem: issued.certificatePem, keyPem: key.privateKeyPem },
    });
    dns = await startLocalDnsServer({ records: { [SERVED]: [UPSTREAM_HOST], [ADDED]: [UPSTREAM_HOST] } });
    route = { name: 'served', serverName: SERVED, caPem };
    added = { name: 'added', serverName: ADDED, caPem };
    const [tls, health, verify] = await freeTaskPorts(taskAddresses(2), 3);
    ports = { tls: tls!, health: health!, verify: verify! };
    fleetDocument = {
      fleet: FLEET,
      listeners: { bind: ['127.0.0.1'], ...ports, http: null, metrics: null },
      proxyProtocol: { enabled: true, trustedPeers: ['127.0.0.1/32'] },
      resolvers: { nameservers: [dns.address] },
      allowLoopbackDestinations: true,
      routes: [
        {
          serverName: SERVED,
          upstream: { port: upstream.port },
          allowedDestinations: [`${UPSTREAM_HOST}/32`],
        },
      ],
      allowlist: { source: { secretId: `portcullis/${FLEET}/allowlist` } },
      nudgeKey: { secretId: NUDGE_KEY },
    };
    await initFleet({
      store,
      authority: ca,
      fleet: FLEET,
      fleetConfigText: JSON.stringify(fleetDocument),
      allowlist: ['203.0.113.0/24'],
      reason: 'test',
    });
    fleet = await ProcessFleet.start({
      dir: join(dir, 'fleet'),
      fleet: FLEET,
      tasks: 2,
      store,
      storeDir: join(dir, 'store'),
      fleetConfigSecretId: FLEET_CONFIG,
      // No backstop poll during the test: only a nudge makes a task read the store again.
      sidecarPollMs: 600_000,
    });
    for (const p of fleet.processes()) if (p.haproxyPid !== null) pidsSeen.push(p.haproxyPid);
  }, 60_000);

  afterAll(async () => {
    await fleet?.stop();
    await upstream?.close();
    await dns?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('lists every task as RUNNING on its own loopback address, verified on the shared verify port', async () => {
    const tasks = await fleet!.listTasks();
    expect(tasks.map((t) => t.taskId)).toEqual(['task-1', 'task-2']);
    expect(tasks.map((t) => t.address)).toEqual(['127.0.1.1', '127.0.1.2']);
    const adminPort = tasks[0]!.adminPort;
    for (const task of tasks) {
      expect(task).toMatchObject({
        tlsAddress: task.address,
        tlsPort: ports.verify,
        adminPort,
        lastStatus: 'RUNNING',
      });
    }
    expect(fleet!.endpoints()).toEqual([
      { taskId: 'task-1', host: '127.0.1.1', port: ports.tls },
      { taskId: 'task-2', host: '127.0.1.2', port: ports.tls },
    ]);
  });

  it('has every sidecar read the one fleet-config secret and bind only its own address', async () => {
    for (const record of fleet!.records()) {
      const config = JSON.parse(await readFile(join(record.dir, 'sidecar.json'), 'utf8')) as Record<
        string,
        unknown
      >;
      expect(config).toMatchObject({
        fleetConfig: { secretId: FLEET_CONFIG },
        bindAddress: record.address,
        admin: { host: record.address },
      });
      const haproxyCfg = await readFile(join(record.dir, 'gateway', 'haproxy.cfg'), 'utf8');
      const binds = haproxyCfg
        .split('\n')
        .filter((line) => line.trim().startsWith('bind ') && !line.includes('unix@'));
      expect(binds.length).toBeGreaterThan(0);
      for (const bind of binds)
        expect(bind.trim(), record.taskId).toMatch(new RegExp(`^bind ${record.address}:\\d+$`));
      // Loopback destinations are allowed in this fleet, but never the task's own address.
      const denied = await readFile(gatewayLayout(join(record.dir, 'gateway')).deniedDestinations, 'utf8');
      expect(denied.split('\n'), record.taskId).toContain(`${record.address}/32`);
    }
  });

  it('writes a registry other processes read the same tasks from', async () => {
    const registry = JSON.parse(await readFile(join(dir, 'fleet', 'registry.json'), 'utf8')) as FleetRegistry;
    expect(registry).toMatchObject({ format: 2, fleet: FLEET, ownerPid: process.pid });
    expect(registry.tasks.map((t) => t.address)).toEqual(['127.0.1.1', '127.0.1.2']);
    const reader = new RegistryFleet(join(dir, 'fleet'));
    expect(await reader.listTasks()).toEqual(await fleet!.listTasks());
    await expect(reader.roll()).rejects.toThrow(/only be replaced by the process that runs them/);
  });

  it('serves the allowlisted source through every task and refuses another', async () => {
    for (const endpoint of fleet!.endpoints()) {
      const allowed = await connectOnce({ endpoint, route, source: ALLOWED_SOURCE });
      expect(allowed, await why(endpoint.taskId, allowed)).toMatchObject({ ok: true });
      const refused = await connectOnce({ endpoint, route, source: '192.0.2.1', timeoutMs: 3000 });
      expect(refused.ok, endpoint.taskId).toBe(false);
    }
    // Each task's access log (HAProxy's ring → the sidecar's sink → sidecar.log) has the refusal.
    for (const { taskId } of fleet!.endpoints()) {
      await expect
        .poll(async () => (await fleet!.accessLog(taskId)).map((l) => JSON.parse(l).refusal), {
          timeout: 5000,
        })
        .toContain('source-not-allowed');
    }
  });

  it('serves a route added to the fleet-config secret on every task once nudged', async () => {
    const endpoints = fleet!.endpoints();
    for (const endpoint of endpoints) {
      const before = await connectOnce({ endpoint, route: added, source: ALLOWED_SOURCE, timeoutMs: 3000 });
      expect(before.ok, endpoint.taskId).toBe(false);
    }
    const routes = [
      ...(fleetDocument.routes as unknown[]),
      { serverName: ADDED, upstream: { port: upstream.port }, allowedDestinations: [`${UPSTREAM_HOST}/32`] },
    ];
    await store.put(FLEET_CONFIG, JSON.stringify({ ...fleetDocument, routes }), {
      clientRequestToken: randomUUID(),
    });
    // Stored, not yet read: no task polls during the test.
    for (const endpoint of endpoints) {
      const unnudged = await connectOnce({ endpoint, route: added, source: ALLOWED_SOURCE, timeoutMs: 3000 });
      expect(unnudged.ok, endpoint.taskId).toBe(false);
    }

    const client = new HttpTaskClient({ nudgeKey: () => readNudgeKey(store, NUDGE_KEY) });
    for (const task of await fleet!.listTasks()) {
      const status = await client.nudge(task, { secretId: FLEET_CONFIG });
      expect(status.lastApply, task.taskId).toMatchObject({ ok: true });
    }

    for (const endpoint of endpoints) {
      const now = await connectOnce({ endpoint, route: added, source: ALLOWED_SOURCE });
      expect(now, await why(endpoint.taskId, now)).toMatchObject({ ok: true });
      const still = await connectOnce({ endpoint, route, source: ALLOWED_SOURCE });
      expect(still, await why(endpoint.taskId, still)).toMatchObject({ ok: true });
    }
  });

  it('rolls every task one by one: COMPLETED, new processes on the same addresses, reading the current config', async () => {
    const before = await fleet!.listTasks();
    const oldPids = fleet!.processes().map((p) => p.haproxyPid);
    const { deploymentId } = await fleet!.roll();
    expect(await fleet!.rolloutState(deploymentId)).toBe('IN_PROGRESS');
    expect(await waitFor(async () => (await fleet!.rolloutState(deploymentId)) === 'COMPLETED', 30_000)).toBe(
      true,
    );
    const after = await fleet!.listTasks();
    expect(after.map((t) => [t.address, t.tlsPort, t.adminPort])).toEqual(
      before.map((t) => [t.address, t.tlsPort, t.adminPort]),
    );
    expect(fleet!.records().map((r) => r.generation)).toEqual([2, 2]);
    for (const pid of oldPids) expect(alive(pid)).toBe(false);
    for (const p of fleet!.processes()) if (p.haproxyPid !== null) pidsSeen.push(p.haproxyPid);
    for (const endpoint of fleet!.endpoints()) {
      const outcome = await connectOnce({ endpoint, route: added, source: ALLOWED_SOURCE });
      expect(outcome, await why(endpoint.taskId, outcome)).toMatchObject({ ok: true });
    }
  }, 40_000);

  it('stop leaves no process and no registry behind', async () => {
    await fleet!.stop();
    for (const pid of pidsSeen) expect(alive(pid), String(pid)).toBe(false);
    expect(await new RegistryFleet(join(dir, 'fleet')).listTasks()).toEqual([]);
    await expect(readFile(join(dir, 'fleet', 'registry.json'))).rejects.toThrow(/ENOENT/);
    fleet = undefined;
  });
});
