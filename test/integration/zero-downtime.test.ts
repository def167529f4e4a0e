/**
 * Zero-downtime proof. While a client opens new mTLS connections in a loop and several
 * long-lived connections stream data both ways, the server certificate, the trust bundle that
 * client certificates are verified against and the allowlist are each rotated 20 times through
 * the sidecar's nudge; then the trust bundle rolls over to a new CA in three steps with clients
 * of both generations. No handshake may fail, no long-lived connection may drop, and after every
 * certificate apply the next handshake must see the new serial.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import {
  type CertificateAuthorityMaterial,
  createCertificateAuthority,
  normaliseSerial,
} from '../../lib/pki/index.ts';
import type { FleetTask } from '../../lib/ports.ts';
import { HttpTaskClient } from '../../lib/task-client/index.ts';
import type { LocalTask } from '../../proxy/sidecar/local-task.ts';
import { freePort } from '../support/gateway.ts';
import {
  type Credential,
  certificateDocument,
  fleetTaskOf,
  issueCredential,
  putSecret,
  startTestTask,
} from '../support/sidecar.ts';
import { startTcpUpstream, type Upstream } from '../support/tls.ts';

const SERVER_NAME = 'zero.downtime.test';
const ROTATIONS = 20;

let dir: string;
let store: FileSecretStore;
let oldCa: CertificateAuthorityMaterial;
let newCa: CertificateAuthorityMaterial;
let app: Upstream;
let task: LocalTask;
let client: HttpTaskClient;
let fleetTask: FleetTask;
let tlsPort: number;
let oldClient: Credential;
let newClient: Credential;

const put = (secretId: string, value: string) => putSecret(store, secretId, value);

const issue = (ca: CertificateAuthorityMaterial, commonName: string, usage: 'server' | 'client') =>
  issueCredential(ca, {
    commonName,
    dns: usage === 'server' ? [SERVER_NAME] : [`${commonName}.clients.test`],
    usage,
  });

/** Applies a new AWSCURRENT version through a signed nudge; returns the status it answered with. */
async function rotate(secretId: string, value: string) {
  const versionId = await put(secretId, value);
  const status = await client.nudge(fleetTask, { secretId, versionId });
  return { versionId, status };
}

function connect(credential: Credential): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(
      {
        host: '127.0.0.1',
        port: tlsPort,
        servername: SERVER_NAME,
        // The client verifies the gateway too: both generations of CA during the rollover.
        ca: [oldCa.certificatePem, newCa.certificatePem],
        cert: credential.cert,
        key: credential.key,
      },
      () => resolve(socket),
    );
    socket.once('error', reject);
  });
}

/** Handshake, one echo round trip, close; returns the served serial or throws. */
async function roundTrip(credential: Credential): Promise<string> {
  const socket = await connect(credential);
  try {
    const serial = normaliseSerial(socket.getPeerX509Certificate()?.serialNumber ?? '') ?? '';
    const echoed = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no echo within 5 s')), 5000);
      socket.once('data', (data: Buffer) => {
        clearTimeout(timer);
        resolve(data.toString());
      });
      socket.once('close', () => reject(new Error('closed before the echo')));
      socket.write('ping\n');
    });
    if (echoed !== 'ping\n') throw new Error(`unexpected echo ${JSON.stringify(echoed)}`);
    return serial;
  } finally {
    socket.destroy();
  }
}

/** New connections in a loop with every credential in turn, until stopped; counts failures. */
function connectionLoop(credentials: () => Credential[]) {
  let stop = false;
  const result = { attempts: 0, failures: [] as string[] };
  const done = (async () => {
    for (let i = 0; i < 5000 && !stop; i++) {
      const list = credentials();
      const credential = list[i % list.length]!;
      try {
        await roundTrip(credential);
      } catch (error) {
        result.failures.push((error as Error).message);
      }
      result.attempts++;
    }
  })();
  return {
    result,
    async stop() {
      stop = true;
      await done;
      return result;
    },
  };
}

