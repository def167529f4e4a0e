/**
 * Where a gateway task keeps its files. The sidecar renders them into one shared directory
 * (an ECS volume mounted in both containers) before HAProxy starts; the runtime API then
 * updates the in-memory copies, and every apply writes the file first so that a reload or a
 * restart of HAProxy comes back with what was last applied.
 */
import { join } from 'node:path';

export interface GatewayLayout {
  root: string;
  config: string;
  /** Worker stats socket (level admin, `expose-fd listeners` for seamless reloads). */
  adminSocket: string;
  /** Master CLI socket (`-S`): `reload`, `show proc`. */
  masterSocket: string;
  pidFile: string;
  /**
   * Where HAProxy sends its access log: a unix stream socket the sidecar listens on and forwards
   * to its stdout (see proxy/sidecar/log-sink.ts). HAProxy's own stdout carries no log line.
   */
  logSocket: string;
  /** Refusal reason per HAProxy connection error code (`fc_err`), for connection-level log lines. */
  connectionErrorsMap: string;
  /** Source CIDRs allowed to connect (one per line, IPv4 and IPv6), updated with `prepare/commit acl`. */
  allowlist: string;
  /** Peers (the NLB's subnets) whose PROXY protocol header is trusted. */
  trustedProxies: string;
  /** Peers (the control plane's subnets) allowed on the verification listener (`fe_verify`). */
  verifyPeers: string;
  /** Runtime flags, `ready 1` once the sidecar applied valid state (`set map`). */
  stateMap: string;
  /** Addresses a route may never forward to (metadata, loopback, the task's own addresses). */
  deniedDestinations: string;
  mapsDir: string;
  aclDir: string;
  /** Certificates, keys (0600), CA bundles and CRLs for terminate routes. */
  certsDir: string;
}

export function gatewayLayout(root: string): GatewayLayout {
  const run = join(root, 'run');
  const acl = join(root, 'acl');
  const maps = join(root, 'maps');
  return {
    root,
    config: join(root, 'haproxy.cfg'),
    adminSocket: join(run, 'admin.sock'),
    masterSocket: join(run, 'master.sock'),
    pidFile: join(run, 'haproxy.pid'),
    logSocket: join(run, 'log.sock'),
    connectionErrorsMap: join(maps, 'connection-errors.map'),
    allowlist: join(acl, 'allowlist.acl'),
    trustedProxies: join(acl, 'trusted-proxies.acl'),
    verifyPeers: join(acl, 'verify-peers.acl'),
    deniedDestinations: join(acl, 'denied-destinations.acl'),
    stateMap: join(maps, 'state.map'),
    mapsDir: maps,
    aclDir: acl,
    certsDir: join(root, 'certs'),
  };
}
