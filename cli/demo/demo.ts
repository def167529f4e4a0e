/**
 * `npm run demo`: the whole loop on one machine, for real. A local CA, a file-backed secret
 * store, upstream services, a DNS responder and N gateway tasks (real HAProxy + real sidecar
 * each) come up; the fleet's secrets are created the way `portcullis init` creates them; traffic
 * flows (mTLS through a terminate route, end-to-end mTLS through a passthrough route, new
 * connections in a loop and long-lived streams); then the real rotate-certificates and
 * update-allowlist state machines run against it through aws-local-stepfunctions, and every
 * figure of the report is measured while it happens.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseFleetConfig } from '../../lib/config/index.ts';
import { ProxyLocalTaskClient } from '../../lib/local/demo-task-client.ts';
import { startLocalDnsServer } from '../../lib/local/dns-server.ts';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { LocalAuthority } from '../../lib/local/local-authority.ts';
import { LogNotifier } from '../../lib/local/log-notifier.ts';
import { ProcessFleet, type ProcessFleetEvent } from '../../lib/local/process-fleet.ts';
import {
  connectOnce,
  openLongLived,
  TrafficGenerator,
  type TrafficRoute,
  type TrafficStats,
} from '../../lib/local/traffic.ts';
import { startLocalUpstream } from '../../lib/local/upstream.ts';
import { createCsr, generateKey } from '../../lib/pki/index.ts';
import { sameSerial } from '../../lib/pki/serial.ts';
import { certificateInfo } from '../../lib/pki/validate.ts';
import type {
  CertificateAuthority,
  FleetTask,
  NudgeRequest,
  TaskClient,
  TaskStatus,
} from '../../lib/ports.ts';
import { HttpTaskClient } from '../../lib/task-client/http-task-client.ts';
import type { ControlPlanePorts } from '../../lib/workflows/ports.ts';
import { writeFileAtomic } from '../../proxy/haproxy/render-write.ts';
import { initFleet } from '../commands/init.ts';
import { fleetSecretIds, waitIssued } from './secrets.ts';
import { localPaths } from './target.ts';
import { runLocalWorkflow, type WorkflowOutcome } from './workflow.ts';

export const DEMO_FLEET = 'demo';
/** The terminate (mTLS) route's name and the passthrough route's. */
export const DemoNames = {
  mtls: 'api.demo.test',
  passthrough: 'pass.demo.test',
  backend: 'backend.demo.test',
} as const;
/** Sources the demo's clients claim through the PROXY header (documentation ranges). */
export const DemoSources = {
  /** The traffic's source: removed from the allowlist, then restored. */
  traffic: '203.0.113.10',
  trafficCidr: '203.0.113.0/24',
  /** Another client that stays allowed throughout. */
  other: '198.51.100.10',
  otherCidr: '198.51.100.0/24',
} as const;
/** Upstreams listen on their own loopback address, distinct from the gateway's 127.0.0.1. */
const UPSTREAM_HOST = '127.0.0.3';

export interface DemoOptions {
  tasks: number;
  /** Keep everything here instead of a fresh temp directory (kept afterwards). */
  stateDir?: string;
  /** Progress lines. */
  print: (line: string) => void;
  /** Bail out early (Ctrl-C): the demo stops at the next step and cleans up. */
  signal?: AbortSignal;
  /** After the report, keep the fleet running until `signal` aborts (for `portcullis status --local`). */
  keep?: boolean;
  /** The sidecar command (default: this repository's `cli/main.ts sidecar`). */
  sidecarCommand?: readonly string[];
}

