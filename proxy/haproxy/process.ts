/**
 * Starting HAProxy the way the container does: master-worker in the foreground, master CLI on a
 * socket. The access log goes to the sidecar's log socket (render.ts `LOG_RING`), not to stdout. Tests and the local demo fleet use `startHaproxy`; the image's
 * CMD is `haproxyArgs(containerLayout())` (a unit test keeps the Dockerfile in step).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { haproxyBinary } from './capabilities.ts';
import { type GatewayLayout, gatewayLayout } from './layout.ts';

/** Where the shared volume is mounted in both containers of a gateway task. */
export const CONTAINER_ROOT = '/var/run/portcullis';

/** The layout inside the container image. */
export function containerLayout(): GatewayLayout {
  return gatewayLayout(CONTAINER_ROOT);
}

/**
 * Exactly the arguments HAProxy runs with: master-worker (`-W`), foreground (`-db`), master CLI
 * on a 0600 socket (`-S`) for `reload`, and the rendered configuration.
 */
export function haproxyArgs(layout: GatewayLayout): string[] {
  return ['-W', '-db', '-S', `${layout.masterSocket},mode,600`, '-f', layout.config];
}

export interface StartOptions {
  layout: GatewayLayout;
  /** HAProxy binary; default `HAPROXY_BIN`, else `haproxy` from PATH (`/usr/sbin/haproxy` on Debian). */
  binary?: string;
  /** Max time for `waitReady`. Default 10 s. */
  readyTimeoutMs?: number;
}

export interface RunningHaproxy {
  /** Master process id. */
  readonly pid: number;
  /** stdout lines (none from a rendered gateway: its log goes to the ring); only lines printed after subscribing are seen. */
  onLine(listener: (line: string) => void): () => void;
  /** Every stdout line so far (bounded to the last 10 000). */
  readonly lines: readonly string[];
  /** stderr so far (startup alerts). */
  readonly stderr: () => string;
  /** Resolves once the master CLI reports a running worker and the admin socket answers. */
  waitReady(): Promise<void>;
  /** SIGTERM then SIGKILL after a grace period; resolves when the master has exited. */
  stop(graceMs?: number): Promise<void>;
  readonly exited: Promise<number | null>;
}

/** Sends one command to a HAProxy CLI socket and returns the full answer. */
export function cliCommand(socketPath: string, command: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from ${socketPath} to "${command.split(' ')[0]}" within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('connect', () => socket.end(`${command}\n`));
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
  });
}

/** Starts HAProxy with `haproxyArgs(layout)`; the config must already be rendered into the layout. */
export async function startHaproxy(options: StartOptions): Promise<RunningHaproxy> {
  const { layout } = options;
  await mkdir(`${layout.root}/run`, { recursive: true, mode: 0o700 });
  const child: ChildProcess = spawn(options.binary ?? haproxyBinary(), haproxyArgs(layout), {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const listeners = new Set<(line: string) => void>();
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => {
    stderr = (stderr + text).slice(-64_000);
  });
  if (child.stdout) {
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      if (lines.length > 10_000) lines.shift();
      for (const listener of listeners) listener(line);
    });
  }
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code));
  });
  let running = true;
  void exited.then(() => {
    running = false;
  });
  if (child.pid === undefined) {
    throw new Error(`could not start ${options.binary ?? 'haproxy'}`);
  }
  const pid = child.pid;

  const waitReady = async (): Promise<void> => {
    const deadline = Date.now() + (options.readyTimeoutMs ?? 10_000);
    for (let attempt = 0; attempt < 1000; attempt++) {
      if (!running) throw new Error(`haproxy exited during startup:\n${stderr}`);
      try {
        const procs = await cliCommand(layout.masterSocket, 'show proc', 1000);
        if (/\bworker\b/.test(procs)) {
          await cliCommand(layout.adminSocket, 'show info', 1000);
          return;
        }
      } catch {
        // sockets not there yet
      }
      if (Date.now() > deadline)
        throw new Error(`haproxy not ready after ${options.readyTimeoutMs ?? 10_000} ms:\n${stderr}`);
      await sleep(50);
    }
  };

  const stop = async (graceMs = 3000): Promise<void> => {
    if (!running) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };

  return {
    pid,
    onLine(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    lines,
    stderr: () => stderr,
    waitReady,
    stop,
    exited,
  };
}
