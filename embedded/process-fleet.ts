/**
 * The embedded mode's `Fleet`: N gateway "tasks" on one machine, each a real HAProxy plus a real
 * sidecar, started the way ECS starts the two containers of a task — the sidecar first
 * (`portcullis sidecar --config FILE`, a child process), HAProxy once the sidecar reports the
 * files rendered (`dependsOn: HEALTHY`), with the image's exact arguments (`haproxyArgs`).
 * `roll()` replaces the tasks one at a time like an ECS deployment with `minimumHealthyPercent`
 * below 100, and `rolloutState()` reports it.
 *
 * Like ECS tasks, which each have an IP address of their own, every local task has its own
 * loopback address ({@link taskAddress}: 127.0.1.N; Linux routes all of 127.0.0.0/8 to `lo`) and
 * listens on the same ports as the others: the listener ports of the one fleet config every
 * sidecar reads from the store (the sidecar binds its task's address, `bindAddress`), and one
 * admin port. A route change in the fleet-config secret reaches every task as it does on AWS.
 *
 * A registry file (`registry.json` in the fleet directory) lists the running tasks, so other
 * processes (the CLI with `--local DIR`) can find them; {@link RegistryFleet} reads it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { parseFleetConfig } from '../lib/config/index.ts';
import { NotFoundError, ValidationError } from '../lib/errors.ts';
import { encodeProxyV2 } from '../lib/net/proxy-protocol.ts';
import type { Fleet, FleetTask, RollOptions, RolloutState, SecretStore } from '../lib/ports.ts';
import { Stage } from '../lib/ports.ts';
import { gatewayLayout } from '../proxy/haproxy/layout.ts';
import { type RunningHaproxy, startHaproxy } from '../proxy/haproxy/process.ts';
import { writeFileAtomic } from '../proxy/haproxy/render-write.ts';

const repositoryRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** `node cli/main.ts`: the same entry point the sidecar image runs. */
export const CLI_MAIN = join(repositoryRoot, 'cli', 'main.ts');

/** Most tasks a local fleet runs: one per address of 127.0.1.0/24 ({@link taskAddress}). */
export const MAX_LOCAL_TASKS = 254;

/**
 * The loopback address of the `index`-th task (1-based): 127.0.1.`index`. Apart from what the
 * demo and the tests use otherwise: 127.0.0.1 (the NLB stand-in, DNS, the control plane),
 * 127.0.0.2–4 (upstreams), and from the documentation ranges PROXY headers carry.
 */
export function taskAddress(index: number): string {
  if (!Number.isInteger(index) || index < 1 || index > MAX_LOCAL_TASKS) {
    throw new ValidationError(`a local task index is 1 to ${MAX_LOCAL_TASKS}, got ${index}`, {
      path: 'tasks',
    });
  }
  return `127.0.1.${index}`;
}

/** The ports a local task listens on, on its own address: the same for every task. */
export interface TaskPorts {
  /** The sidecar's admin API (nudge, status). */
  admin: number;
  /** HAProxy's TLS listener (`listeners.tls`, the NLB's target port). */
  tls: number;
  /** HAProxy's `/healthz` (`listeners.health`; ready once the sidecar applied valid state). */
  health: number;
  /**
   * The verification listener (`listeners.verify`), where the control plane handshakes; null when
   * the fleet config disables it.
   */
  verify: number | null;
}

/** One task as the registry records it. */
export interface LocalTaskRecord {
  taskId: string;
  /** 1 for the first start, +1 for every replacement by a roll. */
  generation: number;
  /** The task's own loopback address ({@link taskAddress}); a replacement keeps it. */
  address: string;
  ports: TaskPorts;
  dir: string;
  sidecarPid: number | null;
  haproxyPid: number | null;
  startedAt: string;
  lastStatus: 'PROVISIONING' | 'RUNNING' | 'STOPPED';
}

/** The registry document (`<dir>/registry.json`). */
export interface FleetRegistry {
  /** 2: tasks have addresses of their own (format 1 had per-task ports on 127.0.0.1). */
  format: 2;
  fleet: string;
  /** The process that owns the tasks (only it can roll them). */
  ownerPid: number;
  storeDir: string;
  fleetConfigSecretId: string;
  tasks: LocalTaskRecord[];
}

