/**
 * A throwaway HAProxy for integration tests: master-worker in the foreground with a master CLI
 * and an admin stats socket in a temp dir, configured by the test. Independent of the product's
 * config renderer and process manager on purpose (the runtime client is tested on its own).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { webcrypto } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { HaproxyRuntime } from '../../proxy/haproxy/runtime.ts';

export const HAPROXY_BIN = process.env.HAPROXY_BIN ?? '/usr/sbin/haproxy';

export interface MinimalHaproxy {
  dir: string;
  adminSocket: string;
  masterSocket: string;
  config: string;
  runtime: HaproxyRuntime;
  /** Everything HAProxy printed (stdout and stderr), for failure messages. */
  output(): string;
  /** Rewrites the configuration (for reload tests). */
  writeConfig(body: string): Promise<void>;
  stop(): Promise<void>;
}

// Runtime integration tests take their ports from this module; the one implementation is in net.ts.
export { freePort } from './net.ts';

/** The global/defaults head every test config shares; `body` adds frontends and backends. */
export function minimalConfig(adminSocket: string, body: string, extraGlobal: string[] = []): string {
  return [
    'global',
    `  stats socket ${adminSocket} mode 600 level admin expose-fd listeners`,
    ...extraGlobal.map((l) => `  ${l}`),
    '  stats timeout 10s',
    // Leave no old worker behind after a reload for longer than the test needs.
    '  hard-stop-after 20s',
    'defaults',
    '  mode tcp',
    '  timeout connect 2s',
    '  timeout client 30s',
    '  timeout server 30s',
    body,
    '',
  ].join('\n');
}

/**
 * Starts HAProxy with `body` (frontends, backends) under a fresh temp dir, which `files` can
 * populate first (ACLs, maps, certificates; written mode 0600). Resolves when the worker's
 * admin socket answers `show info`.
 */
export async function startMinimalHaproxy(
  body: (dir: string) => string,
  files: (dir: string) => Record<string, string> = () => ({}),
  extraGlobal: (dir: string) => string[] = () => [],
): Promise<MinimalHaproxy> {
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-rt-'));
  const adminSocket = join(dir, 'admin.sock');
  const masterSocket = join(dir, 'master.sock');
  const config = join(dir, 'haproxy.cfg');
  let child: ChildProcess | undefined;
  let output = '';
  try {
    for (const [name, content] of Object.entries(files(dir))) {
      await writeFile(join(dir, name), content, { mode: 0o600 });
    }
    await writeFile(config, minimalConfig(adminSocket, body(dir), extraGlobal(dir)), { mode: 0o600 });
    child = spawn(HAPROXY_BIN, ['-W', '-db', '-S', `${masterSocket},mode,600`, '-f', config], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (d) => {
      output += String(d);
    });
    child.stderr?.on('data', (d) => {
      output += String(d);
    });
    const runtime = new HaproxyRuntime({ adminSocket, masterSocket, timeoutMs: 5000 });
    const started = Date.now();
    for (;;) {
      if (child.exitCode !== null) throw new Error(`haproxy exited ${child.exitCode}: ${output}`);
      try {
        await runtime.showInfo();
        await runtime.showProc();
        break;
      } catch (error) {
        if (Date.now() - started > 10_000)
          throw new Error(`haproxy did not come up: ${output}`, { cause: error });
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const proc = child;
    return {
      dir,
      adminSocket,
      masterSocket,
      config,
      runtime,
      output: () => output,
      writeConfig: (b) => writeFile(config, minimalConfig(adminSocket, b, extraGlobal(dir)), { mode: 0o600 }),
      stop: () => stop(proc, dir),
    };
  } catch (error) {
    await stop(child, dir);
    throw error;
  }
}

async function stop(child: ChildProcess | undefined, dir: string): Promise<void> {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  }
  await rm(dir, { recursive: true, force: true });
}

// ---- test certificates (generated per run; nothing is stored) ------------------------------

x509.cryptoProvider.set(crypto);

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;

export interface TestCa {
  certificatePem: string;
  keys: webcrypto.CryptoKeyPair;
  subject: string;
}

/** A leaf for a TLS frontend: `bundlePem` is what a `crt` file holds (leaf, CA, key). */
export interface TestLeaf {
  serial: string;
  certificatePem: string;
  privateKeyPem: string;
  bundlePem: string;
}

async function privateKeyPem(key: webcrypto.CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await crypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0]! & 0x7f) | 0x10; // positive, no leading zero byte
  return Buffer.from(bytes).toString('hex');
}

/** A small self-signed ECDSA P-256 CA, valid one day. */
export async function createTestCa(name = 'Portcullis Test CA'): Promise<TestCa> {
  const keys = (await crypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=${name}`,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    keys,
    signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  return { certificatePem: cert.toString('pem'), keys, subject: cert.subject };
}

/** A server (or client) leaf for `dnsNames`, signed by `ca`. */
export async function issueTestLeaf(
  ca: TestCa,
  dnsNames: string[],
  usage: 'server' | 'client' = 'server',
): Promise<TestLeaf> {
  const keys = (await crypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const serial = randomSerial();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: `CN=${dnsNames[0]}`,
    issuer: ca.subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(false),
      new x509.SubjectAlternativeNameExtension(dnsNames.map((value) => ({ type: 'dns' as const, value }))),
      new x509.ExtendedKeyUsageExtension([
        usage === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth,
      ]),
    ],
  });
  const certificatePem = cert.toString('pem');
  const keyPem = await privateKeyPem(keys.privateKey);
  return {
    serial: serial.toUpperCase(),
    certificatePem,
    privateKeyPem: keyPem,
    bundlePem: `${certificatePem}\n${ca.certificatePem}\n${keyPem}\n`,
  };
}

/** A CRL from `ca` revoking `revokedSerials` (hex), valid one day. */
export async function createTestCrl(ca: TestCa, revokedSerials: string[]): Promise<string> {
  const crl = await x509.X509CrlGenerator.create({
    issuer: ca.subject,
    thisUpdate: new Date(Date.now() - 60_000),
    nextUpdate: new Date(Date.now() + 86_400_000),
    signingKey: ca.keys.privateKey,
    signingAlgorithm: SIGNING,
    entries: revokedSerials.map((serialNumber) => ({
      serialNumber,
      revocationDate: new Date(Date.now() - 30_000),
      reason: x509.X509CrlReason.keyCompromise,
    })),
  });
  // @peculiar/x509 armours CRLs as `BEGIN CRL`; OpenSSL (and so HAProxy) reads only `BEGIN X509 CRL`.
  return x509.PemConverter.encode(crl.rawData, 'X509 CRL');
}
