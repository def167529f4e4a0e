/** Loopback port picking: other processes use this machine too, so ports are never hard-coded. */
import { createServer } from 'node:net';
import { BenchmarkError } from './errors.ts';

/** Binds `host:port` (0 = any) and returns the port it got, after closing; `undefined` if taken. */
function probe(host: string, port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(undefined));
    server.listen(port, host, () => {
      const address = server.address();
      server.close(() => resolve(address !== null && typeof address === 'object' ? address.port : undefined));
    });
  });
}

/** A port that was free a moment ago on `host`. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const port = await probe(host, 0);
  if (port === undefined) throw new BenchmarkError(`cannot bind ${host}`);
  return port;
}

/**
 * One port number free on every host at once: NGINX's `proxy_pass …:$server_port` forwards to
 * the port it listens on, so the proxy and the upstream share a number on different addresses.
 */
export async function sharedFreePort(hosts: readonly string[], attempts = 20): Promise<number> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    const port = await freePort(hosts[0]);
    const others = await Promise.all(hosts.slice(1).map((host) => probe(host, port)));
    if (others.every((p) => p === port)) return port;
  }
  throw new BenchmarkError(`no port free on all of ${hosts.join(', ')} after ${attempts} attempts`);
}