export type ProcessFleetEvent =
  | { type: 'task-starting'; taskId: string; generation: number }
  | { type: 'task-ready'; taskId: string; generation: number; ms: number }
  | { type: 'task-stopped'; taskId: string }
  | { type: 'roll-started'; deploymentId: string }
  | { type: 'roll-finished'; deploymentId: string; state: RolloutState; error?: string };

export interface ProcessFleetOptions {
  /** Fleet directory: the registry and one sub-directory per task. */
  dir: string;
  fleet: string;
  /** Number of tasks. */
  tasks: number;
  /** The store (a FileSecretStore) the sidecars read; its directory goes into their configs. */
  store: SecretStore;
  storeDir: string;
  /**
   * The fleet config every sidecar reads (`fleetConfig: { secretId }`). Its `listeners` give the
   * ports every task listens on; its author picks ports free on every task address
   * ({@link freeTaskPorts}).
   */
  fleetConfigSecretId: string;
  /** The sidecars' admin port (the same on every task). Default: one free on every task address. */
  adminPort?: number;
  /** Sidecar poll backstop, ms. Default 30 000 (the nudge is what makes updates fast). */
  sidecarPollMs?: number;
  /**
   * The sidecar command, to which `--config FILE` is appended. Default
   * `[node, cli/main.ts, 'sidecar']`, what the sidecar image runs.
   */
  sidecarCommand?: readonly string[];
  /** HAProxy binary. Default `HAPROXY_BIN`, else `haproxy` from PATH. */
  haproxyBinary?: string;
  /** Per task, from spawn to ready. Default 30 000 ms. */
  readyTimeoutMs?: number;
  /** How many tasks start at once. Default 4 (two cores: more only queues). */
  startConcurrency?: number;
  onEvent?: (event: ProcessFleetEvent) => void;
  /** Aborting stops a start in progress: every child is killed and `start` rejects. */
  signal?: AbortSignal;
}

interface RunningTask {
  record: LocalTaskRecord;
  sidecar: ChildProcess | undefined;
  sidecarExited: Promise<void>;
  haproxy: RunningHaproxy | undefined;
}

/** Binds `port` (0: any) on `host` and releases it; the port bound, or undefined when taken. */
function probePort(host: string, port: number): Promise<number | undefined> {
  return new Promise((resolvePort) => {
    const server = createServer();
    server.once('error', () => resolvePort(undefined));
    server.listen({ port, host, exclusive: true }, () => {
      const address = server.address();
      server.close(() =>
        resolvePort(address !== null && typeof address === 'object' ? address.port : undefined),
      );
    });
  });
}

/**
 * `count` distinct TCP ports that are free on every one of `addresses` right now (bound and
 * released on each: a listener on a wildcard address or on any of them makes a port unusable).
 * Like any free-port pick it can race with another process binding one before the caller does.
 * @throws Error when no such ports turn up within a bounded number of attempts.
 */
export async function freeTaskPorts(addresses: readonly string[], count: number): Promise<number[]> {
  const [first, ...rest] = addresses;
  if (first === undefined) throw new ValidationError('freeTaskPorts needs at least one address');
  const ports: number[] = [];
  for (let attempt = 0; ports.length < count && attempt < 20 * count; attempt++) {
    const port = await probePort(first, 0);
    if (port === undefined || ports.includes(port)) continue;
    const elsewhere = await Promise.all(rest.map((address) => probePort(address, port)));
    if (elsewhere.every((p) => p === port)) ports.push(port);
  }
  if (ports.length < count) {
    throw new Error(`found only ${ports.length} of ${count} ports free on ${addresses.join(', ')}`);
  }
  return ports;
}

/** The addresses of a fleet of `tasks` tasks: task-1 is {@link taskAddress}(1), and so on. */
export function taskAddresses(tasks: number): string[] {
  return Array.from({ length: tasks }, (_, i) => taskAddress(i + 1));
}

/**
 * A local task as the control plane sees it: its own address for the sidecar and for the
 * verification handshake (`tlsPort` is the verify listener, as `EcsFleet` lists ECS tasks).
 */
export function toFleetTask(record: LocalTaskRecord): FleetTask {
  return {
    taskId: record.taskId,
    address: record.address,
    adminPort: record.ports.admin,
    tlsAddress: record.address,
    // Disabled: nothing to handshake with; the port is the TLS listener's, which refuses the verifier.
    tlsPort: record.ports.verify ?? record.ports.tls,
    lastStatus: record.lastStatus,
    startedAt: new Date(record.startedAt),
  };
}

