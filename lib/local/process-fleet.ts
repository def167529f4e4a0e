/**
 * The embedded mode's `Fleet`: N gateway "tasks" on one machine, each a real HAProxy plus a real
 * sidecar on its own loopback ports, started the way ECS starts the two containers of a task —
 * the sidecar first (`portcullis sidecar --config FILE`, a child process), HAProxy once the
 * sidecar reports the files rendered (`dependsOn: HEALTHY`), with the image's exact arguments
 * (`haproxyArgs`). `roll()` replaces the tasks one at a time like an ECS deployment with
 * `minimumHealthyPercent` below 100, and `rolloutState()` reports it.
 *
 * A registry file (`registry.json` in the fleet directory) lists the running tasks, so other
 * processes (the CLI with `--local DIR`) can find them; {@link RegistryFleet} reads it.
 *
 * Two ways to prepare a task's files:
 * - `sidecar` (the real thing): the sidecar reads the store, validates, renders and applies.
 * - `render`: for a tree without the sidecar, the fleet renders `haproxy.cfg` itself from the
 *   fleet config and the allowlist in the store and flips `ready` through the runtime API. Such
 *   tasks serve passthrough routes and the allowlist they started with, but nothing can nudge
 *   them (their admin port answers nothing): a rotation or allowlist update fails on them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { gatewayLayout } from '../../proxy/haproxy/layout.ts';
import { cliCommand, type RunningHaproxy, startHaproxy } from '../../proxy/haproxy/process.ts';
import { renderGateway } from '../../proxy/haproxy/render.ts';
import { writeFileAtomic, writeGateway } from '../../proxy/haproxy/render-write.ts';
import { parseFleetConfig } from '../config/index.ts';
import { NotFoundError, ValidationError } from '../errors.ts';
import type { Fleet, FleetTask, RolloutState, SecretStore } from '../ports.ts';
import { Stage } from '../ports.ts';
import { AllowlistSecret, parseSecret } from '../secrets/formats.ts';

const repositoryRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** `node cli/main.ts`: the same entry point the sidecar image runs. */
export const CLI_MAIN = join(repositoryRoot, 'cli', 'main.ts');

/** How a task's gateway files are produced (see the module comment). */
export type TaskMode = 'sidecar' | 'render';

/** The ports one local task listens on (all on 127.0.0.1). */
export interface TaskPorts {
  /** The sidecar's admin API (nudge, status). */
  admin: number;
  /** HAProxy's TLS listener (the NLB's target port). */
  tls: number;
  /** HAProxy's `/healthz` (ready once the sidecar applied valid state). */
  health: number;
}

/** One task as the registry records it. */
export interface LocalTaskRecord {
  taskId: string;
  /** 1 for the first start, +1 for every replacement by a roll. */
  generation: number;
  ports: TaskPorts;
  dir: string;
  sidecarPid: number | null;
  haproxyPid: number | null;
  startedAt: string;
  lastStatus: 'PROVISIONING' | 'RUNNING' | 'STOPPED';
}

