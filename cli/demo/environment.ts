/**
 * The local world the demo and the rotation benchmark run in: a local CA, a file-backed secret
 * store, upstream services (an mTLS service behind the terminate route, an mTLS service behind
 * the passthrough route), a DNS responder for the route names, the fleet's secrets created
 * through `initFleet` (what `portcullis init` runs), N gateway tasks (`ProcessFleet`: real
 * HAProxy + real sidecar each, on its own loopback address, all reading the one fleet config)
 * and the control-plane ports wired to all of it, with a task client and a CA that note when
 * each task served what and when each certificate was issued.
 */
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalDnsServer } from '../../embedded/dns-server.ts';
import {
  freeTaskPorts,
  ProcessFleet,
  type ProcessFleetEvent,
  taskAddresses,
} from '../../embedded/process-fleet.ts';
import { TrafficGenerator, type TrafficRoute, type TrafficStats } from '../../embedded/traffic.ts';
import { startLocalUpstream } from '../../embedded/upstream.ts';
import { parseFleetConfig } from '../../lib/config/index.ts';
import { localAllowlistObjects } from '../../lib/local/file-object-store.ts';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { LocalAuthority } from '../../lib/local/local-authority.ts';
import { LogNotifier } from '../../lib/local/log-notifier.ts';
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
import { readNudgeKey } from '../../lib/secrets/nudge-key.ts';
import { HttpTaskClient } from '../../lib/task-client/http-task-client.ts';
import type { ControlPlanePorts } from '../../lib/workflows/ports.ts';
import { initFleet } from '../commands/init.ts';
import { fleetSecretIds, waitIssued } from './secrets.ts';
import { localPaths } from './target.ts';
import { runLocalWorkflow, type WorkflowOutcome } from './workflow.ts';

export const DEMO_FLEET = 'demo';

/** Route names: the terminate (mTLS) route, the passthrough route, the origination upstream. */
export const DemoNames = {
  mtls: 'api.demo.test',
  passthrough: 'pass.demo.test',
  backend: 'backend.demo.test',
} as const;

/** Client addresses the traffic claims through the PROXY header (documentation ranges). */
export const DemoSources = {
  /** The traffic's source: removed from the allowlist, then restored. */
  traffic: '203.0.113.10',
  trafficCidr: '203.0.113.0/24',
  /** Another client that stays allowed throughout. */
  other: '198.51.100.10',
  otherCidr: '198.51.100.0/24',
} as const;

/**
 * Upstreams listen on their own loopback address, apart from the NLB stand-in and DNS on
 * 127.0.0.1 and the tasks' 127.0.1.N.
 */
export const UPSTREAM_HOST = '127.0.0.3';

/**
 * Where the control plane runs in the demo: the source of its connections to the tasks (the
 * kernel's source address for all of 127.0.0.0/8), admitted by the verification listener.
 */
export const CONTROL_PLANE_CIDR = '127.0.0.1/32';

/** The listener ports every demo task uses, each on its own address. */
export interface DemoListenerPorts {
  tls: number;
  health: number;
  verify: number;
}

/** Thrown when the signal aborts a run. */
export class DemoAborted extends Error {
  constructor() {
    super('interrupted');
    this.name = 'DemoAborted';
  }
}

