/**
 * A HAProxy runtime API in memory, for the sidecar's effect modules (`RuntimePort`): it keeps
 * certificates by path (serial read from the PEM), ACL entries, map values, the serving worker's
 * pid and old workers; a reload starts a new worker. Every call is recorded by name, and any
 * call can be made to fail.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ProcessList } from '../../proxy/haproxy/runtime-parsers.ts';
import type { EncodedCommand } from '../../proxy/haproxy/runtime-protocol.ts';
import type { GatewayRuntime, RuntimePort } from '../../proxy/sidecar/runtime-port.ts';

type Method = keyof GatewayRuntime;

export class FakeRuntime implements GatewayRuntime {
  readonly calls: { method: Method; args: unknown[] }[] = [];
  readonly certificates = new Map<string, string>();
  readonly acls = new Map<string, string[]>();
  readonly maps = new Map<string, Map<string, string>>();
  /** `show ssl ca-file` answers with this many certificates. */
  caCount = 1;
  /** `show table <name>` answers. */
  readonly tables = new Map<string, string>();
  pid = 100;
  oldWorkers: number[] = [];
  /** Set: every call throws this (HAProxy down); a method name: only that method throws. */
  down: Error | undefined;
  readonly failing = new Map<Method, Error>();
  /** A serial `updateCertificate` reports instead of the PEM's (a commit that did not take). */
  servedSerialOverride: string | undefined;

  #record(method: Method, ...args: unknown[]): void {
    this.calls.push({ method, args });
    if (this.down) throw this.down;
    const error = this.failing.get(method);
    if (error) throw error;
  }

  /** Names of the calls made, in order. */
  names(): Method[] {
    return this.calls.map((c) => c.method);
  }

  port(): RuntimePort {
    return { runtime: this, worker: () => this };
  }

  async execute(cmd: EncodedCommand): Promise<string> {
    this.#record('execute', cmd.line);
    if (cmd.verb === 'show ssl ca-file')
      return Array.from(
        { length: this.caCount },
        (_, i) => `Certificate #${i + 1}:\nSubject: CN=ca${i}\n`,
      ).join('');
    if (cmd.verb === 'show table') return this.tables.get(cmd.line.slice('show table '.length)) ?? '';
    return '';
  }

  async showInfo() {
    this.#record('showInfo');
    return {
      fields: { Pid: String(this.pid), DroppedLogs: '0' },
      version: '2.6.12',
      pid: this.pid,
      uptimeSeconds: 1,
      currentConnections: 0,
      cumulativeConnections: 0,
      stopping: false,
    };
  }

  async showProc(): Promise<ProcessList> {
    this.#record('showProc');
    return this.#processes();
  }

  #processes(): ProcessList {
    const entry = (pid: number, type: string) => ({
      pid,
      type,
      reloads: 0,
      uptimeSeconds: 1,
      version: '2.6.12',
    });
    return {
      master: { ...entry(1, 'master'), failedReloads: 0 },
      workers: [entry(this.pid, 'worker')],
      oldWorkers: this.oldWorkers.map((pid) => entry(pid, 'worker')),
      programs: [],
    };
  }

  async reload() {
    this.#record('reload');
    this.oldWorkers.push(this.pid);
    this.pid += 1;
    return { kind: 'loaded' as const };
  }

  async waitForReload(_before: ProcessList) {
    this.#record('waitForReload');
    return this.#processes();
  }

  async updateCertificate(path: string, pem: string) {
    this.#record('updateCertificate', path);
    const leaf = new X509Certificate(pem);
    this.certificates.set(path, pem);
    const serial = this.servedSerialOverride ?? leaf.serialNumber;
    return { serial, notAfter: new Date(leaf.validTo), info: this.#info(path, serial, leaf) };
  }

  async showSslCert(path: string) {
    this.#record('showSslCert', path);
    // What a started HAProxy loaded from the file, unless a runtime update replaced it since.
    const pem = this.certificates.get(path) ?? readFileSync(path, 'utf8');
    const leaf = new X509Certificate(pem);
    return this.#info(path, leaf.serialNumber, leaf);
  }

  #info(path: string, serial: string, leaf: X509Certificate) {
    return {
      filename: path,
      status: 'Used',
      serial,
      notBefore: new Date(leaf.validFrom),
      notAfter: new Date(leaf.validTo),
      subject: leaf.subject,
      issuer: leaf.issuer,
      subjectAltNames: [],
      dnsNames: [],
      algorithm: 'EC256',
      sha1Fingerprint: leaf.fingerprint.replaceAll(':', ''),
    };
  }

  async replaceAcl(ref: string | number, entries: readonly string[]) {
    this.#record('replaceAcl', ref, [...entries]);
    this.acls.set(String(ref), [...entries]);
    return { version: 1, count: entries.length };
  }

  async showAclEntries(ref: string | number) {
    this.#record('showAclEntries', ref);
    return (this.acls.get(String(ref)) ?? []).map((value) => ({ ref: String(ref), value }));
  }

  async setMap(ref: string | number, key: string, value: string) {
    this.#record('setMap', ref, key, value);
    const map = this.maps.get(String(ref)) ?? new Map<string, string>();
    map.set(key, value);
    this.maps.set(String(ref), map);
  }

  async cutSessions(): Promise<number> {
    this.#record('cutSessions');
    return 0;
  }
}
