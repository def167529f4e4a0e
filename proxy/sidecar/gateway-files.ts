/**
 * The gateway's files as the sidecar renders them from the applied material, and what HAProxy
 * must serve once it loaded them (compared by the reconciliation, `apply.ts`).
 */
import { readFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import type { FleetConfig } from '../../lib/config/index.ts';
import { READY_KEY, type RenderedGateway, renderGateway, writeFileAtomic } from '../haproxy/index.ts';
import { terminateRoutes, trustReferenced } from '../haproxy/render-terminate.ts';
import { type ExpectedServing, PUBLIC_FILE_MODE } from './apply.ts';
import { taskFleetConfig } from './config.ts';
import type { SidecarContext } from './context.ts';
import type { ObjectRef } from './state.ts';
import { FILE_PREFIX } from './store-view.ts';

/** The addresses of this task's non-loopback interfaces. */
export function interfaceAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const info of list ?? []) {
      if (!info.internal) out.push(info.address.replace(/%.*$/, ''));
    }
  }
  return out;
}

/** Names a certificate must cover: the server names of the terminate routes serving it (`*.x` → `portcullis-verify.x`). */
export function hostnamesFor(config: FleetConfig, name: string): string[] {
  return terminateRoutes(config)
    .filter(({ route }) => route.certificate === name)
    .map(({ route }) =>
      route.serverName.startsWith('*.') ? `portcullis-verify${route.serverName.slice(1)}` : route.serverName,
    );
}

/** Certificates HAProxy loads for this config (a `set ssl cert` on any other would be refused). */
export function loadedCertificates(config: FleetConfig): Set<string> {
  const names = new Set<string>();
  for (const { route } of terminateRoutes(config)) {
    names.add(route.certificate);
    if (route.upstream.kind === 'originate') names.add(route.upstream.clientCertificate);
  }
  return names;
}

/** Every object a fleet config asks the sidecar to keep in step, with the fleet config itself first. */
export function objectRefs(config: FleetConfig, fleetSource: ObjectRef): ObjectRef[] {
  const refs: ObjectRef[] = [fleetSource];
  if (config.nudgeKey) refs.push({ key: 'nudgeKey', kind: 'nudgeKey', secretId: config.nudgeKey.secretId });
  if (config.trust) refs.push({ key: 'trust', kind: 'trust', secretId: config.trust.secretId });
  for (const spec of config.certificates) {
    refs.push({
      key: `certificate:${spec.name}`,
      kind: 'certificate',
      secretId: spec.secretId,
      name: spec.name,
    });
  }
  const source = config.allowlist.source;
  if (source !== undefined) {
    const secretId = 'secretId' in source ? source.secretId : `${FILE_PREFIX}${source.file}`;
    refs.push({ key: 'allowlist', kind: 'allowlist', secretId });
  }
  return refs;
}

/** The gateway's files for `fleet` and the applied allowlist, without the ready flag's map. */
export function render(ctx: SidecarContext, fleet: FleetConfig, crl: boolean): RenderedGateway {
  const { layout } = ctx;
  const rendered = renderGateway(taskFleetConfig(fleet, ctx.config.bindAddress), {
    layout,
    ownAddresses: ctx.ownAddresses,
    allowlistCidrs: ctx.material.allowlist ?? [],
    terminate: { crl },
  });
  // The ready flag is the sidecar's to flip at run time; a re-render keeps what is on disk.
  const stateRel = layout.stateMap.slice(layout.root.length + 1);
  delete rendered.files[stateRel];
  return rendered;
}

/** Writes the files that differ from what is on disk; returns the relative paths written. */
export async function writeChanged(ctx: SidecarContext, rendered: RenderedGateway): Promise<string[]> {
  const { layout } = ctx;
  const written: string[] = [];
  for (const [relative, file] of Object.entries(rendered.files).sort(([a], [b]) => a.localeCompare(b))) {
    const path = `${layout.root}/${relative}`;
    const existing = await readFile(path, 'utf8').catch(() => undefined);
    if (existing === file.content) continue;
    await writeFileAtomic(path, file.content, file.mode);
    written.push(relative);
  }
  const existingState = await readFile(layout.stateMap, 'utf8').catch(() => undefined);
  if (existingState === undefined)
    await writeFileAtomic(layout.stateMap, `${READY_KEY} 0\n`, PUBLIC_FILE_MODE);
  return written;
}

/** What HAProxy must serve for the applied material. */
export function expectedServing(ctx: SidecarContext): ExpectedServing {
  const { material } = ctx;
  const fleet = material.fleet;
  const loaded = fleet ? loadedCertificates(fleet) : new Set<string>();
  const terminate = fleet !== undefined && trustReferenced(fleet);
  return {
    certificates: [...material.certificates.entries()]
      .filter(([name]) => loaded.has(name))
      .map(([name, c]) => ({ name, pem: c.pem, serial: c.serial })),
    allowlist: material.allowlist ?? [],
    trust: material.trust,
    trustLoaded: { ca: terminate, crl: terminate && ctx.state.gateway.renderedCrl },
  };
}
