/**
 * The sidecar against a real HAProxy 2.6 on loopback: start → rendered → HAProxy → ready,
 * certificate and allowlist hot applies by nudge and poll, validation refusals with the previous
 * state still served, HAProxy and sidecar restarts, and the secret-leak check on every log line.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetConfigInput } from '../../lib/config/index.ts';
import { ValidationError } from '../../lib/errors.ts';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { LocalAuthority } from '../../lib/local/local-authority.ts';
import {
  type CertificateAuthorityMaterial,
  createCertificateAuthority,
  createCsr,
  generateKey,
  issueCertificate,
  normaliseSerial,
} from '../../lib/pki/index.ts';
import { type FleetTask, Stage } from '../../lib/ports.ts';
import { HttpTaskClient } from '../../lib/task-client/index.ts';
import { type LocalTask, startLocalTask } from '../../proxy/sidecar/local-task.ts';
import { freePort } from '../support/gateway.ts';
import { startTcpUpstream, type Upstream } from '../support/tls.ts';

const SERVER_NAME = 'api.sidecar.test';

interface Credential {
  cert: string;
  chain: string;
  key: string;
  serial: string;
}

let dir: string;
let store: FileSecretStore;
let authority: LocalAuthority;
let rogueCa: CertificateAuthorityMaterial;
let task: LocalTask;
let app: Upstream;
let client: HttpTaskClient;
let fleetTask: FleetTask;
let nudgeKey: Buffer;
let clientCredential: Credential;
let tlsPort: number;
let healthPort: number;
const lines: string[] = [];
/** Every secret value written to the store (the leak test searches the logs for them). */
const payloads: string[] = [];

const token = () => `${randomUUID()}-${randomBytes(4).toString('hex')}`;

async function put(secretId: string, value: string, stages: string[] = [Stage.Current]): Promise<string> {
  payloads.push(value);
  try {
    await store.describe(secretId);
  } catch {
    const { versionId } = await store.create(secretId, value, { clientRequestToken: token() });
    if (!stages.includes(Stage.Current)) throw new Error('first version is always current');
    return versionId;
  }
  return (await store.put(secretId, value, { clientRequestToken: token(), stages })).versionId;
}

/** A certificate from the fleet's CA through the LocalAuthority port (CSR, issue, get). */
async function issueFromAuthority(
  commonName: string,
  dns: string[],
  usage: 'server' | 'client',
): Promise<Credential> {
  const key = await generateKey();
  const csrPem = await createCsr(key, { commonName, dns });
  const { certificateId } = await authority.issue({
    csrPem,
    commonName,
    sans: { dns },
    validityDays: 2,
    idempotencyToken: randomUUID().slice(0, 36),
    usage,
  });
  const issued = await authority.get(certificateId);
  const serial =
    normaliseSerial(new (await import('node:crypto')).X509Certificate(issued.certificatePem).serialNumber) ??
    '';
  return { cert: issued.certificatePem, chain: issued.chainPem, key: key.privateKeyPem, serial };
}

async function issueFrom(
  ca: CertificateAuthorityMaterial,
  options: {
    commonName: string;
    dns?: string[];
    notBefore?: Date;
    notAfter?: Date;
    usage?: 'server' | 'client';
  },
): Promise<Credential> {
  const key = await generateKey();
  const issued = await issueCertificate(ca, {
    publicKeyPem: key.publicKeyPem,
    commonName: options.commonName,
    dns: options.dns ?? [],
    usage: options.usage ?? 'server',
    ...(options.notBefore ? { notBefore: options.notBefore } : {}),
    ...(options.notAfter ? { notAfter: options.notAfter } : {}),
  });
  return {
    cert: issued.certificatePem,
    chain: issued.chainPem,
    key: key.privateKeyPem,
    serial: issued.serial,
  };
}

function certificateDocument(c: Credential, overrides: Record<string, unknown> = {}): string {
  return JSON.stringify({
    certificatePem: c.cert,
    chainPem: c.chain,
    privateKeyPem: c.key,
    serial: c.serial,
    notAfter: new Date(Date.now() + 86_400_000).toISOString(),
    ...overrides,
  });
}

type Handshake =
  | { kind: 'ok'; serial: string; echoed: boolean }
  | { kind: 'refused'; serial?: string; error: string };