/** A long-lived connection that keeps streaming data both ways and checks every echoed byte. */
async function stream(credential: Credential) {
  const socket = await connect(credential);
  // Under TLS 1.3 the client's handshake ends before the gateway has judged its certificate:
  // one echo proves the connection was accepted.
  await new Promise<void>((resolve, reject) => {
    socket.once('data', () => resolve());
    socket.once('close', () => reject(new Error('refused')));
    socket.write('hello\n');
  });
  let sent = 0;
  let received = 0;
  let closed = false;
  let mismatch = false;
  let expected = '';
  socket.on('data', (data: Buffer) => {
    const text = data.toString();
    if (!expected.startsWith(text)) mismatch = true;
    expected = expected.slice(text.length);
    received += data.length;
  });
  socket.once('close', () => {
    closed = true;
  });
  socket.on('error', () => {});
  const timer = setInterval(() => {
    const chunk = `${sent}:${'x'.repeat(200)}\n`;
    expected += chunk;
    sent += chunk.length;
    socket.write(chunk);
  }, 10);
  return {
    state: () => ({ sent, received, closed, mismatch }),
    async end() {
      clearInterval(timer);
      // Everything sent must come back before the connection is closed.
      for (let i = 0; i < 100 && received < sent && !closed; i++) await new Promise((r) => setTimeout(r, 20));
      const last = { sent, received, closed, mismatch };
      socket.destroy();
      return last;
    },
  };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-zd-'));
  store = await FileSecretStore.open(join(dir, 'store'));
  oldCa = await createCertificateAuthority({ commonName: 'Zero Downtime Old CA' });
  newCa = await createCertificateAuthority({ commonName: 'Zero Downtime New CA' });
  oldClient = await issue(oldCa, 'old-client', 'client');
  newClient = await issue(newCa, 'new-client', 'client');
  app = await startTcpUpstream({ mode: 'echo' });
  tlsPort = await freePort();
  const nudgeKey = randomBytes(32);
  await put(
    'fleet',
    JSON.stringify({
      fleet: 'zero-downtime',
      listeners: { bind: ['127.0.0.1'], tls: tlsPort, http: null, health: await freePort(), metrics: null },
      certificates: [
        { name: 'api', secretId: 'cert/api', commonName: SERVER_NAME, dns: [SERVER_NAME], usage: 'server' },
      ],
      trust: { secretId: 'trust' },
      nudgeKey: { secretId: 'nudge-key' },
      allowlist: { source: { secretId: 'allowlist' } },
      routes: [
        {
          mode: 'terminate',
          serverName: SERVER_NAME,
          certificate: 'api',
          clientAuth: 'strict',
          upstream: { kind: 'local', port: app.port },
        },
      ],
    }),
  );
  await put('nudge-key', JSON.stringify({ key: nudgeKey.toString('base64') }));
  await put('trust', JSON.stringify({ caBundlePem: oldCa.certificatePem }));
  await put('cert/api', certificateDocument(await issue(oldCa, SERVER_NAME, 'server')));
  await put('allowlist', JSON.stringify({ cidrs: ['127.0.0.1/32'] }));
  task = await startTestTask({ dir, store, watchIntervalMs: 200 });
  client = new HttpTaskClient({ nudgeKey, timeoutMs: 10_000 });
  fleetTask = fleetTaskOf('zd-1', task, tlsPort);
});

afterAll(async () => {
  await task?.close();
  await app?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('zero-downtime rotation', () => {
  it(`rotates the server certificate, the trust bundle and the allowlist ${ROTATIONS} times each without a failed handshake or a dropped connection`, async () => {
    const streams = await Promise.all([oldClient, oldClient, oldClient, oldClient].map(stream));
    const loop = connectionLoop(() => [oldClient]);
    for (let i = 0; i < ROTATIONS; i++) {
      const leaf = await issue(oldCa, SERVER_NAME, 'server');
      const { status } = await rotate('cert/api', certificateDocument(leaf));
      expect(status.certificates.api?.serial).toBe(leaf.serial);
      expect(await roundTrip(oldClient)).toBe(leaf.serial);

      // Each trust version keeps the clients' CA and adds a different second one.
      const extra = await createCertificateAuthority({ commonName: `Zero Downtime Extra CA ${i}` });
      const trust = await rotate(
        'trust',
        JSON.stringify({ caBundlePem: oldCa.certificatePem + extra.certificatePem }),
      );
      expect(trust.status.trust?.versionId).toBe(trust.versionId);

      const allowlist = await rotate(
        'allowlist',
        JSON.stringify({ cidrs: ['127.0.0.1/32', `10.${i}.0.0/16`] }),
      );
      expect(allowlist.status.allowlist).toEqual({ versionId: allowlist.versionId, size: 2 });
    }
    const traffic = await loop.stop();
    const ended = await Promise.all(streams.map((s) => s.end()));
    expect(traffic.failures).toEqual([]);
    expect(traffic.attempts).toBeGreaterThan(ROTATIONS);
    for (const s of ended) {
      expect(s).toMatchObject({ closed: false, mismatch: false });
      expect(s.received).toBe(s.sent);
      expect(s.sent).toBeGreaterThan(0);
    }
    const metrics = await (await fetch(`${task.sidecar.url}/metrics`)).text();
    expect(metrics).toContain(
      `portcullis_sidecar_applies_total{kind="certificate",result="ok",reason=""} ${ROTATIONS + 1}`,
    );
  });

  it('rolls the trust bundle over to a new CA in three steps with clients of both generations', async () => {
    const streams = await Promise.all([oldClient, newClient].map((c) => stream(c).catch(() => undefined)));
    // The new-generation client is not trusted yet: only the old stream exists.
    expect(streams[1]).toBeUndefined();
    const oldStream = streams[0]!;
    let generation: Credential[] = [oldClient];
    const loop = connectionLoop(() => generation);

    // 1. add the new CA: both generations are accepted
    await rotate('trust', JSON.stringify({ caBundlePem: oldCa.certificatePem + newCa.certificatePem }));
    generation = [oldClient, newClient];
    const newStream = await stream(newClient);

    // 2. rotate the server leaf to one issued by the new CA
    const leaf = await issue(newCa, SERVER_NAME, 'server');
    await rotate('cert/api', certificateDocument(leaf));
    expect(await roundTrip(newClient)).toBe(leaf.serial);
    expect(await roundTrip(oldClient)).toBe(leaf.serial);

    // 3. remove the old CA: the new generation keeps working, the old one is refused from now on
    generation = [newClient];
    await rotate('trust', JSON.stringify({ caBundlePem: newCa.certificatePem }));
    const traffic = await loop.stop();
    expect(traffic.failures).toEqual([]);
    expect(await roundTrip(newClient)).toBe(leaf.serial);
    await expect(roundTrip(oldClient)).rejects.toThrow();

    // Established connections are not re-verified: neither generation's stream dropped.
    for (const s of [await oldStream.end(), await newStream.end()]) {
      expect(s).toMatchObject({ closed: false, mismatch: false });
      expect(s.received).toBe(s.sent);
    }
  });
});
