/**
 * The sidecar process: keeps a gateway task's HAProxy in step with the fleet's secrets.
 *
 * Start: read the fleet config, fetch `AWSCURRENT` of every referenced secret, validate, render
 * HAProxy's configuration and files into the shared directory (`/healthz` 200 from then on, so
 * ECS starts HAProxy), wait for HAProxy's admin socket, read back, set its ready flag. Anything
 * missing or invalid: not rendered, the error in status/log/metric, retried with backoff.
 * Then: apply on a signed nudge and on a jittered poll; watch HAProxy for restarts and
 * reconcile. The decisions are `state.ts` (pure); this file only runs their effects.
 *
 * A sidecar restart recovers from the store and what HAProxy serves: files identical to what
 * it would render are not rewritten, HAProxy is not reloaded, and the served serials are
 * compared before anything is re-applied, so traffic never sees a gap.
 */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { hostname, networkInterfaces } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FleetConfig } from '../../lib/config/index.ts';
import { NotFoundError } from '../../lib/errors.ts';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { coversHostnames } from '../../lib/pki/index.ts';
import { type SecretStore, Stage, type TaskStatus } from '../../lib/ports.ts';
import { renewalTime } from '../../lib/rotation/due.ts';
import type { ObjectStoreFor } from '../../lib/secrets/allowlist-storage.ts';
import { verifyNudge } from '../../lib/secrets/index.ts';
import {
  type GatewayLayout,
  gatewayLayout,
  READY_KEY,
  type RenderedGateway,
  renderGateway,
  writeFileAtomic,
} from '../haproxy/index.ts';
import { TERMINATE, terminatePaths, terminateRoutes, trustReferenced } from '../haproxy/render-terminate.ts';
import { command } from '../haproxy/runtime-protocol.ts';
import { defaultObjectStores, loadAllowlist } from './allowlist-source.ts';
import {
  type ApplyTarget,
  type ExpectedServing,
  installAllowlist,
  installCertificate,
  PUBLIC_FILE_MODE,
  reconcile,
  writeTrustFiles,
} from './apply.ts';
import { type SidecarConfig, taskFleetConfig } from './config.ts';
import { type EmfCursor, emfLines, tlsTotals as sumTls } from './emf.ts';
import { ApplyFailed, ContentRejected, NudgeUnauthorized, SidecarNotReady } from './errors.ts';
import { jsonLogger, type Logger } from './log.ts';
import { type LogSink, startLogSink } from './log-sink.ts';
import {
  type MetricsContributor,
  parseStickTable,
  ReloadSafeCounters,
  reloadSafeTls,
  renderMetrics,
  type TlsCounters,
  tlsCountersFrom,
} from './metrics.ts';
import { type RuntimePort, socketRuntime } from './runtime-port.ts';
import { type AdminServer, errorReply, type Reply, startAdminServer } from './server.ts';
import {
  initialState,
  type ObjectRef,
  type Origin,
  Phase,
  reduce,
  type SidecarEffect,
  type SidecarEvent,
  type SidecarState,
  type StoreView,
  toTaskStatus,
} from './state.ts';
import {
  type CheckedCertificate,
  type CheckedTrust,
  checkCertificateDocument,
  checkFleetDocument,
  checkNudgeKeyDocument,
  checkTrustDocument,
} from './validate.ts';

export interface SidecarDeps {
  /** The secret store; default: built from `config.store`. */
  store?: SecretStore;
  /** Where manifests' allowlist objects are read; default: beside the file store, or S3. */
  objects?: ObjectStoreFor;
  /** Where log lines go; default stdout. */
  write?: (line: string) => void;
  now?: () => Date;
  random?: () => number;
  /** Families added to every `/metrics` scrape after the sidecar's own (see `metrics.ts`). */
  metrics?: readonly MetricsContributor[];
  /** HAProxy's runtime API; default: the unix sockets of the gateway layout (`socketRuntime`). */
  runtime?: RuntimePort;
}

export interface RunningSidecar {
  /** Port of the admin API. */
  readonly port: number;
  /** `http://host:port` of the admin API. */
  readonly url: string;
  readonly layout: GatewayLayout;
  status(): TaskStatus & Record<string, unknown>;
  state(): SidecarState;
  /** Resolves once valid state is rendered (HAProxy may start). */
  whenRendered(timeoutMs?: number): Promise<void>;
  /** Resolves once HAProxy serves the applied state and its ready flag is set. */
  whenReady(timeoutMs?: number): Promise<void>;
  /** One poll round now (tests; the timer keeps running). */
  pollNow(): Promise<void>;
  close(): Promise<void>;
}

/** Material applied and kept in memory (the reconciliation needs it). Secret: never logged. */
interface Material {
  fleet?: FleetConfig;
  nudgeKey?: Buffer;
  trust?: CheckedTrust;
  certificates: Map<string, CheckedCertificate>;
  allowlist?: string[];
}