/** A certificate and key straight from the CA, for the demo's clients and upstreams (not fleet secrets). */
export async function issueCredential(
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
    certificatePem: `${[issued.certificatePem.trim(), issued.chainPem.trim()].filter((p) => p !== '').join('\n')}\n`,
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
  listeners: DemoListenerPorts;
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
    // One document for every task, as on AWS: each sidecar binds its task's own address
    // (`bindAddress`, 127.0.1.N) instead of `bind`, on these ports.
    listeners: {
      bind: ['127.0.0.1'],
      tls: options.listeners.tls,
      health: options.listeners.health,
      verify: options.listeners.verify,
      http: null,
      metrics: null,
    },
    // 127.0.0.1 plays the NLB: its PROXY v2 header carries the client's address.
    proxyProtocol: { enabled: true, version: 'v2', trustedPeers: ['127.0.0.1/32'] },
    // The control plane's verification handshakes, straight to each task's verify listener.
    verify: { trustedPeers: [CONTROL_PLANE_CIDR] },
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
export class ObservedTaskClient implements TaskClient {
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
      const version = request.versionId ? `@${request.versionId.slice(0, 8)}` : '';
      this.#print(
        `    nudge ${task.taskId} ${request.secretId}${version}: applied in ${Math.round(performance.now() - started)} ms`,
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

export interface DemoEnvironmentOptions {
  tasks: number;
  /** Keep everything here (kept afterwards); default a fresh temp directory, removed by `close`. */
  stateDir?: string;
  print: (line: string) => void;
  /** Print every nudge and verification (per task). Default true. */
  perTaskProgress?: boolean;
  signal?: AbortSignal;
  /** The sidecar command (default: this repository's `cli/main.ts sidecar`). */
  sidecarCommand?: readonly string[];
  /** Per task, spawn to ready. Default 30 s. */
  readyTimeoutMs?: number;
}

export interface DemoEnvironment {
  stateDir: string;
  store: FileSecretStore;
  caPem: string;
  fleet: ProcessFleet;
  /** Ports for the local runner: the observed CA and task client, the process fleet, a log notifier. */
  ports: ControlPlanePorts;
  observed: ObservedTaskClient;
  /** Certificate id → when the CA issued it (ms since the epoch). */
  issuedAt: Map<string, number>;
  /** The routes traffic can use (the mTLS route only when the tree has terminate routes). */
  routes: TrafficRoute[];
  /** What this tree lacks for the full scenario. */
  missing: string[];
  /** Control-plane events published so far. */
  events: string[];
  /** Stops everything (idempotent). */
  close(): Promise<void>;
}

/**
 * Starts the whole local world and waits until every task is ready. On any failure (or an
 * abort) everything already started is stopped before the error propagates.
 */
export async function startDemoEnvironment(options: DemoEnvironmentOptions): Promise<DemoEnvironment> {
  const cleanups: (() => Promise<void> | void)[] = [];
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch {
        // keep cleaning up the rest
      }
    }
  };
  const print = options.print;
  const checkAbort = () => {
    if (options.signal?.aborted) throw new DemoAborted();
  };
  const stateDir = options.stateDir ?? (await mkdtemp(join(tmpdir(), 'portcullis-demo-')));
  // The fleet, once started, for the exit hook below.
  let exitFleet: ProcessFleet | undefined;
  if (options.stateDir === undefined) {
    // A process that ends without running the cleanups (a second Ctrl-C, process.exit, an
    // uncaught error) still leaves no directory behind, the CA's private key included: the
    // children are killed and the directory removed synchronously on exit.
    const removeNow = () => {
      exitFleet?.killNow();
      rmSync(stateDir, { recursive: true, force: true });
    };
    process.on('exit', removeNow);
    cleanups.push(async () => {
      await rm(stateDir, { recursive: true, force: true });
      process.off('exit', removeNow);
    });
  }
  try {
    const paths = localPaths(stateDir);
    const ids = fleetSecretIds(DEMO_FLEET);
    print(`state directory ${stateDir}`);

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
    const [client, backend, passthroughServer] = await Promise.all([
      issueCredential(authority, {
        commonName: 'demo-client',
        uri: ['spiffe://demo/client'],
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

    // Every task listens on these ports, each on its own address (ECS tasks each have an IP).
    const [tlsPort, healthPort, verifyPort, adminPort] = await freeTaskPorts(taskAddresses(options.tasks), 4);
    const listeners: DemoListenerPorts = { tls: tlsPort!, health: healthPort!, verify: verifyPort! };

    const missing: string[] = [];
    let terminate = true;
    const probe = {
      dnsAddress: dns.address,
      mtlsUpstreamPort: 1,
      passthroughUpstreamPort: 1,
      terminate: true,
      listeners,
    };
    try {
      parseFleetConfig(demoFleetDocument(probe));
    } catch {
      terminate = false;
      missing.push('terminate routes in lib/config + the renderer (the mTLS route is left out)');
    }
    const document = demoFleetDocument({
      dnsAddress: dns.address,
      mtlsUpstreamPort: mtlsUpstream.port,
      passthroughUpstreamPort: passthroughUpstream.port,
      terminate,
      listeners,
    });

    // The same code path as `portcullis init`.
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

    checkAbort();
    const onFleetEvent = (event: ProcessFleetEvent) => {
      if (event.type === 'task-ready') {
        print(`  ${event.taskId} ready (generation ${event.generation}, ${Math.round(event.ms)} ms)`);
      } else if (event.type === 'roll-started' || event.type === 'roll-finished') {
        print(`  fleet ${event.type} ${event.deploymentId}`);
      }
    };
    print(`starting ${options.tasks} gateway task(s): sidecar + HAProxy each`);
    const started = performance.now();
    let fleet: ProcessFleet | undefined;
    const onAbort = () => fleet?.killNow();
    options.signal?.addEventListener('abort', onAbort);
    cleanups.push(() => options.signal?.removeEventListener('abort', onAbort));
    fleet = await ProcessFleet.start({
      dir: paths.fleet,
      fleet: DEMO_FLEET,
      tasks: options.tasks,
      store,
      storeDir: paths.store,
      fleetConfigSecretId: ids.fleetConfig,
      adminPort: adminPort!,
      onEvent: onFleetEvent,
      ...(options.sidecarCommand === undefined ? {} : { sidecarCommand: options.sidecarCommand }),
      ...(options.readyTimeoutMs === undefined ? {} : { readyTimeoutMs: options.readyTimeoutMs }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    const running = fleet;
    exitFleet = fleet;
    cleanups.push(() => running.stop());
    const first = fleet.records()[0];
    print(
      `fleet of ${options.tasks} ready in ${((performance.now() - started) / 1000).toFixed(1)} s: ${first?.address ?? '-'}… (tls :${listeners.tls}, verify :${listeners.verify}, admin :${adminPort})`,
    );

    const perTask = options.perTaskProgress ?? true;
    // The control plane's own client, as on AWS: nudges to each sidecar, verification handshakes
    // to each task's verify listener (no PROXY header, no allowlist entry, no client certificate).
    const observed = new ObservedTaskClient(
      new HttpTaskClient({ nudgeKey: () => readNudgeKey(store, ids.nudgeKey), timeoutMs: 10_000 }),
      perTask ? print : () => {},
    );
    const issuedAt = new Map<string, number>();
    const clientCredential = { certificatePem: client.certificatePem, keyPem: client.keyPem };
    return {
      stateDir,
      store,
      caPem,
      fleet,
      ports: {
        fleetName: DEMO_FLEET,
        fleetConfigSecretId: ids.fleetConfig,
        store,
        authority: observedAuthority(authority, issuedAt),
        fleet,
        taskClient: observed,
        notifier,
        allowlistObjects: localAllowlistObjects(paths.store, DEMO_FLEET),
      },
      observed,
      issuedAt,
      routes: [
        ...(terminate ? [{ name: 'mtls', serverName: DemoNames.mtls, caPem, client: clientCredential }] : []),
        { name: 'passthrough', serverName: DemoNames.passthrough, caPem, client: clientCredential },
      ],
      missing,
      events,
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/**
 * The traffic the demo and the rotation benchmark measure a rotation under: two workers opening
 * new connections over every route of `env` (10 ms apart) plus the long-lived sessions, all from
 * {@link DemoSources.traffic}, to whatever endpoints the fleet has at each moment. Not started.
 */
export function demoTraffic(env: Pick<DemoEnvironment, 'fleet' | 'routes'>): TrafficGenerator {
  return new TrafficGenerator({
    endpoints: () => env.fleet.endpoints(),
    routes: env.routes,
    source: DemoSources.traffic,
    workers: 2,
    pauseMs: 10,
  });
}

/**
 * Runs rotate-certificates on the demo fleet's `api` certificate, as the demo, the rotation
 * benchmark and the roll test do: forced (due or not), revoking the old certificate at once (no
 * grace), the rollout polled every second at most `rolloutMaxPolls` times.
 */
export function rotateDemoCertificate(
  ports: ControlPlanePorts,
  options: { rolloutMaxPolls: number; print?: (line: string) => void },
): Promise<WorkflowOutcome> {
  return runLocalWorkflow(
    'rotate-certificates',
    {
      fleet: DEMO_FLEET,
      certificates: ['api'],
      force: true,
      graceSeconds: 0,
      rolloutPollSeconds: 1,
      rolloutMaxPolls: options.rolloutMaxPolls,
    },
    ports,
    options.print === undefined ? {} : { print: options.print },
  );
}

/** What every task serves on the mTLS route now, by a verification handshake (null: nothing). */
export async function servedSerials(
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

/** The first time a task was seen serving `serial`: by the workflow's verification or by traffic. */
export function firstServed(
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

export interface RotationMeasurement {
  previousSerial: string | null;
  newSerial: string | null;
  tasksServingNew: number;
  /** From the CA issuing the new certificate to the last task serving it; null unless every task does. */
  seconds: number | null;
  perTask: {
    taskId: string;
    before: string | null;
    after: string | null;
    servingNewAfterSeconds: number | null;
  }[];
}

/**
 * Folds what was observed around a rotation into figures: serials before and after per task,
 * and how long after issuance each task was first seen serving the new serial. Pure.
 */
export function measureRotation(input: {
  succeeded: boolean;
  before: readonly { taskId: string; serial: string | null }[];
  after: readonly { taskId: string; serial: string | null }[];
  issuedAt: ReadonlyMap<string, number>;
  firstServedAt: (serial: string, taskId: string) => number | undefined;
}): RotationMeasurement {
  const previousSerial = input.before.find((b) => b.serial !== null)?.serial ?? null;
  const candidate = input.after.find(
    (a) => a.serial !== null && (previousSerial === null || !sameSerial(a.serial, previousSerial)),
  );
  const newSerial = input.succeeded ? (candidate?.serial ?? null) : null;
  const issuance = [...input.issuedAt.values()].sort((a, b) => a - b)[0];
  const perTask = input.after.map((a) => {
    const seen = newSerial === null ? undefined : input.firstServedAt(newSerial, a.taskId);
    return {
      taskId: a.taskId,
      before: input.before.find((b) => b.taskId === a.taskId)?.serial ?? null,
      after: a.serial,
      servingNewAfterSeconds:
        seen === undefined || issuance === undefined ? null : round(Math.max(0, seen - issuance) / 1000),
    };
  });
  const serving =
    newSerial === null ? 0 : perTask.filter((p) => p.after !== null && sameSerial(p.after, newSerial)).length;
  const times = perTask.map((p) => p.servingNewAfterSeconds);
  const seconds =
    newSerial !== null && serving === perTask.length && perTask.length > 0 && times.every((s) => s !== null)
      ? Math.max(...(times as number[]))
      : null;
  return { previousSerial, newSerial, tasksServingNew: serving, seconds, perTask };
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
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

/** Milliseconds precision for seconds in reports. */
export function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}