/** The sidecar's configuration file for one local task: the shared fleet config, its own address. */
export function sidecarConfig(options: {
  storeDir: string;
  fleetConfigSecretId: string;
  gatewayDir: string;
  address: string;
  adminPort: number;
  pollMs: number;
}): Record<string, unknown> {
  return {
    store: { kind: 'file', dir: options.storeDir },
    fleetConfig: { secretId: options.fleetConfigSecretId },
    gatewayDir: options.gatewayDir,
    admin: { host: options.address, port: options.adminPort },
    bindAddress: options.address,
    pollIntervalMs: options.pollMs,
    // Local tasks share one machine: spread their backstop polls, but keep them within the poll.
    pollJitterMs: Math.floor(options.pollMs / 3),
  };
}

async function readJson(path: string): Promise<unknown> {
  return JSON.parse(await readFile(path, 'utf8'));
}

async function httpStatus(
  host: string,
  port: number,
  path: string,
  timeoutMs = 1000,
): Promise<number | undefined> {
  try {
    const response = await fetch(`http://${host}:${port}${path}`, {
      signal: AbortSignal.timeout(timeoutMs),
    });
    await response.arrayBuffer();
    return response.status;
  } catch {
    return undefined;
  }
}

/** Where the demo's NLB stand-in connects from (the fleet config's trusted PROXY peer). */
const NLB_ADDRESS = '127.0.0.1';

/**
 * The status HAProxy's health listener answers the NLB's health check with: from the NLB's
 * address, a PROXY v2 `LOCAL` header (no client, as an NLB target group with proxy protocol
 * sends), then `GET /healthz`. Undefined: no answer.
 */
