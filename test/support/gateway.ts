/**
 * A real HAProxy gateway on loopback for integration tests: renders a fleet config into a temp
 * directory (ports picked free at setup), starts the sidecar's log sink (proxy/sidecar/log-sink.ts)
 * on the layout's log socket, starts HAProxy with the image's arguments and collects its JSON
 * access log from the sink. Every harness is closed in afterAll, which stops HAProxy and removes
 * the dir, and fails when any line the gateway wrote (sink or HAProxy's stdout) is not JSON.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type FleetConfig, type FleetConfigInput, parseFleetConfig } from '../../lib/config/index.ts';
import {
  cliCommand,
  type GatewayLayout,
  gatewayLayout,
  type RunningHaproxy,
  renderGateway,
  startHaproxy,
  writeGateway,
} from '../../proxy/haproxy/index.ts';
import { type LogSink, startLogSink } from '../../proxy/sidecar/log-sink.ts';
import { freePort } from './net.ts';

// Gateway integration tests take their ports from this module; the one implementation is in net.ts.
export { freePort };

export interface GatewayPorts {
  tls: number;
  http: number;
  health: number;
  metrics: number;
}

/** A parsed access-log line. */
export type AccessLog = Record<string, string | number>;

export interface GatewayHarness {
  dir: string;
  layout: GatewayLayout;
  ports: GatewayPorts;
  config: FleetConfig;
  haproxy: RunningHaproxy;
  /** The log sink HAProxy's ring forwards to (what the sidecar writes to stdout). */
  sink: LogSink;
  /** Every access-log line forwarded so far, as written (bounded to the last 50 000). */
  lines(): readonly string[];
  /** Access-log lines seen so far, parsed (non-JSON lines are skipped). */
  logs(): AccessLog[];
  /** Waits until a log line (from index `since` on, default 0) satisfies `predicate`, within `timeoutMs` (default 5000). */
  waitForLog(
    predicate: (line: AccessLog) => boolean,
    options?: { since?: number; timeoutMs?: number },
  ): Promise<AccessLog>;
  /** One command on the worker's admin socket (stats socket). */
  admin(command: string): Promise<string>;
  /** One command on the master CLI. */
  master(command: string): Promise<string>;
  /** Re-renders the files with a new config (same ports and layout) without touching HAProxy. */
  rerender(input: Omit<FleetConfigInput, 'listeners'>, allowlist?: readonly string[]): Promise<FleetConfig>;
  close(): Promise<void>;
}

export interface GatewayOptions {
  /** Fleet config without listeners; the harness binds 127.0.0.1 on free ports. */
  config: Omit<FleetConfigInput, 'listeners'>;
  allowlist?: readonly string[];
  ownAddresses?: readonly string[];
}

function parseLog(line: string): AccessLog | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as AccessLog;
  } catch {
    return undefined;
  }
}

/** Renders, writes and starts a gateway; throws (after cleaning up) if HAProxy does not come up. */
export async function startGateway(options: GatewayOptions): Promise<GatewayHarness> {
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-gw-'));
  const layout = gatewayLayout(dir);
  const ports: GatewayPorts = {
    tls: await freePort(),
    http: await freePort(),
    health: await freePort(),
    metrics: await freePort(),
  };
  const ownAddresses = options.ownAddresses ?? ['127.0.0.1'];
  const render = async (input: Omit<FleetConfigInput, 'listeners'>, allowlist: readonly string[]) => {
    const config = parseFleetConfig({ ...input, listeners: { bind: ['127.0.0.1'], ...ports } });
    await writeGateway(dir, renderGateway(config, { layout, ownAddresses, allowlistCidrs: allowlist }));
    return config;
  };
  let haproxy: RunningHaproxy | undefined;
  let sink: LogSink | undefined;
  const lines: string[] = [];
  let parsed: AccessLog[] = [];
  let parsedUpTo = 0;
  try {
    const config = await render(options.config, options.allowlist ?? []);
    sink = await startLogSink({
      path: layout.logSocket,
      output: (line) => {
        lines.push(line.replace(/\n$/, ''));
        if (lines.length > 50_000) {
          lines.splice(0, 10_000);
          parsed = [];
          parsedUpTo = 0;
        }
      },
    });
    const logSink = sink;
    haproxy = await startHaproxy({ layout });
    await haproxy.waitReady();
    const running = haproxy;
    const harness: GatewayHarness = {
      dir,
      layout,
      ports,
      config,
      haproxy: running,
      sink: logSink,
      lines: () => lines,
      logs: () => {
        for (; parsedUpTo < lines.length; parsedUpTo++) {
          const log = parseLog(lines[parsedUpTo]!);
          if (log !== undefined) parsed.push(log);
        }
        return parsed;
      },
      async waitForLog(predicate, { since = 0, timeoutMs = 5000 } = {}) {
        const deadline = Date.now() + timeoutMs;
        while (Date.now() < deadline) {
          const found = harness.logs().slice(since).find(predicate);
          if (found !== undefined) return found;
          await sleep(25);
        }
        throw new Error(
          `no matching access log within ${timeoutMs} ms; saw:\n${lines.slice(-20).join('\n')}`,
        );
      },
      admin: (command) => cliCommand(layout.adminSocket, command),
      master: (command) => cliCommand(layout.masterSocket, command),
      async rerender(input, allowlist = options.allowlist ?? []) {
        harness.config = await render(input, allowlist);
        return harness.config;
      },
      async close() {
        await running.stop();
        await logSink.close();
        await rm(dir, { recursive: true, force: true });
        // The sink wraps what is not JSON (`component: haproxy`); HAProxy itself must never need
        // it, apart from its announcements of a full ring (`dropped_lines`).
        const wrapped = (line: string) => {
          const log = parseLog(line);
          return log === undefined || (log['component'] === 'haproxy' && log['dropped_lines'] === undefined);
        };
        const notJson = [
          ...running.lines.filter((line) => parseLog(line) === undefined),
          ...lines.filter(wrapped),
        ];
        if (notJson.length > 0) {
          throw new Error(
            `gateway wrote ${notJson.length} line(s) that are not JSON:\n${notJson.slice(0, 5).join('\n')}`,
          );
        }
      },
    };
    return harness;
  } catch (error) {
    await haproxy?.stop();
    await sink?.close();
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
