/**
 * The shared setup of the tests that run a real sidecar and HAProxy on loopback (sidecar,
 * terminate, zero-downtime): credentials from a test CA, certificate documents as the store keeps
 * them, secret writes, and one local task reading a file store.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import tls from 'node:tls';
import type { FleetConfigInput } from '../../lib/config/index.ts';
import type { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import {
  type CertificateAuthorityMaterial,
  generateKey,
  issueCertificate,
  normaliseSerial,
} from '../../lib/pki/index.ts';
import { type FleetTask, Stage } from '../../lib/ports.ts';
import { gatewayLayout } from '../../proxy/haproxy/index.ts';
import { parseSidecarConfig, type SidecarConfigInput } from '../../proxy/sidecar/config.ts';
import { createContext, type SidecarContext } from '../../proxy/sidecar/context.ts';
import { type LocalTask, startLocalTask } from '../../proxy/sidecar/local-task.ts';
import { jsonLogger } from '../../proxy/sidecar/log.ts';
import type { GatewayRuntime } from '../../proxy/sidecar/runtime-port.ts';
import { storeReader } from '../../proxy/sidecar/store-view.ts';

/** A leaf with its chain and key, PEM, and its normalised serial. */
export interface Credential {
  cert: string;
  chain: string;
  key: string;
  serial: string;
}

