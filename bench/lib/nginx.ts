/**
 * NGINX for the benchmark, in two roles: the TLS upstream every path ends at (HTTP server,
 * `return 200`, a large file for bulk), and the comparison SNI proxy configured like the
 * reference guidance (`stream` + `ssl_preread` + `proxy_pass $ssl_preread_server_name:$server_port`).
 * Config text is rendered by pure functions; `startNginx` runs one instance in a temp prefix.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BenchmarkError } from './errors.ts';

/** Debian's `libnginx-mod-stream`. */
export const NGINX_STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

export interface UpstreamNginxOptions {
  host: string;
  port: number;
  certPath: string;
  keyPath: string;
  /** Served at `/bulk`. */
  bulkFile: string;
  workers: number;
  pidFile: string;
}

/**
 * The upstream: TLS 1.3 with an ECDSA P-256 certificate (the cheapest server handshake), no
 * session cache and no tickets (every handshake is a full one), no keep-alive (one request per
 * connection), no access log. `/` answers a few bytes; `/bulk` streams `bulkFile`.
 */
export function renderUpstreamNginx(options: UpstreamNginxOptions): string {
  return [
    `worker_processes ${options.workers};`,
    'user root;',
    `pid ${options.pidFile};`,
    'events { worker_connections 4096; multi_accept on; }',
    'http {',
    '  access_log off;',
    '  server {',
    `    listen ${options.host}:${options.port} ssl backlog=4096;`,
    `    ssl_certificate ${options.certPath};`,
    `    ssl_certificate_key ${options.keyPath};`,
    '    ssl_protocols TLSv1.3;',
    '    ssl_session_cache off;',
    '    ssl_session_tickets off;',
    '    keepalive_timeout 0;',
    '    location = / { default_type text/plain; return 200 "ok\\n"; }',
    `    location = /bulk { default_type application/octet-stream; alias ${options.bulkFile}; }`,
    '  }',
    '}',
    '',
  ].join('\n');
}

export interface SniProxyNginxOptions {
  host: string;
  /** Also the upstream port: `proxy_pass …:$server_port` forwards to the listening port. */
  port: number;
  /** `ip:port` of the DNS responder. */
  resolver: string;
  /** How long a DNS answer is reused (`valid=`), seconds; the gateway's `hold valid` counterpart. */
  resolverValidSeconds: number;
  /** `allow` lines in this order, then `deny all`. */
  allowlist: readonly string[];
  workers: number;
  pidFile: string;
  modulePath?: string;
}

/** The reference guidance's SNI proxy, with an allowlist of `allow` lines. */
export function renderSniProxyNginx(options: SniProxyNginxOptions): string {
  return [
    `load_module ${options.modulePath ?? NGINX_STREAM_MODULE};`,
    `worker_processes ${options.workers};`,
    'user root;',
    `pid ${options.pidFile};`,
    'events { worker_connections 4096; multi_accept on; }',
    'stream {',
    `  resolver ${options.resolver} valid=${options.resolverValidSeconds}s ipv6=off;`,
    '  server {',
    `    listen ${options.host}:${options.port} backlog=4096;`,
    '    ssl_preread on;',
    ...options.allowlist.map((cidr) => `    allow ${cidr};`),
    '    deny all;',
    '    proxy_pass $ssl_preread_server_name:$server_port;',
    '  }',
    '}',
    '',
  ].join('\n');
}

export interface RunningNginx {
  /** Master process; the workers are its children. */
  readonly pid: number;
  stop(): Promise<void>;
}

/** Resolves once `host:port` accepts a TCP connection, or throws after `timeoutMs`. */
export async function waitForListener(
  host: string,
  port: number,
  timeoutMs: number,
  alive: () => boolean,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; attempt < 10_000; attempt++) {
    if (!alive()) throw new BenchmarkError(`process for ${host}:${port} exited before listening`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host, port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline)
      throw new BenchmarkError(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Writes `config` into `prefix` and runs NGINX in the foreground there; waits for `listen`. */
export async function startNginx(options: {
  prefix: string;
  name: string;
  config: string;
  listen: { host: string; port: number };
  binary?: string;
  readyTimeoutMs?: number;
}): Promise<RunningNginx> {
  const configPath = join(options.prefix, `${options.name}.conf`);
  await writeFile(configPath, options.config);
  const errorLog = join(options.prefix, `${options.name}-error.log`);
  const child: ChildProcess = spawn(
    options.binary ?? 'nginx',
    ['-p', options.prefix, '-c', configPath, '-e', errorLog, '-g', 'daemon off;'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => {
    stderr = (stderr + text).slice(-8000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let alive = true;
  void exited.then(() => {
    alive = false;
  });
  const stop = async () => {
    if (!alive) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await waitForListener(
      options.listen.host,
      options.listen.port,
      options.readyTimeoutMs ?? 20_000,
      () => alive,
    );
  } catch (error) {
    await stop();
    throw new BenchmarkError(`nginx ${options.name} did not start: ${stderr}`, { cause: error });
  }
  return { pid: child.pid!, stop };
}
