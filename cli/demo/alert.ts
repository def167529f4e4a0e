/**
 * The demo's alert scenario: one task is held on the old serial and the alert an operator would
 * have on the sidecar's metrics fires, then clears. The task is asked (a signed nudge, as a
 * rotation does) to serve an `AWSPENDING` certificate from a CA the fleet does not trust; its
 * sidecar refuses it and keeps serving the old serial, and its `/metrics` says so:
 * `portcullis_certificate_in_sync{certificate="api"} 0`. The rule below is the stack's
 * `task-out-of-sync` alarm at demo scale (held longer than `forMs`, not minutes). Dropping
 * `AWSPENDING` and nudging the task back to `AWSCURRENT` — what a rotation's rollback does —
 * clears it. The other tasks were never asked and stay in sync.
 */
import { randomUUID, X509Certificate } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { createCertificateAuthority, generateKey, issueCertificate } from '../../lib/pki/index.ts';
import { type FleetTask, Stage } from '../../lib/ports.ts';
import { loadControlPlaneFleet } from '../../lib/workflows/fleet-config.ts';
import { labelValue } from '../../proxy/sidecar/metrics-registry.ts';
import type { DemoEnvironment } from './environment.ts';

/** An alert rule on one sample: `metric{labels} <condition>` held for `forMs`. */
export interface AlertRule {
  metric: string;
  labels: Readonly<Record<string, string>>;
  /** True when the value is a problem. */
  breaching: (value: number) => boolean;
  /** How long the condition must hold before the alert fires (Prometheus `for`, CloudWatch periods). */
  forMs: number;
  /** How the rule reads, for the report. */
  text: string;
}

export type AlertState = 'inactive' | 'pending' | 'firing';

/** Prometheus-style `for` evaluation over observations. Pure state, no clock of its own. */
export class AlertEvaluator {
  #since: number | undefined;
  #state: AlertState = 'inactive';
  readonly transitions: { at: number; state: AlertState }[] = [];

  readonly rule: AlertRule;

  constructor(rule: AlertRule) {
    this.rule = rule;
  }

  get state(): AlertState {
    return this.#state;
  }

