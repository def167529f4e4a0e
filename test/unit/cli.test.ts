import { afterEach, describe, expect, it, vi } from 'vitest';
import { splitSuite } from '../../bench/main.ts';
import { ExitCode, parseCommandArgs, reportError } from '../../cli/command.ts';
import { allowlistRequest, cidrProblems } from '../../cli/commands/allowlist.ts';
import { formatReport } from '../../cli/commands/demo.ts';
import { formatTable, taskRow } from '../../cli/commands/status.ts';
import { type DemoReport, demoSucceeded } from '../../cli/demo/demo.ts';
import { CONTROL_PLANE_CIDR, demoFleetDocument, measureRotation } from '../../cli/demo/environment.ts';
import { checkFleetName, fleetSecretIds } from '../../cli/demo/secrets.ts';
import {
  executionName,
  outcomeLine,
  outcomeOk,
  progressLine,
  type WorkflowOutcome,
} from '../../cli/demo/workflow.ts';
import { parseFleetConfig } from '../../lib/config/index.ts';
import { TaskUnreachable } from '../../lib/errors.ts';
import type { FleetTask, TaskStatus } from '../../lib/ports.ts';
import { parseControlPlaneFleet } from '../../lib/workflows/fleet-config.ts';
import { verifyListenerEnabled } from '../../proxy/haproxy/render-verify.ts';

const plain = (_code: number, text: string) => text;

describe('parseCommandArgs', () => {
  afterEach(() => vi.restoreAllMocks());
  const options = { fleet: { type: 'string' }, json: { type: 'boolean' } } as const;

  it('returns the values and positionals of a valid command line', () => {
    const parsed = parseCommandArgs(['--fleet', 'a', 'show'], options, 'HELP', { allowPositionals: true });
    expect(parsed).toEqual({ values: { fleet: 'a' }, positionals: ['show'] });
  });

  it('prints the help and returns 0 for -h', () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    expect(parseCommandArgs(['-h'], options, 'HELP')).toBe(ExitCode.Ok);
    expect(log).toHaveBeenCalledWith('HELP');
  });

  it('returns the usage exit code with the message and the help for an unknown option or a positional', () => {
    const error = vi.spyOn(console, 'error').mockImplementation(() => {});
    expect(parseCommandArgs(['--nope'], options, 'HELP')).toBe(ExitCode.Usage);
    expect(parseCommandArgs(['extra'], options, 'HELP')).toBe(ExitCode.Usage);
    expect(error.mock.calls.map((c) => String(c[0]))).toEqual([
      expect.stringMatching(/^portcullis: .*--nope[\s\S]*\n\nHELP$/),
      expect.stringMatching(/^portcullis: .*'extra'[\s\S]*\n\nHELP$/),
    ]);
  });
});

describe('reportError', () => {
  it('prints the command, the error name and message on the given stream and returns 1', () => {
    const lines: string[] = [];
    const stream = { write: (text: string) => lines.push(text) } as unknown as NodeJS.WritableStream;
    expect(reportError('rotate', new TaskUnreachable('t-1: no route'), stream)).toBe(ExitCode.Failure);
    expect(reportError('rotate', 'plain', stream)).toBe(ExitCode.Failure);
    expect(lines).toEqual([
      expect.stringMatching(/^portcullis rotate: TaskUnreachable: t-1: no route\n$/),
      'portcullis rotate: plain\n',
    ]);
  });
});

describe('executionName', () => {
  const at = new Date('2026-01-02T03:07:05Z');

  it('is the same for every moment of one time bucket', () => {
    const a = executionName('rotate', 'edge', 'api', at, 10);
    const b = executionName('rotate', 'edge', 'api', new Date('2026-01-02T03:09:59Z'), 10);
    expect(a).toBe('rotate-edge-api-20260102T0300Z');
    expect(b).toBe(a);
  });

  it('changes with the next bucket, the fleet and the subject', () => {
    const a = executionName('rotate', 'edge', 'api', at, 10);
    expect(executionName('rotate', 'edge', 'api', new Date('2026-01-02T03:10:00Z'), 10)).not.toBe(a);
    expect(executionName('rotate', 'core', 'api', at, 10)).not.toBe(a);
    expect(executionName('rotate', 'edge', 'web', at, 10)).not.toBe(a);
  });

  it('keeps to Step Functions names: at most 80 characters of letters, digits, - and _', () => {
    const name = executionName('rotate', 'edge', `a b/c*${'x'.repeat(200)}`, at, 5);
    expect(name.length).toBeLessThanOrEqual(80);
    expect(name).toMatch(/^[A-Za-z0-9_-]+$/);
  });

  it('refuses a bucket outside 1–1440 minutes', () => {
    expect(() => executionName('rotate', 'edge', 'api', at, 0)).toThrow(/bucket/);
    expect(() => executionName('rotate', 'edge', 'api', at, 1441)).toThrow(/bucket/);
  });
});