/** The registry document (`<dir>/registry.json`). */
export interface FleetRegistry {
  format: 1;
  fleet: string;
  mode: TaskMode;
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
  fleetConfigSecretId: string;
  /** Default: `sidecar` when `cli/commands/sidecar.ts` exists, else `render`. */
  mode?: TaskMode;
  /** Sidecar poll backstop, ms. Default 30 000 (the nudge is what makes updates fast). */
  sidecarPollMs?: number;
  /**
   * The sidecar command, to which `--config FILE` is appended. Default
   * `[node, cli/main.ts, 'sidecar']`, what the sidecar image runs.
   */
  sidecarCommand?: readonly string[];
  /** HAProxy binary. Default `haproxy` from PATH. */
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

/** Picks a free TCP port on 127.0.0.1 by binding port 0 and releasing it. */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolvePort(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

/** Whether this tree has the sidecar command (the fleet falls back to `render` mode without it). */
export async function sidecarAvailable(): Promise<boolean> {
  try {
    await readFile(join(repositoryRoot, 'cli', 'commands', 'sidecar.ts'));
    return true;
  } catch {
    return false;
  }
}

/** A local task as the control plane sees it. */
export function toFleetTask(record: LocalTaskRecord): FleetTask {
  return {
    taskId: record.taskId,
    address: '127.0.0.1',
    adminPort: record.ports.admin,
    tlsAddress: '127.0.0.1',
    tlsPort: record.ports.tls,
    lastStatus: record.lastStatus,
    startedAt: new Date(record.startedAt),
  };
}

/**
 * The per-task copy of the fleet config: the store's document with this task's listeners. Every
 * local task needs its own ports, while a real fleet shares one document (each task has its own
 * IP address there); routes, certificates and allowlist source are untouched.
 */
export function taskFleetDocument(
  document: Record<string, unknown>,
  ports: TaskPorts,
): Record<string, unknown> {
  const listeners = (document.listeners ?? {}) as Record<string, unknown>;
  return {
    ...document,
    listeners: {
      ...listeners,
      bind: ['127.0.0.1'],
      tls: ports.tls,
      health: ports.health,
      http: null,
      metrics: null,
    },
  };
}

/** The sidecar's configuration file for one local task. */
export function sidecarConfig(options: {
  storeDir: string;
  fleetConfigFile: string;
  gatewayDir: string;
  adminPort: number;
  pollMs: number;
}): Record<string, unknown> {
  return {
    store: { kind: 'file', dir: options.storeDir },
    fleetConfig: { file: options.fleetConfigFile },
    gatewayDir: options.gatewayDir,
    admin: { host: '127.0.0.1', port: options.adminPort },
    pollIntervalMs: options.pollMs,
    // Local tasks share one machine: spread their backstop polls, but keep them within the poll.
    pollJitterMs: Math.floor(options.pollMs / 3),
    ownAddresses: [],
  };
}

async function readJson(path: string): Promise<unknown> {
  return JSON.parse(await readFile(path, 'utf8'));
}

async function httpStatus(port: number, path: string, timeoutMs = 1000): Promise<number | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, {
      signal: AbortSignal.timeout(timeoutMs),
    });
    await response.arrayBuffer();
    return response.status;
  } catch {
    return undefined;
  }
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

/**
 * N local gateway tasks. Start with {@link ProcessFleet.start}; always `stop()` (the demo also
 * kills every child synchronously on process exit).
 */
export class ProcessFleet implements Fleet {
  readonly dir: string;
  readonly mode: TaskMode;
  readonly #options: ProcessFleetOptions;
  readonly #tasks = new Map<string, RunningTask>();
  readonly #deployments = new Map<string, { state: RolloutState; error?: string; done: Promise<void> }>();
  #deploymentCounter = 0;
  #stopped = false;
  #registryWrites: Promise<void> = Promise.resolve();
  readonly #onExit = () => this.killNow();

  private constructor(options: ProcessFleetOptions, mode: TaskMode) {
    this.dir = resolve(options.dir);
    this.mode = mode;
    this.#options = options;
  }

