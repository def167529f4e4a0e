/**
 * A fleet of many tasks and certificates for scale tests and the rotation benchmark: the store
 * and the CA are the real local ones (FileSecretStore, LocalAuthority), the tasks are plain
 * records in memory that serve what they were nudged to (a served serial is read from the
 * store once per version), so 1 000 tasks × 100 certificates take seconds, not processes.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SecretsManagerStore } from '../../lib/aws/secrets-manager-store.ts';
import { TaskUnreachable } from '../../lib/errors.ts';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { LocalAuthority } from '../../lib/local/local-authority.ts';
import {
  type CertificateAuthority,
  type Fleet,
  type FleetTask,
  type IssuedCertificate,
  type IssueRequest,
  type NudgeRequest,
  type RevocationReason,
  type RolloutState,
  type SecretStore,
  Stage,
  type TaskClient,
  type TaskStatus,
} from '../../lib/ports.ts';
import type { ControlPlanePorts } from '../../lib/workflows/ports.ts';
import { mockAwsClient } from './aws-mock.ts';
import { FakeSecretsManager } from './fake-secrets-manager.ts';
import { RecordingNotifier } from './fakes.ts';

/** The simulated fleet's allowlist secret; each task reports the version it serves. */
export const ALLOWLIST_SECRET = 'sim/allowlist';

/** What one simulated task does wrong, for one certificate secret (or every one with `*`). */
export interface SimulatedFault {
  taskId: string;
  secretId: string | '*';
  /** Never answers: a hot update cannot reach it (a roll replaces it). */
  unreachable?: boolean;
  /** Answers but keeps serving what it served (VerifyTask sees the old serial). */
  ignoreNudges?: boolean;
}

export class SimulatedFleet implements Fleet, TaskClient {
  tasks: FleetTask[] = [];
  readonly rolls: string[] = [];
  faults: SimulatedFault[] = [];
  /** taskId → secretId → served version id. */
  readonly served = new Map<string, Map<string, string>>();
  readonly #serials = new Map<string, string>();
  readonly #store: SecretStore;
  readonly #byServerName: Map<string, { name: string; secretId: string }>;
  readonly #certificates: { name: string; secretId: string }[];
  #generation = 0;

  constructor(store: SecretStore, certificates: { name: string; secretId: string; dns: string }[]) {
    this.#store = store;
    this.#certificates = certificates;
    this.#byServerName = new Map(certificates.map((c) => [c.dns, c]));
  }

  start(count: number): void {
    this.#generation += 1;
    this.tasks = Array.from({ length: count }, (_, i) => {
      const taskId = `g${this.#generation}-task-${String(i + 1).padStart(4, '0')}`;
      return {
        taskId,
        address: '127.0.0.1',
        adminPort: 9000,
        tlsAddress: '127.0.0.1',
        tlsPort: 8443,
        lastStatus: 'RUNNING',
      };
    });
    this.served.clear();
  }

  async listTasks(): Promise<FleetTask[]> {
    return this.tasks.map((t) => ({ ...t }));
  }

  async roll(): Promise<{ deploymentId: string }> {
    const deploymentId = `deployment-${this.rolls.length + 1}`;
    this.rolls.push(deploymentId);
    return { deploymentId };
  }

  /** Completed at once: the replaced tasks boot from AWSCURRENT (they serve no recorded version). */
  async rolloutState(): Promise<RolloutState> {
    return 'COMPLETED';
  }

  async nudge(task: FleetTask, request: NudgeRequest): Promise<TaskStatus> {
    const fault = this.#fault(task.taskId, request.secretId);
    if (fault?.unreachable) throw new TaskUnreachable(`task ${task.taskId} does not answer`);
    if (!fault?.ignoreNudges) {
      const versionId =
        request.versionId ?? (await this.#store.get(request.secretId, { stage: Stage.Current })).versionId;
      const served = this.served.get(task.taskId) ?? new Map<string, string>();
      this.served.set(task.taskId, served);
      served.set(request.secretId, versionId);
    }
    return this.status(task);
  }

  async status(task: FleetTask): Promise<TaskStatus> {
    const certificates: TaskStatus['certificates'] = {};
    for (const c of this.#certificates) {
      const versionId = this.served.get(task.taskId)?.get(c.secretId);
      if (versionId !== undefined) {
        certificates[c.name] = {
          versionId,
          serial: await this.#serialOf(c.secretId, versionId),
          notAfter: '',
        };
      }
    }
    const allowlist = this.served.get(task.taskId)?.get(ALLOWLIST_SECRET);
    return {
      ready: true,
      certificates,
      ...(allowlist === undefined ? {} : { allowlist: { versionId: allowlist, size: 0 } }),
    };
  }

  async servedCertificate(
    task: FleetTask,
    serverName: string,
  ): Promise<{ serial: string; fingerprint256: string; notAfter: string }> {
    const certificate = this.#byServerName.get(serverName.replace(/^portcullis-verify\./, '*.'));
    const fault = certificate && this.#fault(task.taskId, certificate.secretId);
    if (certificate === undefined || fault?.unreachable)
      throw new TaskUnreachable(`task ${task.taskId}: no answer for ${serverName}`);
    const versionId = this.served.get(task.taskId)?.get(certificate.secretId);
    // A task that serves nothing for the name answers with its default certificate: a mismatch.
    if (versionId === undefined) return { serial: 'none', fingerprint256: 'AA:BB', notAfter: '' };
    return {
      serial: await this.#serialOf(certificate.secretId, versionId),
      fingerprint256: 'AA:BB',
      notAfter: '',
    };
  }

  #fault(taskId: string, secretId: string): SimulatedFault | undefined {
    return this.faults.find((f) => f.taskId === taskId && (f.secretId === '*' || f.secretId === secretId));
  }