/** One mTLS connection through the gateway: handshake, one round trip through the app, close. */
function handshake(options: { cert?: string; key?: string; localAddress?: string } = {}): Promise<Handshake> {
  return new Promise((resolve) => {
    let serial: string | undefined;
    let settled = false;
    const done = (result: Handshake) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(result);
    };
    const socket = tls.connect({
      host: '127.0.0.1',
      port: tlsPort,
      servername: SERVER_NAME,
      rejectUnauthorized: false,
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
      ...(options.cert ? { cert: options.cert, key: options.key } : {}),
    });
    socket.setTimeout(5000, () => done({ kind: 'refused', ...(serial ? { serial } : {}), error: 'timeout' }));
    socket.once('secureConnect', () => {
      serial = normaliseSerial(socket.getPeerX509Certificate()?.serialNumber ?? '') ?? '';
      socket.write('ping\n');
    });
    socket.on('data', (data: Buffer) => {
      if (data.toString().includes('ping')) done({ kind: 'ok', serial: serial ?? '', echoed: true });
    });
    socket.once('error', (error) =>
      done({ kind: 'refused', ...(serial ? { serial } : {}), error: error.message }),
    );
    socket.once('close', () => done({ kind: 'refused', ...(serial ? { serial } : {}), error: 'closed' }));
  });
}

const withClient = () => handshake({ cert: clientCredential.cert, key: clientCredential.key });

async function servedSerial(): Promise<string> {
  const result = await withClient();
  if (result.kind !== 'ok') throw new Error(`handshake refused: ${result.error}`);
  return result.serial;
}

async function metrics(): Promise<string> {
  return (await fetch(`${task.sidecar.url}/metrics`)).text();
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-sc-'));
  store = await FileSecretStore.open(join(dir, 'store'));
  authority = await LocalAuthority.open(join(dir, 'ca'), { commonName: 'Sidecar Test CA' });
  rogueCa = await createCertificateAuthority({ commonName: 'Rogue CA' });
  app = await startTcpUpstream({ mode: 'echo' });
  nudgeKey = randomBytes(32);
  tlsPort = await freePort();
  healthPort = await freePort();
  const fleet: FleetConfigInput = {
    fleet: 'sidecar-test',
    listeners: { bind: ['127.0.0.1'], tls: tlsPort, http: null, health: healthPort, metrics: null },
    certificates: [
      { name: 'api', secretId: 'cert/api', commonName: SERVER_NAME, dns: [SERVER_NAME], usage: 'server' },
    ],
    trust: { secretId: 'trust' },
    nudgeKey: { secretId: 'nudge-key' },
    allowlist: { source: { secretId: 'allowlist' }, maxEntries: 50 },
    routes: [
      {
        mode: 'terminate',
        serverName: SERVER_NAME,
        certificate: 'api',
        clientAuth: 'strict',
        upstream: { kind: 'local', port: app.port },
      },
    ],
  };
  await put('fleet', JSON.stringify(fleet));
  await put('nudge-key', JSON.stringify({ key: nudgeKey.toString('base64') }));
  await put('trust', JSON.stringify({ caBundlePem: await authority.caCertificates() }));
  await put('cert/api', certificateDocument(await issueFromAuthority(SERVER_NAME, [SERVER_NAME], 'server')));
  await put('allowlist', JSON.stringify({ cidrs: ['127.0.0.1/32', '127.0.0.2/32'], reason: 'test' }));
  clientCredential = await issueFromAuthority('sidecar-client', ['client.sidecar.test'], 'client');

  task = await startLocalTask({
    sidecar: {
      store: { kind: 'file', dir: join(dir, 'store') },
      fleetConfig: { secretId: 'fleet' },
      gatewayDir: join(dir, 'gw'),
      admin: { host: '127.0.0.1', port: 0 },
      pollIntervalMs: 3_600_000,
      pollJitterMs: 0,
      watchIntervalMs: 100,
      autoOwnAddresses: false,
    },
    store,
    write: (line) => lines.push(line),
  });
  task.haproxy.onLine((line) => lines.push(line));
  client = new HttpTaskClient({ nudgeKey, timeoutMs: 10_000 });
  fleetTask = {
    taskId: 'local-1',
    address: '127.0.0.1',
    adminPort: task.sidecar.port,
    tlsAddress: '127.0.0.1',
    tlsPort,
    lastStatus: 'RUNNING',
  };
});

afterAll(async () => {
  await task?.close();
  await app?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('sidecar start', () => {
  it('renders, waits for HAProxy, sets the ready flag and serves the certificate from the store', async () => {
    const status = await client.status(fleetTask);
    expect(status.ready).toBe(true);
    expect(status.allowlist?.size).toBe(2);
    const current = await store.get('cert/api');
    expect(status.certificates.api?.versionId).toBe(current.versionId);
    expect(await servedSerial()).toBe(status.certificates.api?.serial);
    const health = await fetch(`http://127.0.0.1:${healthPort}/healthz`);
    expect(health.status).toBe(200);
    expect((await fetch(`${task.sidecar.url}/healthz`)).status).toBe(200);
    const key = await stat(join(dir, 'gw', 'certs', 'api.pem'));
    expect(key.mode & 0o777).toBe(0o600);
  });
});
