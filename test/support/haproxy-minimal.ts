/**
 * A throwaway HAProxy for integration tests: master-worker in the foreground with a master CLI
 * and an admin stats socket in a temp dir, configured by the test. Independent of the product's
 * config renderer and process manager on purpose (the runtime client is tested on its own).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type CertificateAuthorityMaterial,
  createCertificateAuthority,
  createCrl,
  generateKey,
  issueCertificate,
} from '../../lib/pki/index.ts';
import { HaproxyRuntime } from '../../proxy/haproxy/runtime.ts';

import { HAPROXY_BIN } from './haproxy.ts';

export { HAPROXY_BIN };

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

// ---- test certificates (generated per run with lib/pki; nothing is stored) ------------------

const ONE_DAY = 1;

/** A small self-signed ECDSA P-256 CA, valid one day. */
export type TestCa = CertificateAuthorityMaterial;

/** A leaf for a TLS frontend: `bundlePem` is what a `crt` file holds (leaf, CA, key). */
export interface TestLeaf {
  /** Uppercase hex, as HAProxy prints it. */
  serial: string;
  certificatePem: string;
  privateKeyPem: string;
  bundlePem: string;
}

/** A small self-signed ECDSA P-256 CA (path length 0), valid one day. */
export async function createTestCa(name = 'Portcullis Test CA'): Promise<TestCa> {
  return createCertificateAuthority({ commonName: name, validityDays: ONE_DAY, pathLength: 0 });
}

/** A server (or client) leaf for `dnsNames`, signed by `ca`. */
export async function issueTestLeaf(
  ca: TestCa,
  dnsNames: string[],
  usage: 'server' | 'client' = 'server',
): Promise<TestLeaf> {
  const key = await generateKey();
  const issued = await issueCertificate(ca, {
    publicKeyPem: key.publicKeyPem,
    commonName: dnsNames[0]!,
    dns: dnsNames,
    usage,
    validityDays: ONE_DAY,
  });
  return {
    serial: issued.serial.toUpperCase(),
    certificatePem: issued.certificatePem,
    privateKeyPem: key.privateKeyPem,
    bundlePem: `${issued.certificatePem}\n${ca.certificatePem}\n${key.privateKeyPem}\n`,
  };
}

/** A CRL from `ca` revoking `revokedSerials` (hex, key compromise), valid one day. */
export async function createTestCrl(ca: TestCa, revokedSerials: string[]): Promise<string> {
  const now = Date.now();
  return createCrl(
    ca,
    revokedSerials.map((serial) => ({
      serial,
      revokedAt: new Date(now - 30_000),
      reason: 'KEY_COMPROMISE',
    })),
    { thisUpdate: new Date(now - 60_000), nextUpdate: new Date(now + 86_400_000) },
  );
}