export interface DemoReport {
  tasks: number;
  mode: 'sidecar' | 'render';
  stateDir: string;
  /** What this tree lacks for the full demo; empty when everything ran. */
  missing: string[];
  rotation: {
    status: string;
    certificate: string;
    previousSerial: string | null;
    newSerial: string | null;
    tasksServingNew: number;
    /** From the CA issuing the new certificate to the last task serving it (a real handshake saw it). */
    seconds: number | null;
    executionSeconds: number;
    perTask: {
      taskId: string;
      before: string | null;
      after: string | null;
      servingNewAfterSeconds: number | null;
    }[];
    error?: string;
    cause?: string;
  };
  traffic: {
    handshakes: number;
    failedHandshakes: number;
    longLived: number;
    droppedLongLived: number;
    longLivedBytes: number;
    byRoute: TrafficStats['byRoute'];
    failures: string[];
  };
  allowlist: {
    status: string;
    removed: string;
    removedSourceRefused: boolean;
    /** Long-lived sessions of the removed source that the gateway closed. */
    cutLongLived: number;
    longLivedOfRemovedSource: number;
    /** The other source's sessions and new connections were unaffected. */
    otherSourceUnaffected: boolean;
    /** From the start of update-allowlist to every task serving the new version (verified). */
    seconds: number | null;
    restoreStatus: string;
    restored: boolean;
    error?: string;
  };
  totalSeconds: number;
  ok: boolean;
}

/** A certificate and key straight from the CA, for the demo's clients and upstreams (not fleet secrets). */
async function issueCredential(
  authority: CertificateAuthority,
  request: { commonName: string; dns?: string[]; uri?: string[]; usage: 'server' | 'client' },
): Promise<{ certificatePem: string; keyPem: string; serial: string }> {
  const key = await generateKey();
  const sans = { dns: request.dns ?? [], ...(request.uri === undefined ? {} : { uri: request.uri }) };
  const csrPem = await createCsr(key, { commonName: request.commonName, ...sans });
  const { certificateId } = await authority.issue({
    csrPem,
    commonName: request.commonName,
    sans,
    validityDays: 7,
    idempotencyToken: randomUUID(),
    usage: request.usage,
  });
  const issued = await waitIssued(authority, certificateId);
  return {
    certificatePem: `${issued.certificatePem.trim()}\n${issued.chainPem}`.trim() + '\n',
    keyPem: key.privateKeyPem,
    serial: certificateInfo(issued.certificatePem).serial,
  };
}

/** The demo fleet's config document (what `portcullis init --config` would be given). */
export function demoFleetDocument(options: {
  dnsAddress: string;
  mtlsUpstreamPort: number;
  passthroughUpstreamPort: number;
  terminate: boolean;
}): Record<string, unknown> {
  const ids = fleetSecretIds(DEMO_FLEET);
  const passthrough = {
    serverName: DemoNames.passthrough,
    mode: 'passthrough',
    upstream: { port: options.passthroughUpstreamPort, httpPort: null },
    allowedDestinations: [`${UPSTREAM_HOST}/32`],
  };
  const terminate = {
    serverName: DemoNames.mtls,
    mode: 'terminate',
    certificate: 'api',
    clientAuth: 'strict',
    upstream: {
      kind: 'originate',
      host: UPSTREAM_HOST,
      port: options.mtlsUpstreamPort,
      serverName: DemoNames.backend,
      clientCertificate: 'gateway-client',
    },
  };
  return {
    fleet: DEMO_FLEET,
    // Listener ports are per task locally: the process fleet writes each task's own.
    listeners: { bind: ['127.0.0.1'], http: null, metrics: null },
    // 127.0.0.1 plays the NLB: its PROXY v2 header carries the client's address.
    proxyProtocol: { enabled: true, version: 'v2', trustedPeers: ['127.0.0.1/32'] },
    resolvers: { nameservers: [options.dnsAddress], holdValidMs: 10_000 },
    allowLoopbackDestinations: true,
    routes: options.terminate ? [terminate, passthrough] : [passthrough],
    allowlist: { source: { secretId: ids.allowlist }, cutRemovedSessions: true },
    certificates: [
      {
        name: 'api',
        secretId: ids.certificate('api'),
        commonName: DemoNames.mtls,
        dns: [DemoNames.mtls],
        usage: 'server',
        validityDays: 30,
      },
      {
        name: 'gateway-client',
        secretId: ids.certificate('gateway-client'),
        commonName: 'portcullis-demo-gateway',
        uri: [`spiffe://${DEMO_FLEET}/gateway`],
        usage: 'client',
        validityDays: 30,
      },
    ],
    trust: { secretId: ids.trust },
    nudgeKey: { secretId: ids.nudgeKey },
  };
}

