/**
 * A new fleet config, checked with the objects it references as one snapshot before anything
 * changes: the certificates in service must still cover its route names; the objects it adds
 * (or reads from another secret) must exist (`snapshot.ts`) and validate against the new config.
 * Only then are they installed, as files only, and HAProxy reloads once to load them. A failure
 * while installing puts back the config that was serving.
 */
import type { FleetConfig } from '../../lib/config/index.ts';
import { coversHostnames } from '../../lib/pki/index.ts';
import { appliedBasis, type Basis, type CheckedObject, checkObject, Rejection } from './checks.ts';
import { message, type SidecarContext } from './context.ts';
import { hostnamesFor, loadedCertificates, objectRefs } from './gateway-files.ts';
import { rerender } from './haproxy-sync.ts';
import { installChecked } from './install.ts';
import { checkSnapshot, type SnapshotEntry } from './snapshot.ts';
import { type ObjectRef, Phase } from './state.ts';
import { checkFleetDocument } from './validate.ts';

/** Certificates already in service (and read from the same secret) must cover the new route names. */
function checkCoverage(ctx: SidecarContext, next: FleetConfig): void {
  for (const [name, certificate] of ctx.material.certificates) {
    const spec = next.certificates.find((c) => c.name === name);
    if (spec === undefined) continue;
    // One the new config reads from another secret is fetched and checked with the snapshot.
    if (ctx.state.objects[`certificate:${name}`]?.ref.secretId !== spec.secretId) continue;
    const hostnames = spec.usage === 'client' ? [] : hostnamesFor(next, name);
    const coverage = coversHostnames(certificate.pem, hostnames);
    if (!coverage.covered)
      throw new Rejection(
        'san-mismatch',
        `certificate ${name} does not cover ${coverage.missing.join(', ')}`,
      );
  }
}

/** Objects of `refs` not applied yet, or applied from another secret than the one `refs` names. */
function addedRefs(ctx: SidecarContext, refs: readonly ObjectRef[]): ObjectRef[] {
  return refs.filter((ref) => {
    if (ref.kind === 'fleet') return false;
    const known = ctx.state.objects[ref.key];
    return known?.applied === undefined || known.ref.secretId !== ref.secretId;
  });
}

/** Validates a fleet config document and installs it (see the module comment). */
export async function installFleet(ctx: SidecarContext, text: string): Promise<void> {
  const checked = checkFleetDocument(text);
  if (checked.kind === 'invalid') throw new Rejection(checked.code, checked.reason);
  const next = checked.value;
  const { material } = ctx;
  const previous = material.fleet;
  if (previous === undefined || ctx.state.phase === Phase.Starting) {
    material.fleet = next;
    ctx.dispatch({ type: 'configured', refs: objectRefs(next, ctx.fleetRef) });
    return;
  }
  checkCoverage(ctx, next);
  const refs = objectRefs(next, ctx.fleetRef);
  const added = addedRefs(ctx, refs);
  const entries: SnapshotEntry[] = [];
  for (const ref of added) {
    entries.push(
      await ctx.store.describe(ref.secretId).then(
        (view) => ({ ref, view }),
        (error: unknown) => ({ ref, error }),
      ),
    );
  }
  const snapshot = checkSnapshot(entries, loadedCertificates(next));
  if (snapshot.kind === 'inconsistent') throw new Rejection(snapshot.code, snapshot.reason);
  if (snapshot.kind === 'unavailable') throw snapshot.error;
  // Every added object fetched and validated against the new config (and a trust bundle it
  // adds, which the certificates after it must chain to) before the first one is installed.
  const staged: { ref: ObjectRef; versionId: string; object: CheckedObject }[] = [];
  let basis: Basis = { ...appliedBasis(material), fleet: next };
  for (const { ref, versionId } of snapshot.current) {
    const text = await ctx.store.fetchVersion(ref.secretId, versionId);
    const object = await checkObject(ctx, basis, ref, text);
    if (object.kind === 'trust') basis = { ...basis, trust: object.value };
    staged.push({ ref, versionId, object });
  }
  material.fleet = next;
  ctx.dispatch({ type: 'configured', refs });
  let installed = 0;
  try {
    for (const { ref, versionId, object } of staged) {
      // Files only: HAProxy loads them with the reload below.
      ctx.dispatch({ type: 'staging', filesOnly: true });
      try {
        const facts = await installChecked(ctx, ref, versionId, object);
        installed++;
        ctx.dispatch({
          type: 'applied',
          key: ref.key,
          versionId,
          origin: 'current',
          currentAtApply: versionId,
          facts,
          at: ctx.now().toISOString(),
        });
      } finally {
        ctx.dispatch({ type: 'staging', filesOnly: false });
      }
    }
    // Objects installed as files only are loaded by a reload, even when the rendered files did
    // not change (a certificate moved to another secret keeps its path and its crt-list line).
    await rerender(ctx, next, { reload: installed > 0 });
  } catch (error) {
    // Back to the routes that were serving: files, HAProxy and the objects tracked.
    material.fleet = previous;
    ctx.dispatch({ type: 'configured', refs: objectRefs(previous, ctx.fleetRef) });
    await rerender(ctx, previous).catch((restoreError: unknown) =>
      ctx.log.error('restoring the previous fleet config failed', { error: message(restoreError) }),
    );
    throw error;
  }
}
