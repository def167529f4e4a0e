import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import {
  type CurrentState,
  desiredSecrets,
  formatReport,
  formatTable,
  taskRow,
} from '../../cli/commands/status.ts';
import type { FleetTask, TaskStatus } from '../../lib/ports.ts';
import { staleSecrets, taskInSync } from '../../lib/rotation/converge.ts';

const plain = (_: number, text: string) => text;
const NOW = new Date('2026-01-01T00:00:00.000Z');
const task: FleetTask = {
  taskId: 'task-1',
  address: '127.0.0.1',
  adminPort: 9901,
  tlsAddress: '127.0.0.1',
  tlsPort: 8443,
  lastStatus: 'RUNNING',
};
const served: TaskStatus = {
  ready: true,
  certificates: {
    api: {
      versionId: 'v-api-2',
      serial: 'abc123',
      notAfter: '2026-01-31T12:00:00.000Z',
      renewAt: '2026-01-21T00:00:00.000Z',
    },
  },
  allowlist: { versionId: 'allow-7', size: 2 },
  trust: { versionId: 'trust-1' },
  fleetConfig: { versionId: 'fleet-3' },
  lastApply: { at: '2026-01-01T00:00:00.000Z', ok: true },
};
const current: Required<CurrentState> = {
  certificates: { api: 'abc123' },
  certificateVersions: { api: 'v-api-2' },
  certificateRotatingTo: {},
  allowlistVersionId: 'allow-7',
  trustVersionId: 'trust-1',
  fleetConfigVersionId: 'fleet-3',
  missing: [],
};

describe('status rows', () => {
  it('are in sync when every object is at the store’s AWSCURRENT, with days to expiry and renewal time', () => {
    const row = taskRow(task, served, current, NOW);
    expect(row).toMatchObject({ inSync: true, outOfSync: [], fleetConfig: { versionId: 'fleet-3' } });
    expect(row.certificates.api).toMatchObject({
      daysToExpiry: 30.5,
      renewAt: '2026-01-21T00:00:00.000Z',
      inSync: true,
    });
  });

  it.each([
    ['certificate api', { certificateVersions: { api: 'v-api-3' } }],
    ['allowlist', { allowlistVersionId: 'allow-8' }],
    ['trust', { trustVersionId: 'trust-2' }],
    ['fleet config', { fleetConfigVersionId: 'fleet-4' }],
  ] as const)('name %s when only it is behind the store', (name, change) => {
    const row = taskRow(task, served, { ...current, ...change }, NOW);
    expect(row).toMatchObject({ inSync: false, outOfSync: [name] });
    expect(formatTable([row], plain).split('\n')[1]).toMatch(new RegExp(`no \\(${name}\\)$`));
  });

  it('count a task on a live rotation’s AWSPENDING in sync, and one on neither version behind', () => {
    const rotating = {
      ...current,
      certificateVersions: { api: 'v-api-1' },
      certificateRotatingTo: { api: 'v-api-2' },
    };
    expect(taskRow(task, served, rotating, NOW)).toMatchObject({ inSync: true, outOfSync: [] });
    const elsewhere = { ...rotating, certificateRotatingTo: { api: 'v-api-9' } };
    expect(taskRow(task, served, elsewhere, NOW)).toMatchObject({
      inSync: false,
      outOfSync: ['certificate api'],
    });
  });

  it('use the same rule as converge-task', () => {
    for (const change of [{}, { fleetConfigVersionId: 'fleet-4' }, { allowlistVersionId: 'x' }]) {
      const state = { ...current, ...change };
      const desired = desiredSecrets(state);
      expect(taskRow(task, served, state, NOW).inSync).toBe(taskInSync(served, desired));
      expect(taskRow(task, served, state, NOW).outOfSync.length).toBe(staleSecrets(served, desired).length);
    }
  });

  it('are never in sync for a task that is not ready, or when a secret is missing from the store', () => {
    expect(taskRow(task, { ...served, ready: false }, current, NOW).inSync).toBe(false);
    const missing = [{ role: 'allowlist', secretId: 'a', state: 'missing' as const, error: 'NotFoundError' }];
    expect(taskRow(task, served, { ...current, missing }, NOW).inSync).toBe(false);
  });

  it('shows an expired certificate with negative days', () => {
    const row = taskRow(task, served, current, new Date('2026-02-02T12:00:00.000Z'));
    expect(row.certificates.api?.daysToExpiry).toBe(-2);
  });
});

describe('status output', () => {
  const report = { fleet: 'edge', current, tasks: [taskRow(task, served, current, NOW)] };

  it('prints wide tables with the address, renewal time, trust and fleet config', () => {
    const [header, line] = formatReport(report, 'wide', plain).split('\n');
    expect(header).toMatch(
      /^TASK\s+ADDRESS\s+HEALTH\s+CERTIFICATES.*RENEW AT\s+ALLOWLIST\s+TRUST\s+FLEET CONFIG/,
    );
    expect(line).toContain('127.0.0.1:9901');
    expect(line).toContain('api=2026-01-21T00:00');
    expect(line).toContain('fleet-3');
    expect(line).toContain('30.5d');
  });

  it('prints JSON and YAML of the same report', () => {
    expect(JSON.parse(formatReport(report, 'json', plain))).toEqual(report);
    expect(parseYaml(formatReport(report, 'yaml', plain))).toEqual(report);
  });
});