/** Records when each task first served a serial to the workflow's verification handshakes. */
class ObservedTaskClient implements TaskClient {
  readonly served = new Map<string, Map<string, number>>();
  readonly #inner: TaskClient;
  readonly #print: (line: string) => void;

  constructor(inner: TaskClient, print: (line: string) => void) {
    this.#inner = inner;
    this.#print = print;
  }

  async nudge(task: FleetTask, request: NudgeRequest): Promise<TaskStatus> {
    const started = performance.now();
    try {
      const status = await this.#inner.nudge(task, request);
      this.#print(
        `    nudge ${task.taskId} ${request.secretId}${request.versionId ? `@${request.versionId.slice(0, 8)}` : ''}: applied in ${Math.round(performance.now() - started)} ms`,
      );
      return status;
    } catch (error) {
      this.#print(`    nudge ${task.taskId}: ${error instanceof Error ? error.name : 'error'}`);
      throw error;
    }
  }

  status(task: FleetTask): Promise<TaskStatus> {
    return this.#inner.status(task);
  }

  async servedCertificate(task: FleetTask, serverName: string) {
    const served = await this.#inner.servedCertificate(task, serverName);
    const bySerial = this.served.get(served.serial) ?? new Map<string, number>();
    if (!bySerial.has(task.taskId)) bySerial.set(task.taskId, Date.now());
    this.served.set(served.serial, bySerial);
    this.#print(`    verify ${task.taskId} ${serverName}: serves ${served.serial.slice(0, 16)}…`);
    return served;
  }
}

/** Wraps the CA to note when each certificate was issued. */
function observedAuthority(inner: CertificateAuthority, issued: Map<string, number>): CertificateAuthority {
  return {
    issue: async (request) => {
      const result = await inner.issue(request);
      if (!issued.has(result.certificateId)) issued.set(result.certificateId, Date.now());
      return result;
    },
    get: (id) => inner.get(id),
    revoke: (id, serial, reason) => inner.revoke(id, serial, reason),
    caCertificates: () => inner.caCertificates(),
  };
}

type Cleanup = () => Promise<void> | void;

/** Thrown when the signal aborts the demo. */
export class DemoAborted extends Error {
  constructor() {
    super('demo interrupted');
    this.name = 'DemoAborted';
  }
}

/**
 * Runs the demo and returns its report. Everything it started is stopped before it returns or
 * throws (and the temp directory removed unless `stateDir` was given).
 */