  /** Feeds the value read at `at` (ms); a missing sample counts as not breaching. */
  observe(at: number, value: number | undefined): AlertState {
    const breaching = value !== undefined && this.rule.breaching(value);
    let next: AlertState;
    if (!breaching) {
      this.#since = undefined;
      next = 'inactive';
    } else {
      this.#since ??= at;
      next = at - this.#since >= this.rule.forMs ? 'firing' : 'pending';
    }
    if (next !== this.#state) this.transitions.push({ at, state: next });
    this.#state = next;
    return next;
  }
}

/** The value of `metric` with exactly `labels` in a text exposition, if present. Pure. */
export function sampleValue(
  exposition: string,
  metric: string,
  labels: Readonly<Record<string, string>>,
): number | undefined {
  const wanted = Object.entries(labels)
    .map(([k, v]) => `${k}="${labelValue(v)}"`)
    .join(',');
  const prefix = wanted === '' ? `${metric} ` : `${metric}{${wanted}} `;
  for (const line of exposition.split('\n')) {
    if (line.startsWith(prefix)) return Number(line.slice(prefix.length).trim().split(/\s+/)[0]);
  }
  return undefined;
}

export interface AlertScenarioReport {
  rule: string;
  task: string;
  /** The serial the task kept serving. */
  heldSerial: string | null;
  /** Why the task refused the version (the sidecar's check code). */
  refusal: string | null;
  fired: boolean;
  /** From the refused nudge to the alert firing. */
  firedAfterSeconds: number | null;
  cleared: boolean;
  /** From the rollback to the alert clearing. */
  clearedAfterSeconds: number | null;
  /** Every other task stayed in sync throughout. */
  otherTasksInSync: boolean;
}

function metricsUrl(task: FleetTask): string {
  const host = task.address.includes(':') ? `[${task.address}]` : task.address;
  return `http://${host}:${task.adminPort}/metrics`;
}

async function scrape(task: FleetTask): Promise<string | undefined> {
  try {
    const response = await fetch(metricsUrl(task), { signal: AbortSignal.timeout(2000) });
    return response.ok ? await response.text() : undefined;
  } catch {
    return undefined;
  }
}

/** Runs the scenario on the demo fleet's first task. */
export async function heldOnOldSerial(
  env: Pick<DemoEnvironment, 'fleet' | 'store' | 'ports'>,
  options: { certificate?: string; forMs?: number; timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<AlertScenarioReport> {
  const certificate = options.certificate ?? 'api';
  const rule: AlertRule = {
    metric: 'portcullis_certificate_in_sync',
    labels: { certificate },
    breaching: (v) => v === 0,
    forMs: options.forMs ?? 1500,
    text: `portcullis_certificate_in_sync{certificate="${certificate}"} == 0 for ${((options.forMs ?? 1500) / 1000).toFixed(1)}s`,
  };
  const timeoutMs = options.timeoutMs ?? 15_000;
  const tasks = await env.fleet.listTasks();
  const [held, ...others] = tasks;
  const report: AlertScenarioReport = {
    rule: rule.text,
    task: held?.taskId ?? '-',
    heldSerial: null,
    refusal: null,
    fired: false,
    firedAfterSeconds: null,
    cleared: false,
    clearedAfterSeconds: null,
    otherTasksInSync: true,
  };
  if (held === undefined) return report;
  const config = await loadControlPlaneFleet(env.store, env.ports.fleetConfigSecretId);
  const spec = config.certificates.find((c) => c.name === certificate);
  if (spec === undefined) return report;

  const evaluator = new AlertEvaluator(rule);
  const watchOthers = async () => {
    for (const task of others) {
      const value = sampleValue((await scrape(task)) ?? '', rule.metric, rule.labels);
      if (value !== 1) report.otherTasksInSync = false;
    }
  };
  /** Scrapes the held task until the alert is in `state` (or the time is up); seconds it took. */
  const until = async (state: AlertState, from: number): Promise<number | null> => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && options.signal?.aborted !== true) {
      const text = await scrape(held);
      evaluator.observe(
        Date.now(),
        text === undefined ? undefined : sampleValue(text, rule.metric, rule.labels),
      );
      await watchOthers();
      if (evaluator.state === state) return (Date.now() - from) / 1000;
      await sleep(200);
    }
    return null;
  };

  // A leaf for the route's names from a CA outside the fleet's trust bundle: valid, but refused.
  const rogue = await createCertificateAuthority({ commonName: 'Portcullis demo untrusted CA' });
  const key = await generateKey();
  const leaf = await issueCertificate(rogue, {
    publicKeyPem: key.publicKeyPem,
    commonName: spec.commonName,
    dns: spec.dns,
    usage: 'server',
  });
  const document = JSON.stringify({
    certificatePem: leaf.certificatePem,
    chainPem: '',
    privateKeyPem: key.privateKeyPem,
    serial: leaf.serial,
    notAfter: new X509Certificate(leaf.certificatePem).validToDate.toISOString(),
  });
  const { versionId } = await env.store.put(spec.secretId, document, {
    clientRequestToken: randomUUID(),
    stages: [Stage.Pending],
  });
  const client = env.ports.taskClient;
  report.heldSerial = (await client.status(held)).certificates[certificate]?.serial ?? null;
  const nudgedAt = Date.now();
  try {
    await client.nudge(held, { secretId: spec.secretId, versionId });
  } catch (error) {
    report.refusal = /\((\S+)\)/.exec(error instanceof Error ? error.message : '')?.[1] ?? 'refused';
  }
  try {
    report.firedAfterSeconds = await until('firing', nudgedAt);
    report.fired = report.firedAfterSeconds !== null;
  } finally {
    // The rollback: no AWSPENDING left, the task nudged back to AWSCURRENT.
    await env.store.moveStage(spec.secretId, Stage.Pending, undefined, { fromVersionId: versionId });
    const clearedFrom = Date.now();
    await client.nudge(held, { secretId: spec.secretId });
    report.clearedAfterSeconds = await until('inactive', clearedFrom);
    report.cleared = report.clearedAfterSeconds !== null;
  }
  return report;
}