describe('outcomeOk and outcomeLine', () => {
  const at = new Date(0);
  const outcome = (
    status: WorkflowOutcome['status'],
    extra: Partial<WorkflowOutcome> = {},
  ): WorkflowOutcome => ({
    status,
    executionName: 'rotate-demo-api-1',
    startedAt: at,
    finishedAt: at,
    events: [],
    ...extra,
  });
  const tagged = (code: number, text: string) => `[${code}]${text}`;

  it('succeeds for SUCCEEDED, and for RUNNING only when the command did not wait', () => {
    expect(outcomeOk(outcome('SUCCEEDED'), true)).toBe(true);
    expect(outcomeOk(outcome('RUNNING'), false)).toBe(true);
    expect(outcomeOk(outcome('RUNNING'), true)).toBe(false);
    expect(outcomeOk(outcome('FAILED'), false)).toBe(false);
  });

  it('names the execution when it succeeded or runs, else the error and cause, coloured by the result', () => {
    expect(outcomeLine(outcome('SUCCEEDED'), true, tagged)).toBe('[32]succeeded: rotate-demo-api-1');
    expect(outcomeLine(outcome('RUNNING'), true, tagged)).toBe('[31]running: rotate-demo-api-1');
    expect(outcomeLine(outcome('FAILED', { error: 'RolledBack', cause: 'task-2' }), false, tagged)).toBe(
      '[31]failed: RolledBack task-2',
    );
    expect(outcomeLine(outcome('TIMED_OUT'), false, tagged)).toBe('[31]timed_out:');
  });
});

describe('progressLine', () => {
  const at = new Date();

  it('prints exits, failures and retries, and skips plain entries', () => {
    expect(progressLine({ type: 'StateExited', at, stateName: 'PlanRotation' })).toBe('✓ PlanRotation');
    expect(progressLine({ type: 'StateExited', at, stateName: 'VerifyTask', index: 2 })).toBe(
      '✓ VerifyTask [2]',
    );
    expect(
      progressLine({
        type: 'StateFailed',
        at,
        stateName: 'VerifyTask',
        error: 'ServedVersionMismatch',
        cause: 'task t1 serves 1\nmore',
      }),
    ).toBe('✗ VerifyTask: ServedVersionMismatch — task t1 serves 1');
    expect(
      progressLine({
        type: 'StateRetried',
        at,
        stateName: 'GetCertificate',
        attempt: 2,
        error: 'CertificateNotReady',
      }),
    ).toBe('↻ GetCertificate retry 2 after CertificateNotReady');
    expect(
      progressLine({ type: 'StateEntered', at, stateName: 'PlanRotation', stateType: 'Task' }),
    ).toBeUndefined();
    expect(progressLine({ type: 'StateEntered', at, stateName: 'UpdateTasks', stateType: 'Map' })).toBe(
      '▸ UpdateTasks (map)',
    );
  });
});

describe('cidrProblems', () => {
  it('accepts IPv4 and IPv6 CIDRs and bare addresses', () => {
    expect(cidrProblems(['10.0.0.0/8', '203.0.113.7', '2001:db8::/32', '::1'])).toEqual([]);
  });

  it('names every bad entry with the reason', () => {
    const problems = cidrProblems(['10.0.0.0/33', 'example.com', '10.0.0.0/8']);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^"10\.0\.0\.0\/33": .*32/);
    expect(problems[1]).toMatch(/^"example\.com": /);
  });
});

describe('allowlistRequest', () => {
  it('is the update-allowlist input for the action', () => {
    const request = allowlistRequest('edge', 'remove', ['10.0.0.0/8'], 'offboarding');
    expect(request).toMatchObject({ fleet: 'edge', remove: ['10.0.0.0/8'], reason: 'offboarding' });
    expect(request.updatedBy).toMatch(/^portcullis-cli:/);
  });
});

describe('fleet names and secret ids', () => {
  it('puts every secret under portcullis/<fleet>/', () => {
    const ids = fleetSecretIds('edge');
    expect([ids.fleetConfig, ids.nudgeKey, ids.allowlist, ids.trust, ids.certificate('api')]).toEqual([
      'portcullis/edge/fleet-config',
      'portcullis/edge/nudge-key',
      'portcullis/edge/allowlist',
      'portcullis/edge/trust',
      'portcullis/edge/cert/api',
    ]);
  });

  it('refuses a fleet name that is not a lower-case DNS label', () => {
    for (const bad of ['Edge', 'edge/x', '-edge', '', 'a'.repeat(64)]) {
      expect(() => checkFleetName(bad), bad).toThrow(/DNS label/);
    }
  });
});