export async function runDemo(options: DemoOptions): Promise<DemoReport> {
  const t0 = performance.now();
  const cleanups: Cleanup[] = [];
  const print = options.print;
  const checkAbort = () => {
    if (options.signal?.aborted) throw new DemoAborted();
  };
  const stateDir = options.stateDir ?? (await mkdtemp(join(tmpdir(), 'portcullis-demo-')));
  if (options.stateDir === undefined) cleanups.push(() => rm(stateDir, { recursive: true, force: true }));
  let fleet: ProcessFleet | undefined;
  const onAbort = () => fleet?.killNow();
  options.signal?.addEventListener('abort', onAbort);
  try {
    const paths = localPaths(stateDir);
    const ids = fleetSecretIds(DEMO_FLEET);
    print(`state directory ${stateDir}`);

    // --- the stand-ins for AWS and the VPC ------------------------------------------------
    const store = await FileSecretStore.open(paths.store);
    const authority = await LocalAuthority.open(paths.ca);
    const caPem = await authority.caCertificates();
    const events: string[] = [];
    const notifier = new LogNotifier({
      file: paths.events,
      sink: (event) => {
        events.push(event.detailType);
        print(`  event ${event.detailType}`);
      },
    });
    const [client, verifier, backend, passthroughServer] = await Promise.all([
      issueCredential(authority, {
        commonName: 'demo-client',
        uri: ['spiffe://demo/client'],
        usage: 'client',
      }),
      issueCredential(authority, {
        commonName: 'portcullis-verifier',
        uri: ['spiffe://demo/verifier'],
        usage: 'client',
      }),
      issueCredential(authority, {
        commonName: DemoNames.backend,
        dns: [DemoNames.backend],
        usage: 'server',
      }),
      issueCredential(authority, {
        commonName: DemoNames.passthrough,
        dns: [DemoNames.passthrough],
        usage: 'server',
      }),
    ]);
    await writeFileAtomic(
      paths.verifier,
      JSON.stringify({ certificatePem: verifier.certificatePem, keyPem: verifier.keyPem }),
      0o600,
    );
    const mtlsUpstream = await startLocalUpstream({
      host: UPSTREAM_HOST,
      tls: {
        certificatePem: backend.certificatePem,
        keyPem: backend.keyPem,
        caPem,
        requireClientCertificate: true,
      },
    });
    cleanups.push(() => mtlsUpstream.close());
    const passthroughUpstream = await startLocalUpstream({
      host: UPSTREAM_HOST,
      tls: {
        certificatePem: passthroughServer.certificatePem,
        keyPem: passthroughServer.keyPem,
        caPem,
        requireClientCertificate: true,
      },
    });
    cleanups.push(() => passthroughUpstream.close());
    const dns = await startLocalDnsServer({
      records: { [DemoNames.passthrough]: [UPSTREAM_HOST], [DemoNames.backend]: [UPSTREAM_HOST] },
    });
    cleanups.push(() => dns.close());
    print(
      `CA, store, upstreams (${UPSTREAM_HOST}:${mtlsUpstream.port} mTLS, :${passthroughUpstream.port} passthrough) and DNS ${dns.address} up`,
    );

    // --- what this tree can run -------------------------------------------------------------
    const missing: string[] = [];
    let terminate = true;
    try {
      parseFleetConfig(
        stripForSchema(
          demoFleetDocument({
            dnsAddress: dns.address,
            mtlsUpstreamPort: 1,
            passthroughUpstreamPort: 1,
            terminate: true,
          }),
        ),
      );
    } catch {
      terminate = false;
      missing.push(
        'terminate routes in lib/config + the renderer (mTLS route left out; rotation cannot be verified)',
      );
    }
    const document = demoFleetDocument({
      dnsAddress: dns.address,
      mtlsUpstreamPort: mtlsUpstream.port,
      passthroughUpstreamPort: passthroughUpstream.port,
      terminate,
    });

    // --- bootstrap: the same code path as `portcullis init` -------------------------------
    checkAbort();
    await initFleet({
      store,
      authority,
      fleet: DEMO_FLEET,
      fleetConfigText: JSON.stringify(document),
      allowlist: [DemoSources.trafficCidr, DemoSources.otherCidr],
      reason: 'demo bootstrap',
      onStep: (s) =>
        print(
          `  init ${s.action} ${s.kind} ${s.secretId}${s.serial ? ` serial ${s.serial.slice(0, 16)}…` : ''}`,
        ),
    });

    // --- the fleet --------------------------------------------------------------------------
    checkAbort();
    const fleetEvent = (event: ProcessFleetEvent) => {
      if (event.type === 'task-ready')
        print(`  ${event.taskId} ready (generation ${event.generation}, ${Math.round(event.ms)} ms)`);
      else if (event.type === 'roll-started' || event.type === 'roll-finished')
        print(`  fleet ${event.type} ${event.deploymentId}`);
    };
    print(`starting ${options.tasks} gateway task(s): sidecar + HAProxy each`);
    fleet = await ProcessFleet.start({
      dir: paths.fleet,
      fleet: DEMO_FLEET,
      tasks: options.tasks,
      store,
      storeDir: paths.store,
      fleetConfigSecretId: ids.fleetConfig,
      onEvent: fleetEvent,
      ...(options.sidecarCommand === undefined ? {} : { sidecarCommand: options.sidecarCommand }),
    });
    const running = fleet;
    cleanups.push(() => running.stop());
    if (fleet.mode === 'render') {
      missing.push('the sidecar (cli/commands/sidecar.ts): tasks were rendered once, nothing can nudge them');
      // The fleet rendered passthrough routes only: no traffic to a route it does not serve.
      terminate = false;
    }
    print(
      `fleet ready in ${((performance.now() - t0) / 1000).toFixed(1)} s since start (${fleet.mode} mode)`,
    );

    const http = new HttpTaskClient({
      nudgeKey: async () => nudgeKey(store, ids.nudgeKey),
      timeoutMs: 10_000,
    });
    const observed = new ObservedTaskClient(
      new ProxyLocalTaskClient({
        http,
        clientCertificate: { certificatePem: verifier.certificatePem, keyPem: verifier.keyPem },
      }),
      print,
    );
    const issuedAt = new Map<string, number>();
    const ports: ControlPlanePorts = {
      fleetName: DEMO_FLEET,
      fleetConfigSecretId: ids.fleetConfig,
      store,
      authority: observedAuthority(authority, issuedAt),
      fleet,
      taskClient: observed,
      notifier,
    };

    // --- traffic ------------------------------------------------------------------------------
    const clientCredential = { certificatePem: client.certificatePem, keyPem: client.keyPem };
    const routes: TrafficRoute[] = [
      ...(terminate ? [{ name: 'mtls', serverName: DemoNames.mtls, caPem, client: clientCredential }] : []),
      { name: 'passthrough', serverName: DemoNames.passthrough, caPem, client: clientCredential },
    ];
    const traffic = new TrafficGenerator({
      endpoints: () => running.endpoints(),
      routes,
      source: DemoSources.traffic,
      workers: 2,
      pauseMs: 10,
    });
    cleanups.push(async () => {
      await traffic.stop();
    });
    await traffic.start();
    print(
      `traffic: new connections in a loop over ${routes.map((r) => r.name).join(' + ')}, ${traffic.sessions().length} long-lived streams, source ${DemoSources.traffic} (PROXY v2)`,
    );
    await sleep(1000, options.signal);

    // --- rotation -----------------------------------------------------------------------------
    checkAbort();
    const before = await servedSerials(running, observed);
    const previousSerial = before.find((b) => b.serial !== null)?.serial ?? null;
    print(
      `rotate-certificates (certificate api; each task serves ${previousSerial?.slice(0, 16) ?? 'nothing'}…)`,
    );
    let rotation: WorkflowOutcome | undefined;
    if (fleet.mode === 'sidecar' && terminate) {
      rotation = await runLocalWorkflow(
        'rotate-certificates',
        {
          fleet: DEMO_FLEET,
          certificates: ['api'],
          force: true,
          graceSeconds: 0,
          rolloutPollSeconds: 1,
          rolloutMaxPolls: 60,
        },
        ports,
        { print: (line) => print(`  ${line}`) },
      );
    } else {
      print('  skipped: see "missing"');
    }
    await sleep(1000, options.signal);
    const rotationTraffic = traffic.stats();
    const after = await servedSerials(running, observed);
    const newSerial =
      rotation?.status === 'SUCCEEDED' ? (after.find((a) => a.serial !== null)?.serial ?? null) : null;
    const issuance = [...issuedAt.values()].sort((a, b) => a - b)[0];
    const perTask = after.map((a) => {
      const beforeSerial = before.find((b) => b.taskId === a.taskId)?.serial ?? null;
      const seen =
        newSerial === null ? undefined : firstServed(newSerial, a.taskId, observed, rotationTraffic);
      return {
        taskId: a.taskId,
        before: beforeSerial,
        after: a.serial,
        servingNewAfterSeconds:
          seen === undefined || issuance === undefined ? null : round((seen - issuance) / 1000),
      };
    });
    const serving =
      newSerial === null
        ? 0
        : perTask.filter((p) => p.after !== null && sameSerial(p.after, newSerial)).length;
    const servingTimes = perTask.map((p) => p.servingNewAfterSeconds);
    const rotationSeconds =
      newSerial !== null && serving === perTask.length && servingTimes.every((s) => s !== null)
        ? Math.max(...(servingTimes as number[]))
        : null;
    for (const p of perTask) {
      print(
        `  ${p.taskId}: ${p.before?.slice(0, 16) ?? '-'}… → ${p.after?.slice(0, 16) ?? '-'}…${p.servingNewAfterSeconds === null ? '' : ` (${p.servingNewAfterSeconds} s after issuance)`}`,
      );
    }

    // --- allowlist: remove the traffic's source, then restore it --------------------------------
    checkAbort();
    await traffic.pauseLoops();
    const sessionsOfRemoved = traffic.sessions().filter((s) => s.droppedReason() === undefined);
    const others = running
      .endpoints()
      .map((endpoint) =>
        openLongLived({ endpoint, route: routes[routes.length - 1]!, source: DemoSources.other }),
      );
    cleanups.push(() => {
      for (const s of others) s.close();
    });
    await Promise.all(others.map((s) => s.established.catch(() => undefined)));
    print(
      `update-allowlist: remove ${DemoSources.trafficCidr} (${sessionsOfRemoved.length} long-lived sessions from ${DemoSources.traffic}, ${others.length} from ${DemoSources.other})`,
    );
    let removal: WorkflowOutcome | undefined;
    let restore: WorkflowOutcome | undefined;
    let refused = false;
    let cut = 0;
    let otherUnaffected = false;
    let restored = false;
    let allowlistSeconds: number | null = null;
    if (fleet.mode === 'sidecar') {
      removal = await runLocalWorkflow(
        'update-allowlist',
        {
          fleet: DEMO_FLEET,
          remove: [DemoSources.trafficCidr],
          reason: 'demo: block the traffic source',
          updatedBy: 'portcullis demo',
        },
        ports,
        { print: (line) => print(`  ${line}`) },
      );
      allowlistSeconds =
        removal.status === 'SUCCEEDED' ? round(lastVerify(removal, removal.startedAt)) : null;
      // The sidecar cuts removed sources' sessions as part of the apply; allow the close to land.
      await waitFor(() => sessionsOfRemoved.every((s) => s.droppedReason() !== undefined), 5000);
      cut = sessionsOfRemoved.filter((s) => s.droppedReason() !== undefined).length;
      const probes = await probeAll(running, routes, DemoSources.traffic);
      refused = probes.length > 0 && probes.every((p) => !p.ok);
      const otherProbes = await probeAll(running, routes, DemoSources.other);
      otherUnaffected =
        otherProbes.every((p) => p.ok) && others.every((s) => s.droppedReason() === undefined);
      print(
        `  new connections from ${DemoSources.traffic}: ${probes.filter((p) => !p.ok).length}/${probes.length} refused; long-lived cut: ${cut}/${sessionsOfRemoved.length}; ${DemoSources.other}: ${otherUnaffected ? 'unaffected' : 'AFFECTED'}`,
      );
      print(`update-allowlist: restore ${DemoSources.trafficCidr}`);
      restore = await runLocalWorkflow(
        'update-allowlist',
        {
          fleet: DEMO_FLEET,
          add: [DemoSources.trafficCidr],
          reason: 'demo: restore the traffic source',
          updatedBy: 'portcullis demo',
        },
        ports,
        { print: (line) => print(`  ${line}`) },
      );
      const again = await probeAll(running, routes, DemoSources.traffic);
      restored = restore.status === 'SUCCEEDED' && again.every((p) => p.ok);
      print(
        `  new connections from ${DemoSources.traffic}: ${again.filter((p) => p.ok).length}/${again.length} accepted again`,
      );
    } else {
      print('  skipped: see "missing"');
    }
    for (const s of others) s.close();

    const report: DemoReport = {
      tasks: options.tasks,
      mode: fleet.mode,
      stateDir,
      missing,
      rotation: {
        status: rotation?.status ?? 'SKIPPED',
        certificate: 'api',
        previousSerial,
        newSerial,
        tasksServingNew: serving,
        seconds: rotationSeconds,
        executionSeconds:
          rotation === undefined
            ? 0
            : round((rotation.finishedAt.getTime() - rotation.startedAt.getTime()) / 1000),
        perTask,
        ...(rotation?.error ? { error: rotation.error, cause: rotation.cause ?? '' } : {}),
      },
      traffic: {
        handshakes: rotationTraffic.handshakes,
        failedHandshakes: rotationTraffic.failedHandshakes,
        longLived: rotationTraffic.longLived,
        droppedLongLived: rotationTraffic.droppedLongLived,
        longLivedBytes: rotationTraffic.longLivedBytes,
        byRoute: rotationTraffic.byRoute,
        failures: rotationTraffic.failures,
      },
      allowlist: {
        status: removal?.status ?? 'SKIPPED',
        removed: DemoSources.trafficCidr,
        removedSourceRefused: refused,
        cutLongLived: cut,
        longLivedOfRemovedSource: sessionsOfRemoved.length,
        otherSourceUnaffected: otherUnaffected,
        seconds: allowlistSeconds,
        restoreStatus: restore?.status ?? 'SKIPPED',
        restored,
        ...(removal?.error ? { error: `${removal.error}: ${removal.cause ?? ''}` } : {}),
      },
      totalSeconds: 0,
      ok: false,
    };
    report.ok =
      missing.length === 0 &&
      report.rotation.status === 'SUCCEEDED' &&
      report.rotation.tasksServingNew === options.tasks &&
      report.traffic.failedHandshakes === 0 &&
      report.traffic.droppedLongLived === 0 &&
      report.allowlist.status === 'SUCCEEDED' &&
      report.allowlist.removedSourceRefused &&
      report.allowlist.cutLongLived === report.allowlist.longLivedOfRemovedSource &&
      report.allowlist.otherSourceUnaffected &&
      report.allowlist.restored;
    if (options.keep === true && options.signal !== undefined && !options.signal.aborted) {
      print(
        `fleet kept running; try: node cli/main.ts status --fleet ${DEMO_FLEET} --local ${stateDir}   (Ctrl-C to stop)`,
      );
      await new Promise<void>((resolve) =>
        options.signal?.addEventListener('abort', () => resolve(), { once: true }),
      );
    }
    report.totalSeconds = round((performance.now() - t0) / 1000);
    return report;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch {
        // keep cleaning up the rest
      }
    }
  }
}