function nlbHealthStatus(host: string, port: number, timeoutMs = 1000): Promise<number | undefined> {
  return new Promise((done) => {
    const chunks: Buffer[] = [];
    const socket = connect({ host, port, localAddress: NLB_ADDRESS });
    const finish = () => {
      socket.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1];
      done(status === undefined ? undefined : Number(status));
    };
    socket.setTimeout(timeoutMs, finish);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', finish);
    socket.on('close', finish);
    socket.once('connect', () => {
      const request = `GET /healthz HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;
      socket.end(Buffer.concat([encodeProxyV2({ command: 'local' }), Buffer.from(request)]));
    });
  });
}

function alive(pid: number | null | undefined): boolean {
  if (pid === null || pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The end of a log file, for an error message (the directory may be gone by the time anyone looks). */
async function logTail(path: string, chars = 1500): Promise<string> {
  try {
    return (await readFile(path, 'utf8')).slice(-chars);
  } catch {
    return `(no log at ${path})`;
  }
}

/** Runs `work` over `items` with at most `limit` in flight. */
async function pool<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const runners = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      try {
        await work(item);
      } catch (error) {
        errors.push(error);
      }
    }
  });
  await Promise.all(runners);
  if (errors.length > 0) throw errors[0];
}

/** One roll of the process fleet, as `rolloutState` reports it. */
interface LocalDeployment {
  state: RolloutState;
  error?: string;
  done: Promise<void>;
  startedAtMs: number;
}

/**
 * N local gateway tasks. Start with {@link ProcessFleet.start}; always `stop()` (the demo also
 * kills every child synchronously on process exit).
 */
export class ProcessFleet implements Fleet {
  readonly dir: string;
  readonly #options: ProcessFleetOptions;
  readonly #adminPort: number;
  readonly #tasks = new Map<string, RunningTask>();
  readonly #deployments = new Map<string, LocalDeployment>();
  #deploymentCounter = 0;
  #stopped = false;
  #registryWrites: Promise<void> = Promise.resolve();
  readonly #onExit = () => this.killNow();

  private constructor(options: ProcessFleetOptions, adminPort: number) {
    this.dir = resolve(options.dir);
    this.#options = options;
    this.#adminPort = adminPort;
  }

  /** Starts every task and resolves once all are ready (or rejects, after stopping what started). */
  static async start(options: ProcessFleetOptions): Promise<ProcessFleet> {
    if (!Number.isInteger(options.tasks) || options.tasks < 1 || options.tasks > MAX_LOCAL_TASKS) {
      throw new ValidationError(
        `tasks must be an integer from 1 to ${MAX_LOCAL_TASKS}, got ${options.tasks}`,
        {
          path: 'tasks',
        },
      );
    }
    const addresses = taskAddresses(options.tasks);
    const adminPort = options.adminPort ?? (await freeTaskPorts(addresses, 1))[0]!;
    const fleet = new ProcessFleet(options, adminPort);
    process.on('exit', fleet.#onExit);
    const onAbort = () => fleet.killNow();
    options.signal?.addEventListener('abort', onAbort);
    await mkdir(join(fleet.dir, 'tasks'), { recursive: true, mode: 0o700 });
    try {
      const tasks = addresses.map((address, i) => ({ taskId: `task-${i + 1}`, address }));
      await pool(tasks, options.startConcurrency ?? 4, ({ taskId, address }) =>
        fleet.#startTask(taskId, 1, address),
      );
    } catch (error) {
      await fleet.stop();
      throw error;
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
    return fleet;
  }

  /** The tasks' records, in task order. */
  records(): LocalTaskRecord[] {
    return [...this.#tasks.values()]
      .map((t) => t.record)
      .sort((a, b) => a.taskId.localeCompare(b.taskId, 'en', { numeric: true }));
  }

  /** TLS listeners of the running tasks (each on its own address), for traffic. */
  endpoints(): { taskId: string; host: string; port: number }[] {
    return this.records()
      .filter((r) => r.lastStatus === 'RUNNING')
      .map((r) => ({ taskId: r.taskId, host: r.address, port: r.ports.tls }));
  }

  /** Process ids per task (sidecar and HAProxy master), for CPU and memory figures. */
  processes(): { taskId: string; sidecarPid: number | null; haproxyPid: number | null }[] {
    return this.records().map((r) => ({
      taskId: r.taskId,
      sidecarPid: r.sidecarPid,
      haproxyPid: r.haproxyPid,
    }));
  }

  /**
   * One task's access-log lines so far: HAProxy logs into its ring, the sidecar's log sink writes
   * each line to the sidecar's output (`sidecar.log` here), beside the sidecar's own lines; the
   * access-log lines are the JSON objects with a `frontend`.
   */
  async accessLog(taskId: string): Promise<string[]> {
    const task = this.#tasks.get(taskId);
    if (task === undefined) return [];
    const text = await readFile(join(task.record.dir, 'sidecar.log'), 'utf8').catch(() => '');
    return text.split('\n').filter((line) => {
      try {
        const parsed: unknown = JSON.parse(line);
        return typeof parsed === 'object' && parsed !== null && 'frontend' in parsed;
      } catch {
        return false;
      }
    });
  }

  async listTasks(): Promise<FleetTask[]> {
    return this.records()
      .filter((r) => r.lastStatus === 'RUNNING')
      .map(toFleetTask);
  }

  /**
   * Starts replacing every task, one at a time (stop, start on the same address, wait ready);
   * with `reuseSince`, follows a replacement in progress that started since then instead.
   */
  async roll(options: RollOptions = {}): Promise<{ deploymentId: string; reused?: boolean }> {
    const since = options.reuseSince?.getTime();
    if (since !== undefined) {
      for (const [id, d] of this.#deployments)
        if (d.state === 'IN_PROGRESS' && d.startedAtMs >= since) return { deploymentId: id, reused: true };
    }
    const deploymentId = `local-deployment-${++this.#deploymentCounter}`;
    const entry: LocalDeployment = {
      state: 'IN_PROGRESS',
      done: Promise.resolve(),
      startedAtMs: Date.now(),
    };
    this.#deployments.set(deploymentId, entry);
    this.#options.onEvent?.({ type: 'roll-started', deploymentId });
    entry.done = (async () => {
      try {
        for (const record of this.records()) {
          if (this.#stopped) throw new Error('fleet stopped during the roll');
          await this.#stopTask(record.taskId);
          await this.#startTask(record.taskId, record.generation + 1, record.address);
        }
        entry.state = 'COMPLETED';
      } catch (error) {
        entry.state = 'FAILED';
        entry.error = error instanceof Error ? error.message : String(error);
      }
      this.#options.onEvent?.({
        type: 'roll-finished',
        deploymentId,
        state: entry.state,
        ...(entry.error === undefined ? {} : { error: entry.error }),
      });
    })();
    return { deploymentId };
  }

  async rolloutState(deploymentId: string): Promise<RolloutState> {
    const entry = this.#deployments.get(deploymentId);
    if (entry === undefined) throw new NotFoundError(`no deployment ${deploymentId} in the local fleet`);
    return entry.state;
  }

  /** Stops every task (sidecar and HAProxy) and removes the registry. Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all([...this.#deployments.values()].map((d) => d.done.catch(() => undefined)));
    await Promise.all([...this.#tasks.keys()].map((id) => this.#stopTask(id)));
    process.off('exit', this.#onExit);
    // A write still queued must not put the file back after it is removed.
    await this.#registryWrites.catch(() => undefined);
    await rm(join(this.dir, 'registry.json'), { force: true });
  }

  /** SIGKILLs every child at once, synchronously: for `process.on('exit')` and fatal paths. */
  killNow(): void {
    for (const task of this.#tasks.values()) {
      for (const pid of [task.record.sidecarPid, task.record.haproxyPid]) {
        if (pid === null) continue;
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  }

  /**
   * Queued: each write serialises the records when its turn comes. Tasks start concurrently, and
   * two writes in flight could otherwise rename an older snapshot over a newer one (a task that
   * is RUNNING missing from the file other processes read).
   */
  #writeRegistry(): Promise<void> {
    const write = this.#registryWrites
      .catch(() => undefined)
      .then(() => (this.#stopped ? undefined : this.#writeRegistryNow()));
    this.#registryWrites = write;
    return write;
  }

  async #writeRegistryNow(): Promise<void> {
    const registry: FleetRegistry = {
      format: 2,
      fleet: this.#options.fleet,
      ownerPid: process.pid,
      storeDir: resolve(this.#options.storeDir),
      fleetConfigSecretId: this.#options.fleetConfigSecretId,
      tasks: this.records(),
    };
    await writeFileAtomic(join(this.dir, 'registry.json'), `${JSON.stringify(registry, null, 2)}\n`, 0o600);
  }

  /**
   * The ports a task started now listens on: the current fleet config's listeners; and whether
   * its health listener expects the NLB's PROXY header (`healthCheck.proxyProtocol`).
   */
  async #taskPorts(): Promise<{ ports: TaskPorts; healthProxy: boolean }> {
    const id = this.#options.fleetConfigSecretId;
    const secret = await this.#options.store.get(id, { stage: Stage.Current });
    const { listeners, healthCheck } = parseFleetConfig(
      parseYaml(secret.value) as unknown,
      `fleet config ${id}`,
    );
    return {
      ports: {
        admin: this.#adminPort,
        tls: listeners.tls,
        health: listeners.health,
        verify: listeners.verify,
      },
      healthProxy: healthCheck.proxyProtocol,
    };
  }

  async #startTask(taskId: string, generation: number, address: string): Promise<void> {
    if (this.#stopped) throw new Error('fleet stopped');
    const started = performance.now();
    this.#options.onEvent?.({ type: 'task-starting', taskId, generation });
    const dir = join(this.dir, 'tasks', taskId);
    const gatewayDir = join(dir, 'gateway');
    // A replacement task starts from an empty volume, like a fresh ECS task.
    await rm(dir, { recursive: true, force: true });
    await mkdir(gatewayDir, { recursive: true, mode: 0o700 });
    const { ports, healthProxy } = await this.#taskPorts();
    const record: LocalTaskRecord = {
      taskId,
      generation,
      address,
      ports,
      dir,
      sidecarPid: null,
      haproxyPid: null,
      startedAt: new Date().toISOString(),
      lastStatus: 'PROVISIONING',
    };
    const task: RunningTask = {
      record,
      sidecar: undefined,
      sidecarExited: Promise.resolve(),
      haproxy: undefined,
    };
    this.#tasks.set(taskId, task);
    const deadline = Date.now() + (this.#options.readyTimeoutMs ?? 30_000);
    const layout = gatewayLayout(gatewayDir);
    const sidecarLog = join(dir, 'sidecar.log');

    const configFile = join(dir, 'sidecar.json');
    const config = sidecarConfig({
      storeDir: resolve(this.#options.storeDir),
      fleetConfigSecretId: this.#options.fleetConfigSecretId,
      gatewayDir,
      address,
      adminPort: ports.admin,
      pollMs: this.#options.sidecarPollMs ?? 30_000,
    });
    await writeFileAtomic(configFile, `${JSON.stringify(config, null, 2)}\n`, 0o600);
    const log = await open(sidecarLog, 'a', 0o600);
    const [command, ...args] = this.#options.sidecarCommand ?? [process.execPath, CLI_MAIN, 'sidecar'];
    const child = spawn(command!, [...args, '--config', configFile], {
      stdio: ['ignore', log.fd, log.fd],
      cwd: repositoryRoot,
    });
    await log.close();
    task.sidecar = child;
    task.sidecarExited = new Promise<void>((done) => child.once('exit', () => done()));
    record.sidecarPid = child.pid ?? null;
    // ECS `dependsOn: HEALTHY`: HAProxy starts once the sidecar has rendered its files.
    for (let attempt = 0; ; attempt++) {
      this.#checkAbort();
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`sidecar of ${taskId} exited during startup:\n${await logTail(sidecarLog)}`);
      }
      if ((await httpStatus(address, ports.admin, '/healthz')) === 200) break;
      if (Date.now() > deadline || attempt > 10_000) {
        throw new Error(`sidecar of ${taskId} not healthy in time:\n${await logTail(sidecarLog)}`);
      }
      await sleep(50);
    }

    const haproxy = await startHaproxy({
      layout,
      ...(this.#options.haproxyBinary === undefined ? {} : { binary: this.#options.haproxyBinary }),
      readyTimeoutMs: Math.max(1000, deadline - Date.now()),
    });
    task.haproxy = haproxy;
    record.haproxyPid = haproxy.pid;
    await haproxy.waitReady();
    // Ready: the health check the NLB would use answers 200 (the sidecar applied valid state);
    // behind PROXY protocol it opens with the NLB's LOCAL header, as on AWS.
    const healthStatus = () =>
      healthProxy ? nlbHealthStatus(address, ports.health) : httpStatus(address, ports.health, '/healthz');
    for (let attempt = 0; ; attempt++) {
      this.#checkAbort();
      if ((await healthStatus()) === 200) break;
      if (Date.now() > deadline || attempt > 10_000) {
        throw new Error(
          `${taskId} not ready in time:\n${haproxy.stderr().slice(-2000)}\n${await logTail(sidecarLog)}`,
        );
      }
      await sleep(50);
    }
    record.lastStatus = 'RUNNING';
    await this.#writeRegistry();
    this.#options.onEvent?.({ type: 'task-ready', taskId, generation, ms: performance.now() - started });
  }

  #checkAbort(): void {
    if (this.#options.signal?.aborted) throw new Error('fleet start aborted');
  }

  async #stopTask(taskId: string): Promise<void> {
    const task = this.#tasks.get(taskId);
    if (task === undefined) return;
    task.record.lastStatus = 'STOPPED';
    const stops: Promise<unknown>[] = [];
    if (task.haproxy !== undefined) stops.push(task.haproxy.stop(2000));
    if (task.sidecar !== undefined && task.sidecar.exitCode === null && task.sidecar.signalCode === null) {
      const child = task.sidecar;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
      stops.push(task.sidecarExited.finally(() => clearTimeout(timer)));
    }
    await Promise.all(stops);
    task.record.sidecarPid = null;
    task.record.haproxyPid = null;
    this.#tasks.delete(taskId);
    if (!this.#stopped) await this.#writeRegistry();
    this.#options.onEvent?.({ type: 'task-stopped', taskId });
  }
}

/**
 * The `Fleet` of a local fleet run by another process, read from its registry: what the CLI uses
 * with `--local DIR`. Listing works from anywhere; rolling needs the owning process.
 */
export class RegistryFleet implements Fleet {
  readonly #path: string;

  constructor(fleetDir: string) {
    this.#path = join(fleetDir, 'registry.json');
  }

  /** The registry, or `undefined` when no local fleet (of this format) is running there. */
  async registry(): Promise<FleetRegistry | undefined> {
    try {
      const registry = (await readJson(this.#path)) as FleetRegistry;
      return registry.format === 2 && alive(registry.ownerPid) ? registry : undefined;
    } catch {
      return undefined;
    }
  }

  async listTasks(): Promise<FleetTask[]> {
    const registry = await this.registry();
    return (registry?.tasks ?? []).filter((t) => t.lastStatus === 'RUNNING').map(toFleetTask);
  }

  async roll(): Promise<{ deploymentId: string }> {
    const registry = await this.registry();
    throw new ValidationError(
      registry === undefined
        ? 'no local fleet is running'
        : `local tasks can only be replaced by the process that runs them (pid ${registry.ownerPid})`,
    );
  }

  async rolloutState(deploymentId: string): Promise<RolloutState> {
    throw new NotFoundError(`no deployment ${deploymentId}: this process does not run the local fleet`);
  }
}