describe('status rows', () => {
  const task: FleetTask = {
    taskId: 'task-1',
    address: '127.0.0.1',
    adminPort: 9901,
    tlsAddress: '127.0.0.1',
    tlsPort: 8443,
    lastStatus: 'RUNNING',
  };
  const status: TaskStatus = {
    ready: true,
    certificates: { api: { versionId: 'v-api-2', serial: 'abc123', notAfter: '2026-02-01T00:00:00.000Z' } },
    allowlist: { versionId: 'allow-7', size: 2 },
    lastApply: { at: '2026-01-02T03:04:05.000Z', ok: true },
  };

  it('is in sync when serials and the allowlist version match the store', () => {
    const row = taskRow(task, status, { certificates: { api: 'abc123' }, allowlistVersionId: 'allow-7' });
    expect(row).toMatchObject({ health: 'ready', inSync: true, allowlist: { size: 2 } });
  });

  it('is out of sync when the task serves another serial or allowlist version', () => {
    expect(
      taskRow(task, status, { certificates: { api: 'def456' }, allowlistVersionId: 'allow-7' }).inSync,
    ).toBe(false);
    expect(
      taskRow(task, status, { certificates: { api: 'abc123' }, allowlistVersionId: 'allow-8' }).inSync,
    ).toBe(false);
  });

  it('shows an unreachable task with its error', () => {
    const row = taskRow(task, new TaskUnreachable('GET /v1/status failed: ECONNREFUSED'), {
      certificates: {},
      allowlistVersionId: null,
    });
    expect(row).toMatchObject({
      health: 'unreachable',
      inSync: false,
      error: 'TaskUnreachable: GET /v1/status failed: ECONNREFUSED',
    });
  });

  it('formats one line per task under a header', () => {
    const rows = [
      taskRow(task, status, { certificates: { api: 'abc123' }, allowlistVersionId: 'allow-7' }),
      taskRow({ ...task, taskId: 'task-2' }, new TaskUnreachable('down'), {
        certificates: {},
        allowlistVersionId: null,
      }),
    ];
    const lines = formatTable(rows, plain).split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^TASK\s+HEALTH\s+CERTIFICATES/);
    expect(lines[1]).toMatch(
      /^task-1\s+ready\s+api=abc123 2026-02-01 -?\d+\.\dd\s+allow-7 \(2\)\s+03:04:05 ok\s+yes$/,
    );
    expect(lines[2]).toMatch(/^task-2\s+unreachable\s+TaskUnreachable: down/);
  });
});

describe('measureRotation', () => {
  const before = [
    { taskId: 't1', serial: 'aa' },
    { taskId: 't2', serial: 'aa' },
  ];
  const issuedAt = new Map([['local:x', 10_000]]);

  it('times each task from issuance to the first time it served the new serial', () => {
    const seen: Record<string, number> = { t1: 10_400, t2: 11_250 };
    const m = measureRotation({
      succeeded: true,
      before,
      after: [
        { taskId: 't1', serial: 'bb' },
        { taskId: 't2', serial: 'bb' },
      ],
      issuedAt,
      firstServedAt: (_serial, taskId) => seen[taskId],
    });
    expect(m).toMatchObject({ previousSerial: 'aa', newSerial: 'bb', tasksServingNew: 2, seconds: 1.25 });
    expect(m.perTask.map((p) => p.servingNewAfterSeconds)).toEqual([0.4, 1.25]);
  });

  it('gives no figure when a task still serves the old serial', () => {
    const m = measureRotation({
      succeeded: true,
      before,
      after: [
        { taskId: 't1', serial: 'bb' },
        { taskId: 't2', serial: 'aa' },
      ],
      issuedAt,
      firstServedAt: () => 10_500,
    });
    expect(m.tasksServingNew).toBe(1);
    expect(m.seconds).toBeNull();
  });

  it('claims no new serial for a failed rotation', () => {
    const m = measureRotation({
      succeeded: false,
      before,
      after: before,
      issuedAt,
      firstServedAt: () => undefined,
    });
    expect(m).toMatchObject({ newSerial: null, tasksServingNew: 0, seconds: null });
  });
});

describe('the demo fleet document', () => {
  const document = demoFleetDocument({
    dnsAddress: '127.0.0.1:5353',
    mtlsUpstreamPort: 1,
    passthroughUpstreamPort: 2,
    terminate: true,
    listeners: { tls: 41_001, health: 41_002, verify: 41_003 },
  });

  it('is a fleet config the control plane reads, with a terminate and a passthrough route', () => {
    const config = parseControlPlaneFleet(JSON.stringify(document));
    expect(config.certificates.map((c) => c.name)).toEqual(['api', 'gateway-client']);
    expect(config.allowlist.source).toEqual({ secretId: 'portcullis/demo/allowlist' });
    expect((document.routes as { mode: string }[]).map((r) => r.mode)).toEqual(['terminate', 'passthrough']);
  });

  it('is one document for every task: shared listener ports, the verify listener open to the control plane', () => {
    const config = parseFleetConfig(document);
    expect(config.listeners).toMatchObject({ tls: 41_001, health: 41_002, verify: 41_003, http: null });
    expect(config.verify.trustedPeers).toEqual([CONTROL_PLANE_CIDR]);
    expect(verifyListenerEnabled(config)).toBe(true);
  });
});