async function nudgeKey(store: FileSecretStore, secretId: string): Promise<Buffer> {
  const secret = await store.get(secretId);
  return Buffer.from((JSON.parse(secret.value) as { key: string }).key, 'base64');
}

/** What every task serves on the mTLS route right now, by a verification handshake. */
async function servedSerials(
  fleet: ProcessFleet,
  client: TaskClient,
): Promise<{ taskId: string; serial: string | null }[]> {
  const tasks = await fleet.listTasks();
  return Promise.all(
    tasks.map(async (task) => {
      try {
        return { taskId: task.taskId, serial: (await client.servedCertificate(task, DemoNames.mtls)).serial };
      } catch {
        return { taskId: task.taskId, serial: null };
      }
    }),
  );
}

/** The first time a task was seen serving `serial`, by the workflow's verification or by traffic. */
function firstServed(
  serial: string,
  taskId: string,
  observed: ObservedTaskClient,
  traffic: TrafficStats,
): number | undefined {
  const times: number[] = [];
  for (const [s, byTask] of observed.served) {
    const at = byTask.get(taskId);
    if (at !== undefined && sameSerial(s, serial)) times.push(at);
  }
  for (const [s, byTask] of Object.entries(traffic.firstSeen)) {
    const at = byTask[taskId];
    if (at !== undefined && sameSerial(s, serial)) times.push(at);
  }
  return times.length === 0 ? undefined : Math.min(...times);
}

/** Seconds from `start` to the last `VerifyTask` that succeeded. */
function lastVerify(outcome: WorkflowOutcome, start: Date): number {
  const exits = outcome.events
    .filter((e) => e.type === 'StateExited' && e.stateName === 'VerifyTask')
    .map((e) => e.at.getTime());
  const end = exits.length > 0 ? Math.max(...exits) : outcome.finishedAt.getTime();
  return (end - start.getTime()) / 1000;
}

/** One connection per task and route from `source`. */
async function probeAll(fleet: ProcessFleet, routes: readonly TrafficRoute[], source: string) {
  const probes = fleet.endpoints().flatMap((endpoint) => routes.map((route) => ({ endpoint, route })));
  return Promise.all(probes.map((p) => connectOnce({ ...p, source, timeoutMs: 3000 })));
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) await sleep(50);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

/** The document as lib/config's strict schema takes it (it has no control-plane sections yet where it lacks them). */
function stripForSchema(document: Record<string, unknown>): Record<string, unknown> {
  return document;
}