/** A fresh key and a leaf for it from `ca`. */
export async function issueCredential(
  ca: CertificateAuthorityMaterial,
  options: {
    commonName: string;
    dns?: string[];
    uri?: string[];
    usage?: 'server' | 'client';
    notBefore?: Date;
    notAfter?: Date;
  },
): Promise<Credential> {
  const key = await generateKey();
  const issued = await issueCertificate(ca, {
    publicKeyPem: key.publicKeyPem,
    commonName: options.commonName,
    dns: options.dns ?? [],
    ...(options.uri === undefined ? {} : { uri: options.uri }),
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

/** The certificate secret's JSON for `c` (notAfter a day ahead unless overridden). */
export function certificateDocument(c: Credential, overrides: Record<string, unknown> = {}): string {
  return JSON.stringify({
    certificatePem: c.cert,
    chainPem: c.chain,
    privateKeyPem: c.key,
    serial: c.serial,
    notAfter: new Date(Date.now() + 86_400_000).toISOString(),
    ...overrides,
  });
}

const token = () => `${randomUUID()}-${randomBytes(4).toString('hex')}`;

/**
 * Writes `value` as a new version of `secretId` with `stages`, creating the secret (its first
 * version is always `AWSCURRENT`) when missing; returns the version id.
 */
export async function putSecret(
  store: FileSecretStore,
  secretId: string,
  value: string,
  stages: string[] = [Stage.Current],
): Promise<string> {
  try {
    await store.describe(secretId);
  } catch {
    if (!stages.includes(Stage.Current)) throw new Error('first version is always current');
    return (await store.create(secretId, value, { clientRequestToken: token() })).versionId;
  }
  return (await store.put(secretId, value, { clientRequestToken: token(), stages })).versionId;
}

/**
 * A fleet config document (JSON) with one terminate route per name in `names`, each served by
 * certificate secret `cert/<name>` (certificate name: the name's first label), trust bundle,
 * nudge key and (unless `allowlist: false`) allowlist secrets of the same names as
 * {@link testSidecarConfig}'s store uses. Listeners on loopback ports nothing binds unless a test
 * starts HAProxy.
 */
export function terminateFleetDocument(
  fleet: string,
  names: readonly string[],
  options: { clientAuth?: 'none' | 'strict'; trust?: string; allowlist?: boolean } = {},
): string {
  const config: FleetConfigInput = {
    fleet,
    listeners: { bind: ['127.0.0.1'], tls: 18443, http: null, health: 18080, metrics: null },
    certificates: names.map((name) => ({
      name: name.split('.')[0]!,
      secretId: `cert/${name}`,
      commonName: name,
      dns: [name],
      usage: 'server' as const,
    })),
    trust: { secretId: options.trust ?? 'trust' },
    nudgeKey: { secretId: 'nudge-key' },
    allowlist:
      options.allowlist === false
        ? { maxEntries: 10 }
        : { source: { secretId: 'allowlist' }, maxEntries: 10 },
    routes: names.map((name) => ({
      mode: 'terminate' as const,
      serverName: name,
      certificate: name.split('.')[0]!,
      clientAuth: options.clientAuth ?? 'strict',
      upstream: { kind: 'local' as const, port: 18081 },
    })),
  };
  return JSON.stringify(config);
}

/**
 * The sidecar settings every test task starts from: the file store in `dir/store`, the fleet
 * config in secret `fleet`, files in `dir/gw`, admin on an ephemeral loopback port, no poll and
 * no HAProxy watch to speak of (tests call `pollNow`), only the given addresses as its own.
 */
export function testSidecarConfig(
  dir: string,
  overrides: Partial<SidecarConfigInput> = {},
): SidecarConfigInput {
  return {
    store: { kind: 'file', dir: join(dir, 'store') },
    fleetConfig: { secretId: 'fleet' },
    gatewayDir: join(dir, 'gw'),
    admin: { host: '127.0.0.1', port: 0 },
    pollIntervalMs: 3_600_000,
    pollJitterMs: 0,
    watchIntervalMs: 3_600_000,
    autoOwnAddresses: false,
    ...overrides,
  };
}

/**
 * The sidecar's effect context for {@link testSidecarConfig}'s settings over `store`, with
 * `runtime` (a `FakeRuntime`) as both the runtime and the worker, log lines into `lines`, and no
 * object store (allowlist manifests are not read).
 */
export function testSidecarContext(options: {
  dir: string;
  store: FileSecretStore;
  runtime: GatewayRuntime;
  lines: string[];
}): SidecarContext {
  const config = parseSidecarConfig(testSidecarConfig(options.dir));
  return createContext({
    config,
    layout: gatewayLayout(config.gatewayDir),
    log: jsonLogger((line) => options.lines.push(line), 'debug'),
    now: () => new Date(),
    store: storeReader(options.store),
    objects: () => {
      throw new Error('no manifests in this test');
    },
    runtime: options.runtime,
    worker: () => options.runtime,
    fleetRef: { key: 'fleet', kind: 'fleet', secretId: 'fleet' },
    ownAddresses: [],
  });
}

/**
 * One gateway task (sidecar, then HAProxy) with {@link testSidecarConfig}'s settings, HAProxy
 * watched every `watchIntervalMs`.
 */
export function startTestTask(options: {
  dir: string;
  store: FileSecretStore;
  watchIntervalMs: number;
  write?: (line: string) => void;
  /** Further sidecar settings (e.g. `emf`). */
  extra?: Partial<SidecarConfigInput>;
}): Promise<LocalTask> {
  return startLocalTask({
    sidecar: testSidecarConfig(options.dir, { watchIntervalMs: options.watchIntervalMs, ...options.extra }),
    store: options.store,
    write: options.write ?? (() => {}),
  });
}

/** The control plane's view of a local task (what the task client nudges and asks). */
export function fleetTaskOf(taskId: string, task: LocalTask, tlsPort: number): FleetTask {
  return {
    taskId,
    address: '127.0.0.1',
    adminPort: task.sidecar.port,
    tlsAddress: '127.0.0.1',
    tlsPort,
    lastStatus: 'RUNNING',
  };
}

/** What {@link tlsExchange} saw: the served serial and the answer, or why it was refused. */
export type TlsExchange =
  | { kind: 'ok'; serial: string; data: string }
  | { kind: 'refused'; serial?: string; error: string };

/**
 * One TLS connection to the gateway on loopback (the gateway's certificate is not verified; the
 * serial it served is returned): handshake, `ping\n`, wait up to 5 s for `expect` in the answer,
 * close. A refusal at any step (alert, close, timeout) is a result, not an error.
 */
export function tlsExchange(options: {
  port: number;
  servername: string;
  credential?: { cert: string; key: string };
  localAddress?: string;
  /** Default `ping` (the echo upstream's answer). */
  expect?: string;
}): Promise<TlsExchange> {
  const expected = options.expect ?? 'ping';
  return new Promise((resolve) => {
    let serial: string | undefined;
    let data = '';
    let settled = false;
    const done = (outcome: TlsExchange) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(outcome);
    };
    const refused = (error: string) => done({ kind: 'refused', ...(serial ? { serial } : {}), error });
    const socket = tls.connect({
      host: '127.0.0.1',
      port: options.port,
      servername: options.servername,
      rejectUnauthorized: false,
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
      ...(options.credential ? { cert: options.credential.cert, key: options.credential.key } : {}),
    });
    socket.setTimeout(5000, () => refused('timeout'));
    socket.once('secureConnect', () => {
      serial = normaliseSerial(socket.getPeerX509Certificate()?.serialNumber ?? '') ?? '';
      socket.write('ping\n');
    });
    socket.on('data', (chunk: Buffer) => {
      data += chunk.toString();
      if (data.includes(expected)) done({ kind: 'ok', serial: serial ?? '', data });
    });
    socket.once('error', (error) => refused(error.message));
    socket.once('close', () => refused('closed'));
  });
}
