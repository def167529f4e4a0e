/**
 * The control plane's `TaskClient` for a fleet whose TLS listener takes PROXY protocol from its
 * trusted peers (the NLB) only. A verification handshake straight to the listener is refused: from
 * an untrusted address as an untrusted peer, from a trusted one because a header is expected, and a
 * PROXY `LOCAL` header is never routed (it carries no client to check against the allowlist). So
 * the handshake arrives the way a client's does through the NLB: a PROXY v2 header carrying the
 * verifier's own client address (which the allowlist must admit), then a real TLS handshake.
 * Nudges and status go to the sidecar unchanged through {@link HttpTaskClient}.
 *
 * On a machine where the control plane runs next to the NLB stand-in (the demo, tests) this is how
 * verification reaches a task. On AWS the equivalent needs the control plane's subnets among the
 * trusted peers, or a listener of its own for verification (see the demo notes).
 */
import { connect as netConnect } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { TaskUnreachable } from '../errors.ts';
import { encodeProxyV2 } from '../net/proxy-protocol.ts';
import { normaliseSerial } from '../pki/serial.ts';
import type { FleetTask, NudgeRequest, TaskClient, TaskStatus } from '../ports.ts';
import type { ClientCertificate, HttpTaskClient } from '../task-client/http-task-client.ts';

export interface ProxiedTaskClientOptions {
  /** Nudges and status. */
  http: HttpTaskClient;
  /**
   * The client address the PROXY v2 header carries (it must be on the fleet's allowlist); absent:
   * no header, a plain handshake through `http` (for listeners without PROXY protocol).
   */
  proxySource?: string;
  /** Presented when a terminate route asks for a client certificate. `keyPem` is secret. */
  clientCertificate?: ClientCertificate;
  /** Default 5000 ms. */
  timeoutMs?: number;
}

/** `TaskClient` whose verification handshakes arrive the way clients' do through the NLB. */
export class ProxiedTaskClient implements TaskClient {
  readonly #http: HttpTaskClient;
  readonly #proxySource: string | undefined;
  readonly #client: ClientCertificate | undefined;
  readonly #timeoutMs: number;

  constructor(options: ProxiedTaskClientOptions) {
    this.#http = options.http;
    this.#proxySource = options.proxySource;
    this.#client = options.clientCertificate;
    this.#timeoutMs = options.timeoutMs ?? 5000;
  }

  nudge(task: FleetTask, request: NudgeRequest): Promise<TaskStatus> {
    return this.#http.nudge(task, request);
  }

  status(task: FleetTask): Promise<TaskStatus> {
    return this.#http.status(task);
  }

  servedCertificate(
    task: FleetTask,
    serverName: string,
  ): Promise<{ serial: string; fingerprint256: string; notAfter: string }> {
    const source = this.#proxySource;
    if (source === undefined) return this.#http.servedCertificate(task, serverName);
    const where = `${task.tlsAddress}:${task.tlsPort} (task ${task.taskId}, SNI ${serverName})`;
    return new Promise((resolve, reject) => {
      let settled = false;
      let tlsSocket: TLSSocket | undefined;
      const raw = netConnect({ host: task.tlsAddress, port: task.tlsPort });
      const finish = (
        error: Error | undefined,
        value?: { serial: string; fingerprint256: string; notAfter: string },
      ) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (value !== undefined && tlsSocket !== undefined) {
          // Close gracefully, so a listener requiring a client certificate sees a whole handshake.
          const closing = tlsSocket;
          closing.on('error', () => {});
          closing.end();
          setTimeout(() => closing.destroy(), 1000).unref();
        } else {
          tlsSocket?.destroy();
          raw.destroy();
        }
        if (error !== undefined) reject(error);
        else resolve(value!);
      };
      const timer = setTimeout(
        () =>
          finish(new TaskUnreachable(`TLS handshake with ${where} timed out after ${this.#timeoutMs} ms`)),
        this.#timeoutMs,
      );
      raw.once('error', (error) =>
        finish(new TaskUnreachable(`TLS handshake with ${where} failed: ${error.message}`, { cause: error })),
      );
      raw.write(
        encodeProxyV2({
          source: { address: source, port: 1024 + Math.floor(Math.random() * 60_000) },
          destination: { address: task.tlsAddress, port: task.tlsPort },
        }),
      );
      tlsSocket = tlsConnect({
        socket: raw,
        servername: serverName,
        // We read what is served, we do not decide whether to trust it (see HttpTaskClient).
        rejectUnauthorized: false,
        ...(this.#client === undefined
          ? {}
          : { cert: this.#client.certificatePem, key: this.#client.keyPem }),
      });
      tlsSocket.once('secureConnect', () => {
        const leaf = tlsSocket?.getPeerX509Certificate();
        const serial = leaf === undefined ? undefined : normaliseSerial(leaf.serialNumber);
        if (leaf === undefined || serial === undefined) {
          finish(new TaskUnreachable(`${where} completed a handshake without a readable certificate`));
          return;
        }
        finish(undefined, {
          serial,
          fingerprint256: leaf.fingerprint256,
          notAfter: new Date(leaf.validTo).toISOString(),
        });
      });
      tlsSocket.once('error', (error) =>
        finish(new TaskUnreachable(`TLS handshake with ${where} failed: ${error.message}`, { cause: error })),
      );
      tlsSocket.once('close', () =>
        finish(new TaskUnreachable(`${where} closed before the handshake completed`)),
      );
    });
  }
}
