/**
 * One gateway task on this machine, the way ECS runs it: the sidecar first, HAProxy once the
 * sidecar's `/healthz` says the files are rendered (`dependsOn: HEALTHY`), both on loopback.
 * Used by the local fleet and the integration tests; either half can be restarted alone.
 */
import type { SecretStore } from '../../lib/ports.ts';
import { type RunningHaproxy, startHaproxy } from '../haproxy/index.ts';
import { parseSidecarConfig, type SidecarConfigInput } from './config.ts';
import { type RunningSidecar, startSidecar } from './main.ts';

export interface LocalTaskOptions {
  sidecar: SidecarConfigInput;
  store?: SecretStore;
  /** Sidecar log lines (default stdout). */
  write?: (line: string) => void;
  /** HAProxy binary (default `HAPROXY_BIN`, else `haproxy` from PATH). */
  haproxyBinary?: string;
  /** Bound for each wait (rendered, HAProxy up, ready). Default 15 000 ms. */
  timeoutMs?: number;
}

export interface LocalTask {
  sidecar: RunningSidecar;
  haproxy: RunningHaproxy;
  /** Stops HAProxy (SIGKILL when `kill`) and starts it again from the files on disk. */
  restartHaproxy(options?: { kill?: boolean }): Promise<void>;
  /** Stops the sidecar and starts a new one on the same files and admin port. */
  restartSidecar(): Promise<void>;
  close(): Promise<void>;
}

export async function startLocalTask(options: LocalTaskOptions): Promise<LocalTask> {
  const timeoutMs = options.timeoutMs ?? 15_000;
  const deps = {
    ...(options.store ? { store: options.store } : {}),
    ...(options.write ? { write: options.write } : {}),
  };
  let config = parseSidecarConfig(options.sidecar);
  let sidecar = await startSidecar(config, deps);
  // A restarted sidecar keeps its admin port (the control plane knows the task by it).
  config = { ...config, admin: { ...config.admin, port: sidecar.port } };
  let haproxy: RunningHaproxy | undefined;
  const startProxy = async () => {
    const running = await startHaproxy({
      layout: sidecar.layout,
      readyTimeoutMs: timeoutMs,
      ...(options.haproxyBinary ? { binary: options.haproxyBinary } : {}),
    });
    haproxy = running;
    await running.waitReady();
  };
  try {
    await sidecar.whenRendered(timeoutMs);
    await startProxy();
    await sidecar.whenReady(timeoutMs);
  } catch (error) {
    await haproxy?.stop();
    await sidecar.close();
    throw error;
  }
  const task: LocalTask = {
    get sidecar() {
      return sidecar;
    },
    get haproxy() {
      return haproxy as RunningHaproxy;
    },
    async restartHaproxy(restart = {}) {
      if (haproxy !== undefined) {
        if (restart.kill) {
          process.kill(haproxy.pid, 'SIGKILL');
          await haproxy.exited;
        } else {
          await haproxy.stop();
        }
      }
      await startProxy();
    },
    async restartSidecar() {
      await sidecar.close();
      sidecar = await startSidecar(config, deps);
    },
    async close() {
      await sidecar.close();
      await haproxy?.stop();
    },
  };
  return task;
}