const FILE_PREFIX = 'file:';

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

function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 32);
}

function message(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

class Rejection extends Error {
  readonly code: string;
  constructor(code: string, reason: string) {
    super(reason);
    this.name = 'Rejection';
    this.code = code;
  }
}

async function defaultStore(config: SidecarConfig): Promise<SecretStore> {
  if (config.store.kind === 'file') return FileSecretStore.open(config.store.dir);
  // The adapter's shared client takes its region from the environment (ECS sets AWS_REGION);
  // an explicit region in the sidecar config wins. Only lib/aws/ talks to the SDK itself.
  if (config.store.region !== undefined) process.env.AWS_REGION = config.store.region;
  // Loaded here, not at the top: a sidecar on the file store (every local and demo task runs
  // one) never uses the SDK's ~100 modules (~5 MiB of RSS each).
  const { SecretsManagerStore } = await import('../../lib/aws/secrets-manager-store.ts');
  return new SecretsManagerStore();
}

/**
 * Starts the sidecar: admin API at once, then the start loop (render → wait for HAProxy → ready),
 * the poll backstop and the HAProxy watch.
 * @example
 * const sidecar = await startSidecar(parseSidecarConfig({ store: { kind: 'file', dir }, fleetConfig: { secretId: 'fleet' }, gatewayDir }));
 * await sidecar.whenRendered(); // start HAProxy now
 */
export async function startSidecar(config: SidecarConfig, deps: SidecarDeps = {}): Promise<RunningSidecar> {
  const store = deps.store ?? (await defaultStore(config));
  const objects = deps.objects ?? defaultObjectStores(config);
  const log: Logger = jsonLogger(deps.write, config.logLevel);
  const now = deps.now ?? (() => new Date());
  const random = deps.random ?? Math.random;
  const layout = gatewayLayout(config.gatewayDir);
  const { runtime, worker } = deps.runtime ?? socketRuntime(layout);
  // HAProxy's access log arrives here (its ring's one server) and goes to stdout: see log-sink.ts.
  const accessLog: LogSink | undefined = await startLogSink({
    path: layout.logSocket,
    ...(deps.write === undefined ? {} : { output: deps.write }),
  }).catch((error: unknown) => {
    log.error('access log sink unavailable: HAProxy keeps its lines until the ring is full', {
      error: message(error),
    });
    return undefined;
  });
  const fleetRef: ObjectRef =
    'secretId' in config.fleetConfig
      ? { key: 'fleet', kind: 'fleet', secretId: config.fleetConfig.secretId }
      : { key: 'fleet', kind: 'fleet', secretId: `${FILE_PREFIX}${config.fleetConfig.file}` };
  const ownAddresses = [
    ...(config.autoOwnAddresses ? interfaceAddresses() : []),
    ...config.ownAddresses,
    ...(config.bindAddress === undefined ? [] : [config.bindAddress]),
  ];

  // A restarted sidecar container finds the files it rendered before (only validated state is
  // ever written there) and HAProxy serving them: a store outage at that moment must not turn
  // into a failing health check and a replaced task. A new task's volume starts empty.
  const previouslyRendered = await stat(layout.config).then(
    () => true,
    () => false,
  );

  let state = initialState();
  const material: Material = { certificates: new Map() };
  /** Whether the rendered config references a CRL file. */
  let renderedCrl = false;
  const replay = new Map<string, number>();
  let closed = false;
  const timers = new Set<NodeJS.Timeout>();
  const waiters = new Set<() => void>();
  let haproxyWaitSince: number | undefined;
  let warnedHaproxyWait = false;
  /** Whether a HAProxy has answered this sidecar (it may then hold files older than the disk). */
  let haproxySeen = false;
  /**
   * Set when files only a reload brings in (config, trust bundle, CRL) changed while HAProxy was
   * not confirmed serving — a sidecar restart that found new versions, an apply while HAProxy's
   * socket did not answer: the runtime API cannot apply them and the reconciliation compares
   * certificates and ACLs only, so the next verification reloads first.
   */
  let reloadPending = false;
  /** A running HAProxy may have loaded earlier files: a restarted sidecar, or HAProxy seen. */
  const mayServeOldFiles = (): boolean => haproxySeen || previouslyRendered;

  const dispatch = (event: SidecarEvent): SidecarEffect[] => {
    const before = state.phase;
    const result = reduce(state, event);
    state = result.state;
    if (state.phase !== before) {
      log.info('phase', { from: before, to: state.phase });
      for (const wake of [...waiters]) wake();
    }
    return result.effects;
  };

  // One operation at a time: applies, polls, nudges, reconciliation and renders never interleave.
  let queue: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(work: () => Promise<T>): Promise<T> => {
    const run = queue.then(work, work);
    queue = run.catch(() => undefined);
    return run;
  };

  // ---- the store (secrets, or files standing in for one) ---------------------------------

  const describe = async (secretId: string): Promise<StoreView> => {
    if (secretId.startsWith(FILE_PREFIX)) {
      const version = digest(await readFile(secretId.slice(FILE_PREFIX.length), 'utf8'));
      return { current: version, versions: [{ versionId: version, stages: [Stage.Current] }] };
    }
    const description = await store.describe(secretId);
    return {
      current: description.versions.find((v) => v.stages.includes(Stage.Current))?.versionId,
      versions: description.versions.map((v) => ({ versionId: v.versionId, stages: v.stages })),
    };
  };

  const fetchVersion = async (secretId: string, versionId: string): Promise<string> => {
    if (secretId.startsWith(FILE_PREFIX)) {
      const text = await readFile(secretId.slice(FILE_PREFIX.length), 'utf8');
      if (digest(text) !== versionId)
        throw new NotFoundError(`${secretId} no longer holds version ${versionId}`);
      return text;
    }
    return (await store.get(secretId, { versionId })).value;
  };

  // ---- rendering ---------------------------------------------------------------------------

  /** Set while a fleet change stages new objects: HAProxy loads them with the reload that follows. */
  let filesOnly = false;
  const live = (): boolean => state.phase === Phase.Ready;
  const target = (): ApplyTarget => ({ layout, runtime: live() && !filesOnly ? runtime : undefined, worker });

  const render = (fleet: FleetConfig, allowlist: readonly string[], crl: boolean): RenderedGateway => {
    const rendered = renderGateway(taskFleetConfig(fleet, config.bindAddress), {
      layout,
      ownAddresses,
      allowlistCidrs: allowlist,
      terminate: { crl },
    });
    // The ready flag is the sidecar's to flip at run time; a re-render keeps what is on disk.
    const stateRel = layout.stateMap.slice(layout.root.length + 1);
    delete rendered.files[stateRel];
    return rendered;
  };

  /** Writes the files that differ from what is on disk; returns the relative paths written. */
  const writeChanged = async (rendered: RenderedGateway): Promise<string[]> => {
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
  };

  const expected = (): ExpectedServing => {
    const fleet = material.fleet;
    const loaded = fleet ? loadedCertificates(fleet) : new Set<string>();
    const terminate = fleet !== undefined && trustReferenced(fleet);
    return {
      certificates: [...material.certificates.entries()]
        .filter(([name]) => loaded.has(name))
        .map(([name, c]) => ({ name, pem: c.pem, serial: c.serial })),
      allowlist: material.allowlist ?? [],
      trust: material.trust,
      trustLoaded: { ca: terminate, crl: terminate && renderedCrl },
    };
  };

  // ---- applying one object -------------------------------------------------------------

  const checkCertificate = (name: string, text: string, fleet: FleetConfig): CheckedCertificate => {
    const trust = material.trust;
    if (trust === undefined)
      throw new Rejection('untrusted-chain', 'no trust bundle applied to verify the chain against');
    const spec = fleet.certificates.find((c) => c.name === name);
    const checked = checkCertificateDocument(text, {
      hostnames: spec?.usage === 'client' ? [] : hostnamesFor(fleet, name),
      trustPem: trust.caPem,
      usage: spec?.usage === 'client' ? 'client' : 'server',
      at: now(),
      skewSeconds: config.clockSkewSeconds,
    });
    if (checked.kind === 'invalid') throw new Rejection(checked.code, checked.reason);
    return checked.value;
  };

  /** Validates and installs one version; returns public facts for the state. */
  const install = async (ref: ObjectRef, versionId: string, text: string) => {
    const fleet = material.fleet;
    switch (ref.kind) {
      case 'fleet': {
        const checked = checkFleetDocument(text);
        if (checked.kind === 'invalid') throw new Rejection(checked.code, checked.reason);
        await installFleet(checked.value);
        return {};
      }
      case 'nudgeKey': {
        const checked = checkNudgeKeyDocument(text);
        if (checked.kind === 'invalid') throw new Rejection(checked.code, checked.reason);
        material.nudgeKey = checked.value;
        return {};
      }
      case 'trust': {
        // Only certificates the fleet config still declares: one whose route and entry were
        // removed stays in memory but is served by nobody, and must not hold back a CA rollover.
        const declared = new Set(fleet?.certificates.map((c) => c.name) ?? []);
        const serving = [...material.certificates.entries()]
          .filter(([name]) => declared.has(name))
          .map(([name, c]) => ({ name, chainPem: c.pem }));
        const checked = await checkTrustDocument(text, {
          at: now(),
          skewSeconds: config.clockSkewSeconds,
          serving,
        });
        if (checked.kind === 'invalid') throw new Rejection(checked.code, checked.reason);
        const crl = checked.value.crlPem !== undefined;
        if (fleet === undefined || !trustReferenced(fleet) || filesOnly || !live()) {
          const paths = terminatePaths(layout);
          const before = await Promise.all(
            [paths.trust, paths.crl].map((path) => readFile(path, 'utf8').catch(() => undefined)),
          );
          await writeTrustFiles(layout, checked.value);
          const trustChanged =
            before[0] !== checked.value.caPem ||
            (checked.value.crlPem !== undefined && before[1] !== checked.value.crlPem);
          if (trustChanged && fleet !== undefined && trustReferenced(fleet) && mayServeOldFiles())
            reloadPending = true;
          material.trust = checked.value;
          const crlNow = crl && fleet !== undefined && trustReferenced(fleet);
          if (crlNow !== renderedCrl && fleet !== undefined && !filesOnly && state.phase !== Phase.Starting) {
            renderedCrl = crlNow;
            await rerender(fleet);
          }
          renderedCrl = crlNow;
          return { caCount: checked.value.caCount, crl };
        }
        // HAProxy up to 3.2.0 mishandles `commit ssl ca-file` (see apply.ts): the bundle is written and
        // HAProxy reloads seamlessly; established connections finish on the previous worker.
        const previous = { trust: material.trust, crl: renderedCrl };
        await writeTrustFiles(layout, checked.value);
        material.trust = checked.value;
        renderedCrl = crl;
        try {
          await rerender(fleet, { reload: true });
        } catch (error) {
          material.trust = previous.trust;
          renderedCrl = previous.crl;
          if (previous.trust !== undefined) {
            await writeTrustFiles(layout, previous.trust);
          }
          await rerender(fleet, { reload: true }).catch(() => undefined);
          throw new ApplyFailed(ref.secretId, `trust bundle: ${message(error)}`, { cause: error });
        }
        return { caCount: checked.value.caCount, crl };
      }
      case 'certificate': {
        if (fleet === undefined || ref.name === undefined)
          throw new Rejection('config-invalid', 'no fleet config');
        const checked = checkCertificate(ref.name, text, fleet);
        await installCertificate(
          target(),
          ref.secretId,
          ref.name,
          checked.pem,
          checked.serial,
          loadedCertificates(fleet).has(ref.name),
        );
        material.certificates.set(ref.name, checked);
        const renewBeforeDays = fleet.certificates.find((c) => c.name === ref.name)?.renewBeforeDays;
        return {
          serial: checked.serial,
          notAfter: checked.notAfter,
          renewAt: renewalTime(checked.info, renewBeforeDays).toISOString(),
        };
      }
      case 'allowlist': {
        if (fleet === undefined) throw new Rejection('config-invalid', 'no fleet config');
        const checked = await loadAllowlist(text, fleet.allowlist, objects);
        if (checked.kind === 'invalid') throw new Rejection(checked.code, checked.reason);
        const previous = material.allowlist;
        const { cut } = await installAllowlist(target(), ref.secretId, checked.value.cidrs, previous, {
          cutRemovedSessions: fleet.allowlist.cutRemovedSessions,
        });
        material.allowlist = checked.value.cidrs;
        if (cut > 0)
          log.info('cut sessions of removed sources', { secretId: ref.secretId, versionId, sessions: cut });
        return { size: checked.value.cidrs.length };
      }
    }
  };

  /**
   * Runs one `apply` effect: fetch, validate, install, and report the outcome as an event.
   * Returns the error (already logged and recorded) when it did not apply.
   */
  const applyObject = async (
    key: string,
    versionId: string,
    origin: Origin,
    currentAtApply: string | undefined,
  ): Promise<Error | undefined> => {
    const ref = state.objects[key]?.ref;
    if (ref === undefined) return new NotFoundError(`no object ${key}`);
    const at = () => now().toISOString();
    let text: string;
    try {
      text = await fetchVersion(ref.secretId, versionId);
    } catch (error) {
      log.error('fetch failed', { object: key, secretId: ref.secretId, versionId, error: message(error) });
      dispatch({ type: 'failed', key, versionId, message: `fetch: ${message(error)}`, at: at() });
      return error instanceof Error ? error : new Error(String(error));
    }
    try {
      const facts = await install(ref, versionId, text);
      dispatch({ type: 'applied', key, versionId, origin, currentAtApply, facts, at: at() });
      log.info('applied', {
        object: key,
        kind: ref.kind,
        secretId: ref.secretId,
        versionId,
        origin,
        ...facts,
      });
      return undefined;
    } catch (error) {
      if (error instanceof Rejection) {
        dispatch({ type: 'rejected', key, versionId, code: error.code, message: error.message, at: at() });
        log.warn('rejected', {
          object: key,
          kind: ref.kind,
          secretId: ref.secretId,
          versionId,
          code: error.code,
          reason: error.message,
        });
        return new ContentRejected(ref.secretId, versionId, error.code, error.message);
      }
      dispatch({ type: 'failed', key, versionId, message: message(error), at: at() });
      log.error('apply failed', {
        object: key,
        kind: ref.kind,
        secretId: ref.secretId,
        versionId,
        error: message(error),
      });
      return error instanceof ApplyFailed
        ? error
        : new ApplyFailed(ref.secretId, message(error), { cause: error });
    }
  };

  const runEffects = async (effects: readonly SidecarEffect[]): Promise<Error[]> => {
    const errors: Error[] = [];
    for (const effect of effects) {
      if (effect.type === 'apply') {
        const error = await applyObject(effect.key, effect.versionId, effect.origin, effect.currentAtApply);
        if (error) errors.push(error);
      } else {
        await verifyHaproxy(effect.pid);
      }
    }
    return errors;
  };

  // ---- fleet config changes ------------------------------------------------------------

  /** Seamless reload through the master CLI; resolves once a new worker serves. */
  const reloadHaproxy = async (): Promise<void> => {
    const before = await runtime.showProc();
    await runtime.reload();
    const after = await runtime.waitForReload(before, { timeoutMs: 15_000 });
    reloadPending = false;
    log.info('haproxy reloaded', { workers: after.workers.map((w) => String(w.pid)) });
  };

  /** Writes what changed; reloads HAProxy seamlessly when something did (or when asked to). */
  const rerender = async (fleet: FleetConfig, options: { reload?: boolean } = {}): Promise<void> => {
    const written = await writeChanged(render(fleet, material.allowlist ?? [], renderedCrl));
    const changed = written.length > 0 || options.reload === true;
    if ((!changed && !reloadPending) || state.phase === Phase.Starting) return;
    if (written.length > 0) log.info('rendered', { files: written });
    if (!live()) {
      // A HAProxy that is not running reads the new files when it starts; one that is (its
      // socket did not answer) must reload once it is reachable again.
      if (changed && mayServeOldFiles()) reloadPending = true;
      return;
    }
    await reloadHaproxy();
    const info = await runtime.showInfo();
    await verifyHaproxy(info.pid);
  };

  /** A new fleet config: objects it adds are fetched and validated before anything changes. */
  const installFleet = async (next: FleetConfig): Promise<void> => {
    const previous = material.fleet;
    if (previous === undefined || state.phase === Phase.Starting) {
      material.fleet = next;
      dispatch({ type: 'configured', refs: objectRefs(next, fleetRef) });
      return;
    }
    // Certificates already in service must still cover the (possibly changed) route names. One
    // the new config reads from another secret is fetched and checked against them below instead.
    for (const [name, certificate] of material.certificates) {
      const spec = next.certificates.find((c) => c.name === name);
      if (spec === undefined) continue;
      if (state.objects[`certificate:${name}`]?.ref.secretId !== spec.secretId) continue;
      const hostnames = spec?.usage === 'client' ? [] : hostnamesFor(next, name);
      const coverage = coversHostnames(certificate.pem, hostnames);
      if (!coverage.covered) {
        throw new Rejection(
          'san-mismatch',
          `certificate ${name} does not cover ${coverage.missing.join(', ')}`,
        );
      }
    }
    const refs = objectRefs(next, fleetRef);
    // New objects, and objects the new config reads from another secret (what was applied came
    // from the old one): both are fetched and validated before the config is accepted.
    const added = refs.filter((ref) => {
      if (ref.kind === 'fleet') return false;
      const known = state.objects[ref.key];
      return known?.applied === undefined || known.ref.secretId !== ref.secretId;
    });
    material.fleet = next;
    dispatch({ type: 'configured', refs });
    const loaded = loadedCertificates(next);
    let installed = 0;
    try {
      for (const ref of added) {
        let view: StoreView;
        try {
          view = await describe(ref.secretId);
        } catch (error) {
          if (error instanceof Error && error.name === 'NotFoundError') {
            throw new Rejection('missing', `${ref.key}: ${ref.secretId} does not exist`);
          }
          throw error;
        }
        if (view.current === undefined) {
          if (ref.kind === 'certificate' && ref.name !== undefined && loaded.has(ref.name)) {
            throw new Rejection('missing', `${ref.key}: ${ref.secretId} has no AWSCURRENT version`);
          }
          continue;
        }
        const text = await fetchVersion(ref.secretId, view.current);
        // Files only: HAProxy loads them with the reload below.
        filesOnly = true;
        try {
          const facts = await install(ref, view.current, text);
          installed++;
          dispatch({
            type: 'applied',
            key: ref.key,
            versionId: view.current,
            origin: 'current',
            currentAtApply: view.current,
            facts,
            at: now().toISOString(),
          });
        } finally {
          filesOnly = false;
        }
      }
      // Objects installed as files only are loaded by a reload, even when the rendered files did
      // not change (a certificate moved to another secret keeps its path and its crt-list line).
      await rerender(next, { reload: installed > 0 });
    } catch (error) {
      // Back to the routes that were serving: files, HAProxy and the objects tracked.
      material.fleet = previous;
      dispatch({ type: 'configured', refs: objectRefs(previous, fleetRef) });
      await rerender(previous).catch((restoreError: unknown) =>
        log.error('restoring the previous fleet config failed', { error: message(restoreError) }),
      );
      throw error;
    }
  };

  // ---- start ---------------------------------------------------------------------------

  let startAttempt = 0;
  let starting: Promise<void> | undefined;

  /** One start attempt: every object not applied yet is fetched at `AWSCURRENT`; all must be valid. */
  const tryStart = async (): Promise<void> => {
    if (state.phase !== Phase.Starting || closed) return;
    const fail = (code: string, text: string) => {
      dispatch({ type: 'startFailed', code, message: text, at: now().toISOString() });
      log.error('start blocked', { code, reason: text, attempt: startAttempt });
    };
    if (state.objects.fleet === undefined) dispatch({ type: 'configured', refs: [fleetRef] });
    const applyCurrent = async (key: string): Promise<boolean> => {
      const object = state.objects[key];
      if (object === undefined || object.applied !== undefined) return true;
      let view: StoreView;
      try {
        view = await describe(object.ref.secretId);
      } catch (error) {
        const missing = error instanceof Error && error.name === 'NotFoundError';
        fail(missing ? 'missing' : 'store-unavailable', `${object.ref.secretId}: ${message(error)}`);
        return false;
      }
      if (view.current === undefined) {
        fail('missing', `${object.ref.secretId} has no AWSCURRENT version`);
        return false;
      }
      const error = await applyObject(key, view.current, 'current', view.current);
      if (error !== undefined) {
        fail(error instanceof ContentRejected ? error.code : 'apply-failed', `${key}: ${error.message}`);
        return false;
      }
      return true;
    };
    if (!(await applyCurrent('fleet'))) return;
    // Order matters: the trust bundle before the certificates that must chain to it.
    const keys = Object.keys(state.objects).filter((k) => k !== 'fleet');
    const ordered = [
      ...keys.filter((k) => k === 'nudgeKey'),
      ...keys.filter((k) => k === 'trust'),
      ...keys.filter((k) => k.startsWith('certificate:')),
      ...keys.filter((k) => k === 'allowlist'),
    ];
    let ok = true;
    for (const key of ordered) ok = (await applyCurrent(key)) && ok;
    if (!ok) return;
    const fleet = material.fleet;
    if (fleet === undefined) return;
    for (const name of loadedCertificates(fleet)) {
      if (!material.certificates.has(name)) {
        fail('missing', `certificate ${name} is used by a route but was not applied`);
        return;
      }
    }
    renderedCrl = material.trust?.crlPem !== undefined;
    try {
      const written = await writeChanged(render(fleet, material.allowlist ?? [], renderedCrl));
      log.info('rendered', { files: written, unchanged: written.length === 0 });
      if (written.length > 0 && mayServeOldFiles()) reloadPending = true;
    } catch (error) {
      fail('render-failed', message(error));
      return;
    }
    startAttempt = 0;
    haproxyWaitSince = Date.now();
    dispatch({ type: 'rendered', at: now().toISOString() });
  };

  const scheduleStart = (delayMs: number) => {
    if (closed) return;
    const timer = setTimeout(() => {
      timers.delete(timer);
      starting = exclusive(tryStart)
        .catch((error: unknown) => log.error('start attempt failed', { error: message(error) }))
        .then(() => {
          if (state.phase === Phase.Starting) {
            startAttempt++;
            scheduleStart(
              Math.min(config.retry.maxMs, config.retry.initialMs * 2 ** Math.min(startAttempt - 1, 16)),
            );
          }
        });
    }, delayMs);
    timers.add(timer);
  };

  // ---- HAProxy watch and reconciliation ----------------------------------------------------

  const verifyHaproxy = async (seenPid: number): Promise<void> => {
    try {
      let pid = seenPid;
      if (reloadPending) {
        log.info('haproxy holds files older than the applied state: reloading', { pid });
        await reloadHaproxy();
        pid = (await runtime.showInfo()).pid;
      }
      const reapplied = await reconcile(runtime, layout, expected());
      dispatch({ type: 'haproxyReady', pid });
      log.info('haproxy serving applied state', { pid, reapplied });
    } catch (error) {
      log.warn('haproxy reconciliation failed', { pid: seenPid, error: message(error) });
    }
  };

  const watch = async (): Promise<void> => {
    if (state.phase === Phase.Starting) return;
    let pid: number;
    try {
      pid = (await runtime.showInfo()).pid;
    } catch (error) {
      if (state.phase === Phase.Ready) log.warn('haproxy unreachable', { error: message(error) });
      dispatch({ type: 'haproxyDown' });
      if (
        haproxyWaitSince !== undefined &&
        !warnedHaproxyWait &&
        Date.now() - haproxyWaitSince > config.haproxyStartWaitMs
      ) {
        warnedHaproxyWait = true;
        log.warn('haproxy has not started', { waitedMs: Date.now() - haproxyWaitSince });
      }
      return;
    }
    haproxyWaitSince = undefined;
    haproxySeen = true;
    await runEffects(dispatch({ type: 'haproxyUp', pid }));
  };

  const scheduleWatch = () => {
    if (closed) return;
    const timer = setTimeout(() => {
      timers.delete(timer);
      exclusive(watch)
        .catch((error: unknown) => log.error('watch failed', { error: message(error) }))
        .finally(scheduleWatch);
    }, config.watchIntervalMs);
    timers.add(timer);
  };

  // ---- poll ------------------------------------------------------------------------------

  const pollOnce = async (): Promise<void> => {
    if (state.phase === Phase.Starting) return;
    for (const key of Object.keys(state.objects)) {
      const object = state.objects[key];
      if (object === undefined) continue;
      try {
        const view = await describe(object.ref.secretId);
        await runEffects(dispatch({ type: 'polled', key, view }));
      } catch (error) {
        log.warn('poll failed', { object: key, secretId: object.ref.secretId, error: message(error) });
      }
    }
  };

  const schedulePoll = () => {
    if (closed) return;
    const delay = config.pollIntervalMs + Math.floor(random() * config.pollJitterMs);
    const timer = setTimeout(() => {
      timers.delete(timer);
      exclusive(pollOnce)
        .catch((error: unknown) => log.error('poll round failed', { error: message(error) }))
        .finally(schedulePoll);
    }, delay);
    timers.add(timer);
  };

  // ---- nudge -------------------------------------------------------------------------------

  const nudge = async (
    headers: { timestamp: string | undefined; signature: string | undefined },
    body: string,
  ): Promise<Reply> => {
    const key = material.nudgeKey;
    if (key === undefined) {
      const error = new SidecarNotReady(
        'no nudge key loaded (fleet config nudgeKey, or the start is blocked)',
      );
      return errorReply(503, error.name, error.message);
    }
    const check = verifyNudge(key, headers, body, now().getTime(), replay);
    if (check.kind === 'invalid') {
      log.warn('nudge refused', { reason: check.reason });
      const error = new NudgeUnauthorized(`nudge refused: ${check.reason}`, { reason: check.reason });
      return errorReply(401, error.name, error.message);
    }
    let request: { secretId?: unknown; versionId?: unknown };
    try {
      request = JSON.parse(body) as typeof request;
    } catch {
      return errorReply(400, 'ValidationError', 'the nudge body is not JSON');
    }
    if (
      typeof request.secretId !== 'string' ||
      (request.versionId !== undefined && typeof request.versionId !== 'string')
    ) {
      return errorReply(
        400,
        'ValidationError',
        'the nudge body needs secretId (and optionally versionId) as strings',
      );
    }
    const secretId = request.secretId;
    const versionId = request.versionId as string | undefined;
    log.info('nudge', { secretId, ...(versionId ? { versionId } : {}) });
    return exclusive(async () => {
      const keys = Object.values(state.objects)
        .filter((o) => o.ref.secretId === secretId)
        .map((o) => o.ref.key);
      if (keys.length === 0) {
        return errorReply(404, 'NotFoundError', `secret ${secretId} is not one this sidecar serves`);
      }
      let view: StoreView;
      try {
        view = await describe(secretId);
      } catch (error) {
        const name = error instanceof Error ? error.name : 'Error';
        return errorReply(name === 'NotFoundError' ? 404 : 503, name, message(error));
      }
      if (versionId !== undefined && !view.versions.some((v) => v.versionId === versionId)) {
        return errorReply(404, 'NotFoundError', `secret ${secretId} has no labelled version ${versionId}`);
      }
      const errors: Error[] = [];
      for (const key of keys)
        errors.push(
          ...(await runEffects(dispatch({ type: 'nudged', key, ...(versionId ? { versionId } : {}), view }))),
        );
      if (state.phase === Phase.Starting) await tryStart();
      const error = errors[0];
      if (error instanceof ContentRejected) return errorReply(422, error.name, error.message);
      if (error instanceof NotFoundError) return errorReply(404, error.name, error.message);
      if (error !== undefined) return errorReply(503, error.name, error.message);
      return { statusCode: 200, body: toTaskStatus(state) };
    });
  };

  // ---- metrics -----------------------------------------------------------------------------

  /** TLS counters summed over HAProxy reloads (each worker's stick table starts at 0). */
  const tlsTotals = new ReloadSafeCounters();
  /** Families other parts of the sidecar add to every scrape. */
  const contributors: MetricsContributor[] = [
    ...(accessLog === undefined ? [] : [accessLog.contributor]),
    ...(deps.metrics ?? []),
  ];
  const readTls = async (): Promise<TlsCounters | undefined> => {
    let tls: TlsCounters | undefined;
    if (
      state.phase === Phase.Ready &&
      material.fleet !== undefined &&
      terminateRoutes(material.fleet).length > 0
    ) {
      try {
        const pid = (await runtime.showInfo()).pid;
        tls = tlsCountersFrom(parseStickTable(await runtime.execute(command('show table', TERMINATE.table))));
        // Routes without traffic have no table entry yet: show them at 0.
        for (const { route } of terminateRoutes(material.fleet)) {
          tls[route.serverName] ??= {
            handshake: 0,
            noCertificate: 0,
            failVerifyNoCert: 0,
            failVerifyError: 0,
            failVerifySan: 0,
          };
        }
        tls = reloadSafeTls(tlsTotals, pid, tls);
      } catch (error) {
        log.warn('tls counters unavailable', { error: message(error) });
      }
    }
    return tls;
  };
  /** HAProxy's DroppedLogs (lines its ring had no room for), summed by the sink across workers. */
  const readDroppedLogs = async (): Promise<void> => {
    if (accessLog === undefined || state.phase === Phase.Starting) return;
    const info = await runtime.showInfo().catch(() => undefined);
    if (info !== undefined) accessLog.observeDropped(info.pid, Number(info.fields['DroppedLogs'] ?? 0));
  };
  const metrics = async (): Promise<string> => {
    await readDroppedLogs();
    return renderMetrics(state, { tls: await readTls(), contributors });
  };

  let emfCursor: EmfCursor | undefined;
  const scheduleEmf = () => {
    const emf = config.emf;
    if (closed || emf === undefined) return;
    const timer = setTimeout(() => {
      timers.delete(timer);
      readTls()
        .then((tls) => {
          // The host name (the task's on Fargate) finds the task in Logs Insights; never a dimension.
          const settings = { ...emf, properties: { Host: hostname() } };
          const out = emfLines(state, settings, now(), sumTls(tls), emfCursor);
          emfCursor = out.cursor;
          for (const text of out.lines) (deps.write ?? ((l: string) => process.stdout.write(l)))(`${text}\n`);
        })
        .catch((error: unknown) => log.warn('emf emission failed', { error: message(error) }))
        .finally(scheduleEmf);
    }, emf.intervalMs);
    timers.add(timer);
  };

  // ---- lifecycle ---------------------------------------------------------------------------

  const server: AdminServer = await startAdminServer(
    config.admin.host,
    config.admin.port,
    {
      healthy: () => state.phase !== Phase.Starting || previouslyRendered,
      status: () => toTaskStatus(state),
      metrics,
      nudge,
    },
    {
      maxBodyBytes: config.maxNudgeBytes,
      onError: (error) => log.error('admin api error', { error: message(error) }),
    },
  );
  log.info('sidecar started', {
    admin: `${config.admin.host}:${server.port}`,
    gatewayDir: layout.root,
    previouslyRendered,
  });

  scheduleStart(0);
  scheduleWatch();
  schedulePoll();
  scheduleEmf();

  const waitFor = (predicate: () => boolean, what: string, timeoutMs: number): Promise<void> =>
    new Promise((resolve, reject) => {
      if (predicate()) {
        resolve();
        return;
      }
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(
          new Error(
            `sidecar not ${what} within ${timeoutMs} ms: ${JSON.stringify(state.startError ?? state.lastApply ?? {})}`,
          ),
        );
      }, timeoutMs);
      const check = () => {
        if (!predicate()) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve();
      };
      waiters.add(check);
    });

  const host = config.admin.host.includes(':') ? `[${config.admin.host}]` : config.admin.host;
  return {
    port: server.port,
    url: `http://${host}:${server.port}`,
    layout,
    status: () => toTaskStatus(state),
    state: () => state,
    whenRendered: (timeoutMs = 10_000) =>
      waitFor(() => state.phase !== Phase.Starting, 'rendered', timeoutMs),
    whenReady: (timeoutMs = 10_000) => waitFor(() => state.phase === Phase.Ready, 'ready', timeoutMs),
    pollNow: () => exclusive(pollOnce),
    async close() {
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      await server.close();
      await starting?.catch(() => undefined);
      await queue.catch(() => undefined);
      await accessLog?.close();
      // Let a timer callback that had already fired settle before the caller removes files.
      await sleep(0);
      log.info('sidecar stopped');
    },
  };
}
