/**
 * The sidecar configuration's `bindAddress`: the task's own address, bound by every listener in
 * place of the fleet config's `listeners.bind` (local tasks share one fleet config, each on its
 * own loopback address; an ECS task could bind its ENI address only).
 */
import { describe, expect, it } from 'vitest';
import { type FleetConfigInput, parseFleetConfig } from '../../lib/config/index.ts';
import { FRONTEND, gatewayLayout, renderGateway } from '../../proxy/haproxy/index.ts';
import { parseSidecarConfig, taskFleetConfig } from '../../proxy/sidecar/config.ts';

const base = {
  store: { kind: 'file', dir: '/store' },
  fleetConfig: { secretId: 'portcullis/edge/fleet-config' },
  gatewayDir: '/gw',
} as const;

const fleet = parseFleetConfig({
  fleet: 'edge',
  listeners: {
    bind: ['0.0.0.0', '::'],
    tls: 18443,
    http: 18080,
    health: 18081,
    metrics: 19101,
    verify: 18444,
  },
  verify: { trustedPeers: ['10.0.100.0/24'] },
  certificates: [
    { name: 'api', secretId: 'c/api', commonName: 'api.edge.test', dns: ['api.edge.test'], usage: 'server' },
  ],
  trust: { secretId: 'trust' },
  routes: [
    {
      mode: 'terminate',
      serverName: 'api.edge.test',
      certificate: 'api',
      clientAuth: 'strict',
      upstream: { kind: 'local', port: 9000 },
    },
    { serverName: 'pass.edge.test', upstream: { port: 443 }, allowedDestinations: ['10.1.0.0/16'] },
  ],
} as FleetConfigInput);

function bindLines(config: typeof fleet): string[] {
  const { files } = renderGateway(config, { layout: gatewayLayout('/gw') });
  return (
    files['haproxy.cfg']!.content.split('\n')
      .map((line) => line.trim())
      // The terminate frontend's internal unix socket is no network listener.
      .filter((line) => line.startsWith('bind ') && !line.startsWith('bind unix@'))
  );
}

describe('parseSidecarConfig: bindAddress', () => {
  it('is absent unless given', () => {
    expect(parseSidecarConfig(base).bindAddress).toBeUndefined();
  });

  it('takes an IPv4 or IPv6 address', () => {
    for (const address of ['127.0.1.7', '10.0.3.25', 'fd00:ec2::7', '::1']) {
      expect(parseSidecarConfig({ ...base, bindAddress: address }).bindAddress, address).toBe(address);
    }
  });

  it('refuses a network, a name or an empty string', () => {
    for (const bad of ['127.0.1.0/24', 'gateway.local', '', '127.0.1', '[::1]']) {
      expect(() => parseSidecarConfig({ ...base, bindAddress: bad }), bad).toThrow(
        /bindAddress: must be an IPv4 or IPv6 address/,
      );
    }
  });
});

describe('taskFleetConfig', () => {
  it('leaves the fleet config as it is without a bind address', () => {
    expect(taskFleetConfig(fleet, undefined)).toBe(fleet);
  });

  it('replaces listeners.bind only: ports, routes and the rest stay the fleet’s', () => {
    const task = taskFleetConfig(fleet, '127.0.1.3');
    expect(task.listeners).toEqual({ ...fleet.listeners, bind: ['127.0.1.3'] });
    expect({ ...task, listeners: fleet.listeners }).toEqual(fleet);
    expect(fleet.listeners.bind).toEqual(['0.0.0.0', '::']);
  });

  it('makes every listener, the verification listener included, bind that address only', () => {
    const shared = bindLines(fleet);
    const own = bindLines(taskFleetConfig(fleet, '127.0.1.3'));
    // tls, http, health, metrics and verify: one bind each instead of one per fleet address.
    expect(own).toHaveLength(5);
    expect(shared).toHaveLength(10);
    for (const line of own) expect(line).toMatch(/^bind 127\.0\.1\.3:\d+( |$)/);
    expect(new Set(own.map((line) => /:(\d+)/.exec(line)?.[1]))).toEqual(
      new Set(['18443', '18444', '18080', '18081', '19101']),
    );
    const { files } = renderGateway(taskFleetConfig(fleet, 'fd00:ec2::7'), { layout: gatewayLayout('/gw') });
    expect(files['haproxy.cfg']!.content).toContain(
      `frontend ${FRONTEND.verify}\n  mode tcp\n  bind [fd00:ec2::7]:18444 v6only`,
    );
  });
});