  async #serialOf(secretId: string, versionId: string): Promise<string> {
    let serial = this.#serials.get(versionId);
    if (serial === undefined) {
      const value = (await this.#store.get(secretId, { versionId })).value;
      serial = (JSON.parse(value) as { serial?: string }).serial ?? 'none';
      this.#serials.set(versionId, serial);
    }
    return serial;
  }
}

/**
 * The local CA with its writes taken one at a time in this process: a hundred concurrent
 * issues would otherwise spend their time backing off from each other's directory lock.
 */
export class SerialAuthority implements CertificateAuthority {
  readonly #ca: LocalAuthority;
  #queue: Promise<unknown> = Promise.resolve();
  constructor(ca: LocalAuthority) {
    this.#ca = ca;
  }
  #serial<T>(call: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(call, call);
    this.#queue = next.catch(() => undefined);
    return next;
  }
  issue(request: IssueRequest): Promise<{ certificateId: string }> {
    return this.#serial(() => this.#ca.issue(request));
  }
  get(certificateId: string): Promise<IssuedCertificate> {
    return this.#ca.get(certificateId);
  }
  revoke(certificateId: string, serial: string, reason: RevocationReason): Promise<void> {
    return this.#serial(() => this.#ca.revoke(certificateId, serial, reason));
  }
  caCertificates(): Promise<string> {
    return this.#ca.caCertificates();
  }
}

export interface SimulatedFixture {
  ports: ControlPlanePorts;
  store: SecretStore;
  ca: LocalAuthority;
  fleet: SimulatedFleet;
  notifier: RecordingNotifier;
  certificates: { name: string; secretId: string; dns: string }[];
}

/** `certificates` server certificates (`c000` …, `c000.sim.internal`) and `tasks` tasks, in `dir`. */
export async function createSimulatedFixture(
  dir: string,
  options: {
    tasks: number;
    certificates: number;
    /**
     * `memory` (default): SecretsManagerStore over the in-memory Secrets Manager (the store
     * contract suite runs on both), so thousands of reads cost no disk; `file`: FileSecretStore.
     * The in-memory service is installed on the SDK client class: the fixture created last owns
     * it, so use one memory-backed fixture at a time.
     */
    store?: 'memory' | 'file';
  },
): Promise<SimulatedFixture> {
  let store: SecretStore;
  if (options.store === 'file') {
    store = await FileSecretStore.open(join(dir, 'store'));
  } else {
    new FakeSecretsManager().install(mockAwsClient(SecretsManagerClient));
    store = new SecretsManagerStore({ client: new SecretsManagerClient({ region: 'eu-west-1' }) });
  }
  const ca = await LocalAuthority.open(join(dir, 'ca'));
  const certificates = Array.from({ length: options.certificates }, (_, i) => {
    const name = `c${String(i).padStart(3, '0')}`;
    return { name, secretId: `sim/cert/${name}`, dns: `${name}.sim.internal` };
  });
  const fleetConfig = {
    fleet: 'sim',
    certificates: certificates.map((c) => ({
      name: c.name,
      secretId: c.secretId,
      commonName: c.dns,
      dns: [c.dns],
      usage: 'server',
    })),
    trust: { secretId: 'sim/trust' },
    nudgeKey: { secretId: 'sim/nudge-key' },
    allowlist: { source: { secretId: ALLOWLIST_SECRET }, allowAll0: false, maxEntries: 100 },
  };
  const create = (id: string, value: unknown) =>
    store.create(id, JSON.stringify(value), { clientRequestToken: randomUUID() });
  await create('sim/fleet-config', fleetConfig);
  await create('sim/trust', { caBundlePem: await ca.trustAnchorPem() });
  await create(ALLOWLIST_SECRET, { cidrs: ['10.0.0.0/8'], reason: 'initial' });
  const fleet = new SimulatedFleet(store, certificates);
  fleet.start(options.tasks);
  const notifier = new RecordingNotifier();
  const ports: ControlPlanePorts = {
    fleetName: 'sim',
    fleetConfigSecretId: 'sim/fleet-config',
    store,
    authority: new SerialAuthority(ca),
    fleet,
    taskClient: fleet,
    notifier,
  };
  return { ports, store, ca, fleet, notifier, certificates };
}