  /** Starts every task and resolves once all are ready (or rejects, after stopping what started). */
  static async start(options: ProcessFleetOptions): Promise<ProcessFleet> {
    if (!Number.isInteger(options.tasks) || options.tasks < 1) {
      throw new ValidationError(`tasks must be a positive integer, got ${options.tasks}`, { path: 'tasks' });
    }
    const mode =
      options.mode ??
      (options.sidecarCommand !== undefined || (await sidecarAvailable()) ? 'sidecar' : 'render');
    const fleet = new ProcessFleet(options, mode);
    process.on('exit', fleet.#onExit);
    const onAbort = () => fleet.killNow();
    options.signal?.addEventListener('abort', onAbort);
    await mkdir(join(fleet.dir, 'tasks'), { recursive: true, mode: 0o700 });
    try {
      const ids = Array.from({ length: options.tasks }, (_, i) => `task-${i + 1}`);
      await pool(ids, options.startConcurrency ?? 4, async (taskId) => {
        const ports: TaskPorts = {
          admin: await freeLoopbackPort(),
          tls: await freeLoopbackPort(),
          health: await freeLoopbackPort(),
        };
        await fleet.#startTask(taskId, 1, ports);
      });
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

  /** TLS listeners of the running tasks, for traffic. */
  endpoints(): { taskId: string; host: string; port: number }[] {
    return this.records()
      .filter((r) => r.lastStatus === 'RUNNING')
      .map((r) => ({ taskId: r.taskId, host: '127.0.0.1', port: r.ports.tls }));
  }

  /** Process ids per task (sidecar and HAProxy master), for CPU and memory figures. */
  processes(): { taskId: string; sidecarPid: number | null; haproxyPid: number | null }[] {
    return this.records().map((r) => ({
      taskId: r.taskId,
      sidecarPid: r.sidecarPid,
      haproxyPid: r.haproxyPid,
    }));
  }

  /** HAProxy's stdout lines (JSON access log) of one task so far. */
  accessLog(taskId: string): readonly string[] {
    return this.#tasks.get(taskId)?.haproxy?.lines ?? [];
  }

  async listTasks(): Promise<FleetTask[]> {
    return this.records()
      .filter((r) => r.lastStatus === 'RUNNING')
      .map(toFleetTask);
  }

  /** Starts replacing every task, one at a time (stop, start on the same ports, wait ready). */
  async roll(): Promise<{ deploymentId: string }> {
    const deploymentId = `local-deployment-${++this.#deploymentCounter}`;
    const entry: { state: RolloutState; error?: string; done: Promise<void> } = {
      state: 'IN_PROGRESS',
      done: Promise.resolve(),
    };
    this.#deployments.set(deploymentId, entry);
    this.#options.onEvent?.({ type: 'roll-started', deploymentId });
    entry.done = (async () => {
      try {
        for (const record of this.records()) {
          if (this.#stopped) throw new Error('fleet stopped during the roll');
          await this.#stopTask(record.taskId);
          await this.#startTask(record.taskId, record.generation + 1, record.ports);
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
      format: 1,
      fleet: this.#options.fleet,
      mode: this.mode,
      ownerPid: process.pid,
      storeDir: resolve(this.#options.storeDir),
      fleetConfigSecretId: this.#options.fleetConfigSecretId,
      tasks: this.records(),
    };
    await writeFileAtomic(join(this.dir, 'registry.json'), `${JSON.stringify(registry, null, 2)}\n`, 0o600);
  }

  async #fleetDocument(): Promise<Record<string, unknown>> {
    const secret = await this.#options.store.get(this.#options.fleetConfigSecretId, { stage: Stage.Current });
    const document = parseYaml(secret.value) as unknown;
    if (document === null || typeof document !== 'object' || Array.isArray(document)) {
      throw new ValidationError(`fleet config ${this.#options.fleetConfigSecretId} is not a document`);
    }
    return document as Record<string, unknown>;
  }

  async #startTask(taskId: string, generation: number, ports: TaskPorts): Promise<void> {
    if (this.#stopped) throw new Error('fleet stopped');
    const started = performance.now();
    this.#options.onEvent?.({ type: 'task-starting', taskId, generation });
    const dir = join(this.dir, 'tasks', taskId);
    const gatewayDir = join(dir, 'gateway');
    // A replacement task starts from an empty volume, like a fresh ECS task.
    await rm(dir, { recursive: true, force: true });
    await mkdir(gatewayDir, { recursive: true, mode: 0o700 });
    const record: LocalTaskRecord = {
      taskId,
      generation,
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
    const document = taskFleetDocument(await this.#fleetDocument(), ports);
    const layout = gatewayLayout(gatewayDir);

    if (this.mode === 'sidecar') {
      const fleetConfigFile = join(dir, 'fleet-config.json');
      await writeFileAtomic(fleetConfigFile, `${JSON.stringify(document, null, 2)}\n`, 0o600);
      const configFile = join(dir, 'sidecar.json');
      const config = sidecarConfig({
        storeDir: resolve(this.#options.storeDir),
        fleetConfigFile,
        gatewayDir,
        adminPort: ports.admin,
        pollMs: this.#options.sidecarPollMs ?? 30_000,
      });
      await writeFileAtomic(configFile, `${JSON.stringify(config, null, 2)}\n`, 0o600);
      const log = await open(join(dir, 'sidecar.log'), 'a', 0o600);
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
          throw new Error(
            `sidecar of ${taskId} exited during startup:\n${await logTail(join(dir, 'sidecar.log'))}`,
          );
        }
        if ((await httpStatus(ports.admin, '/healthz')) === 200) break;
        if (Date.now() > deadline || attempt > 10_000) {
          throw new Error(
            `sidecar of ${taskId} not healthy in time:\n${await logTail(join(dir, 'sidecar.log'))}`,
          );
        }
        await sleep(50);
      }
    } else {
      const config = parseFleetConfig(stripControlPlaneKeys(document), `fleet config of ${taskId}`);
      const allowlist = await this.#allowlistCidrs(config.allowlist.source);
      await writeGateway(gatewayDir, renderGateway(config, { layout, allowlistCidrs: allowlist }));
    }

    const haproxy = await startHaproxy({
      layout,
      ...(this.#options.haproxyBinary === undefined ? {} : { binary: this.#options.haproxyBinary }),
      readyTimeoutMs: Math.max(1000, deadline - Date.now()),
    });
    task.haproxy = haproxy;
    record.haproxyPid = haproxy.pid;
    await haproxy.waitReady();
    if (this.mode === 'render') {
      await cliCommand(layout.adminSocket, `set map ${layout.stateMap} ready 1`);
    }
    // Ready: the health check the NLB would use answers 200 (the sidecar applied valid state).
    for (let attempt = 0; ; attempt++) {
      this.#checkAbort();
      if ((await httpStatus(ports.health, '/healthz')) === 200) break;
      if (Date.now() > deadline || attempt > 10_000) {
        const sidecarLog = this.mode === 'sidecar' ? `\n${await logTail(join(dir, 'sidecar.log'))}` : '';
        throw new Error(`${taskId} not ready in time:\n${haproxy.stderr().slice(-2000)}${sidecarLog}`);
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

  async #allowlistCidrs(source: { file: string } | { secretId: string } | undefined): Promise<string[]> {
    if (source === undefined) return [];
    if ('file' in source) {
      const text = await readFile(source.file, 'utf8');
      return parseSecret(AllowlistSecret, source.file, text).cidrs;
    }
    const secret = await this.#options.store.get(source.secretId, { stage: Stage.Current });
    return parseSecret(AllowlistSecret, source.secretId, secret.value).cidrs;
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

/** The fleet config without the control-plane sections, for a renderer that does not know them yet. */
function stripControlPlaneKeys(document: Record<string, unknown>): Record<string, unknown> {
  const { certificates: _c, trust: _t, nudgeKey: _n, ...rest } = document;
  const routes = Array.isArray(rest.routes)
    ? rest.routes.filter((r) => (r as { mode?: unknown }).mode !== 'terminate')
    : rest.routes;
  return { ...rest, routes };
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

  /** The registry, or `undefined` when no local fleet is running there. */
  async registry(): Promise<FleetRegistry | undefined> {
    try {
      const registry = (await readJson(this.#path)) as FleetRegistry;
      return alive(registry.ownerPid) ? registry : undefined;
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