function report(overrides: Partial<DemoReport> = {}): DemoReport {
  return {
    tasks: 2,
    stateDir: '/tmp/x',
    missing: [],
    rotation: {
      status: 'SUCCEEDED',
      certificate: 'api',
      previousSerial: 'aa',
      newSerial: 'bb',
      tasksServingNew: 2,
      seconds: 0.5,
      executionSeconds: 1.2,
      perTask: [
        { taskId: 'task-1', before: 'aa', after: 'bb', servingNewAfterSeconds: 0.4 },
        { taskId: 'task-2', before: 'aa', after: 'bb', servingNewAfterSeconds: 0.5 },
      ],
    },
    traffic: {
      handshakes: 100,
      failedHandshakes: 0,
      longLived: 4,
      droppedLongLived: 0,
      longLivedBytes: 4096,
      byRoute: {},
      failures: [],
    },
    allowlist: {
      status: 'SUCCEEDED',
      removed: '203.0.113.0/24',
      removedSourceRefused: true,
      cutLongLived: 4,
      longLivedOfRemovedSource: 4,
      otherSourceUnaffected: true,
      seconds: 0.3,
      restoreStatus: 'SUCCEEDED',
      restored: true,
    },
    alert: {
      rule: 'portcullis_certificate_in_sync{certificate="api"} == 0 for 1.5s',
      task: 'task-1',
      heldSerial: 'bb',
      refusal: 'untrusted-chain',
      fired: true,
      firedAfterSeconds: 1.7,
      cleared: true,
      clearedAfterSeconds: 0.1,
      otherTasksInSync: true,
    },
    events: [],
    totalSeconds: 8,
    ok: true,
    ...overrides,
  };
}

describe('demoSucceeded', () => {
  it('holds for a report where everything worked', () => {
    expect(demoSucceeded(report())).toBe(true);
  });

  it('fails on any failed handshake, dropped session, missing part or unrefused source', () => {
    const base = report();
    expect(demoSucceeded(report({ traffic: { ...base.traffic, failedHandshakes: 1 } }))).toBe(false);
    expect(demoSucceeded(report({ traffic: { ...base.traffic, droppedLongLived: 1 } }))).toBe(false);
    expect(demoSucceeded(report({ missing: ['the sidecar'] }))).toBe(false);
    expect(demoSucceeded(report({ allowlist: { ...base.allowlist, removedSourceRefused: false } }))).toBe(
      false,
    );
    expect(demoSucceeded(report({ rotation: { ...base.rotation, tasksServingNew: 1 } }))).toBe(false);
    // The out-of-sync alert must fire on the held task and clear after the rollback.
    expect(demoSucceeded(report({ alert: { ...base.alert!, fired: false } }))).toBe(false);
    expect(demoSucceeded(report({ alert: { ...base.alert!, cleared: false } }))).toBe(false);
    expect(demoSucceeded(report({ alert: { ...base.alert!, otherTasksInSync: false } }))).toBe(false);
  });
});

describe('formatReport', () => {
  it('shows old → new serial per task and the measured figures', () => {
    const text = formatReport(report(), plain);
    expect(text).toContain('task-1: aa → bb');
    expect(text).toContain('100 handshakes, 0 failed; 4 long-lived, 0 dropped');
    expect(text).toContain('4/4 of its long-lived sessions cut');
    expect(text).toContain(
      '✓ alert portcullis_certificate_in_sync{certificate="api"} == 0 for 1.5s: fired after 1.7 s while task-1 was held on bb (refused: untrusted-chain), cleared 0.1 s after the rollback',
    );
    expect(text).toContain('all good');
  });

  it('lists what the tree is missing', () => {
    expect(formatReport(report({ missing: ['the sidecar command'], ok: false }), plain)).toMatch(
      /Missing in this tree:\n\s+the sidecar command/,
    );
  });
});

describe('bench suite dispatch', () => {
  it('takes --suite out of the arguments and passes the rest on', () => {
    expect(splitSuite(['--suite', 'rotation', '--tasks', '3'])).toEqual({
      suite: 'rotation',
      rest: ['--tasks', '3'],
    });
    expect(splitSuite(['--tasks=3', '--suite=dataplane'])).toEqual({
      suite: 'dataplane',
      rest: ['--tasks=3'],
    });
    expect(splitSuite([])).toEqual({ suite: undefined, rest: [] });
  });
});
