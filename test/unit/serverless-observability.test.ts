/**
 * The stack's observability, checked on the template `sls package` generates offline: the path
 * the sidecars' metrics take to CloudWatch (EMF lines in the sidecar log group), each alarm with
 * the metric it reads and the topic it notifies, the dashboard, the event log `portcullis
 * history` reads, and the outputs `--stack` reads; then the same with every part turned off.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STACK_OUTPUTS } from '../../cli/demo/stack.ts';
import { parseSidecarConfig, type SidecarConfig } from '../../proxy/sidecar/config.ts';
import { EMF_METRICS, EMF_REASON_DIMENSION } from '../../proxy/sidecar/emf.ts';
import { created, evaluateConditions, resolveIf } from '../deploy/conditions.ts';
import {
  type CfnResource,
  type CfnTemplate,
  type PackagedService,
  packageService,
} from '../deploy/package.ts';

const STAGE = 'ci';
const PREFIX = `portcullis-${STAGE}-main`;
/** CloudWatch limits (PutMetricAlarm): name length, and EvaluationPeriods × Period at most one day. */
const ALARM_NAME_MAX = 255;
const ALARM_RANGE_MAX_SECONDS = 86_400;

interface Alarm {
  AlarmName: string;
  Namespace: string;
  MetricName: string;
  Dimensions: { Name: string; Value: unknown }[];
  Statistic: string;
  Period: number;
  EvaluationPeriods: number | string;
  DatapointsToAlarm?: number | string;
  Threshold: number | string;
  ComparisonOperator: string;
  TreatMissingData: string;
  AlarmActions: unknown[];
}

function sidecarConfig(template: CfnTemplate, conditions: Record<string, boolean>): SidecarConfig {
  const td = template.Resources.GatewayTaskDefinition?.Properties as {
    ContainerDefinitions: { Name: string; Environment?: { Name: string; Value: unknown }[] }[];
  };
  const writer = td.ContainerDefinitions.find((c) => c.Name === 'sidecar-config')!;
  const value = resolveIf(
    writer.Environment!.find((e) => e.Name === 'PORTCULLIS_SIDECAR_CONFIG')!.Value,
    conditions,
  );
  return parseSidecarConfig(JSON.parse(value as string));
}

function alarms(resources: Record<string, CfnResource>): Record<string, Alarm> {
  return Object.fromEntries(
    Object.entries(resources)
      .filter(([, r]) => r.Type === 'AWS::CloudWatch::Alarm')
      .map(([id, r]) => [id, r.Properties as unknown as Alarm]),
  );
}

describe('observability in the packaged stack (defaults)', () => {
  let packaged: PackagedService;
  let template: CfnTemplate;
  let conditions: Record<string, boolean>;
  let resources: Record<string, CfnResource>;

  beforeAll(async () => {
    packaged = await packageService({ stage: STAGE });
    template = packaged.template;
    conditions = evaluateConditions(template);
    resources = created(template, conditions);
  }, 180_000);
  afterAll(async () => {
    await packaged?.cleanup();
  });

  it('sends the sidecars’ metrics to CloudWatch as EMF lines on their awslogs stream, in the namespace and dimension the alarms read', () => {
    const config = sidecarConfig(template, conditions);
    expect(config.emf).toEqual({
      namespace: 'Portcullis',
      dimensions: { Fleet: 'main' },
      intervalMs: 60_000,
    });
    const td = resources.GatewayTaskDefinition?.Properties as {
      ContainerDefinitions: {
        Name: string;
        LogConfiguration: { LogDriver: string; Options: Record<string, unknown> };
      }[];
    };
    const sidecar = td.ContainerDefinitions.find((c) => c.Name === 'sidecar')!;
    expect(sidecar.LogConfiguration.LogDriver).toBe('awslogs');
    expect(sidecar.LogConfiguration.Options['awslogs-group']).toEqual({ Ref: 'SidecarLogGroup' });
    const fromSidecars = Object.values(alarms(resources)).filter(
      (a) => a.Namespace === config.emf?.namespace,
    );
    expect(fromSidecars.map((a) => a.MetricName).sort()).toEqual(
      [
        EMF_METRICS.accessLogLinesDropped,
        EMF_METRICS.applyFailures,
        EMF_METRICS.certificateDaysToExpiry,
        EMF_METRICS.objectsOutOfSync,
      ].sort(),
    );
    for (const alarm of fromSidecars) expect(alarm.Dimensions).toEqual([{ Name: 'Fleet', Value: 'main' }]);
  });

  it('alarms on a certificate expiring within alarmDays, the soonest of every task', () => {
    const alarm = alarms(resources).CertificateExpiryAlarm!;
    expect(alarm).toMatchObject({
      MetricName: 'CertificateDaysToExpiry',
      Statistic: 'Minimum',
      ComparisonOperator: 'LessThanThreshold',
    });
    expect(Number(alarm.Threshold)).toBe(14);
  });

  it('alarms on a task out of sync for longer than the poll backstop (60 s at most)', () => {
    const alarm = alarms(resources).TaskOutOfSyncAlarm!;
    expect(alarm).toMatchObject({
      MetricName: 'ObjectsOutOfSync',
      Statistic: 'Maximum',
      Period: 60,
      Threshold: 0,
    });
    expect(alarm.ComparisonOperator).toBe('GreaterThanThreshold');
    const minutes = Number(alarm.EvaluationPeriods);
    expect(Number(alarm.DatapointsToAlarm)).toBe(minutes);
    expect(minutes * alarm.Period).toBeGreaterThan(60);
  });

  it('alarms on failed applies, and on failed executions of each state machine', () => {
    const all = alarms(resources);
    expect(all.ApplyFailuresAlarm).toMatchObject({
      MetricName: 'ApplyFailures',
      Statistic: 'Sum',
      Threshold: 0,
    });
    const machines = Object.values(all)
      .filter((a) => a.Namespace === 'AWS/States')
      .map((a) => {
        expect(a).toMatchObject({ MetricName: 'ExecutionsFailed', Statistic: 'Sum' });
        return a.Dimensions[0]?.Value;
      });
    expect(machines).toEqual([
      { Ref: 'RotateCertificatesStateMachine' },
      { Ref: 'UpdateAllowlistStateMachine' },
      { Ref: 'ConvergeTaskStateMachine' },
    ]);
  });

  it('alarms on any access-log line lost in five minutes, across the fleet’s tasks', () => {
    const alarm = alarms(resources).AccessLogLinesDroppedAlarm!;
    expect(alarm).toMatchObject({
      AlarmName: `${PREFIX}-access-log-lines-lost`,
      MetricName: EMF_METRICS.accessLogLinesDropped,
      Dimensions: [{ Name: 'Fleet', Value: 'main' }],
      Statistic: 'Sum',
      Period: 300,
      EvaluationPeriods: 1,
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
    });
    expect(template.Resources.AccessLogLinesDroppedAlarm?.Condition).toBe('CreateAlarms');
  });

  it('alarms on unhealthy targets of every target group of the NLBs deployed', () => {
    const nlb = Object.entries(alarms(resources)).filter(([, a]) => a.Namespace === 'AWS/NetworkELB');
    // Default deploymentMode internet-facing: the public NLB's two target groups.
    expect(nlb.map(([id]) => id).sort()).toEqual(['PublicHttpUnhealthyAlarm', 'PublicTlsUnhealthyAlarm']);
    for (const [, a] of nlb) {
      expect(a.MetricName).toBe('UnHealthyHostCount');
      const dims = Object.fromEntries(a.Dimensions.map((d) => [d.Name, d.Value]));
      expect(dims.LoadBalancer).toEqual({ 'Fn::GetAtt': ['PublicLoadBalancer', 'LoadBalancerFullName'] });
      const group = (dims.TargetGroup as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'];
      expect(group[1]).toBe('TargetGroupFullName');
      expect(resources[group[0]]?.Type).toBe('AWS::ElasticLoadBalancingV2::TargetGroup');
    }
  });

  it('notifies the notification topic from every alarm, which CloudWatch may publish to', () => {
    for (const alarm of Object.values(alarms(resources))) {
      expect(alarm.AlarmActions).toEqual([{ Ref: 'NotificationTopic' }]);
      expect(alarm.AlarmName.startsWith(`${PREFIX}-`)).toBe(true);
      expect(alarm.AlarmName.length).toBeLessThanOrEqual(ALARM_NAME_MAX);
      expect(Number(alarm.EvaluationPeriods) * alarm.Period).toBeLessThanOrEqual(ALARM_RANGE_MAX_SECONDS);
      expect(alarm.TreatMissingData).toBe('notBreaching');
    }
    const policy = resources.NotificationTopicPolicy?.Properties as {
      PolicyDocument: {
        Statement: { Principal: { Service: string }; Condition: { ArnLike: Record<string, unknown> } }[];
      };
    };
    const statement = policy.PolicyDocument.Statement.find(
      (s) => s.Principal.Service === 'cloudwatch.amazonaws.com',
    )!;
    const arn = (statement.Condition.ArnLike['aws:SourceArn'] as { 'Fn::Sub': string })['Fn::Sub'];
    expect(arn.endsWith(`:alarm:${PREFIX}-*`)).toBe(true);
  });

  it('creates one dashboard whose body is JSON with the sidecar, state machine and NLB widgets', () => {
    const dashboards = Object.values(resources).filter((r) => r.Type === 'AWS::CloudWatch::Dashboard');
    expect(dashboards).toHaveLength(1);
    const [body, vars] = (
      dashboards[0]!.Properties as { DashboardBody: { 'Fn::Sub': [string, Record<string, unknown>] } }
    ).DashboardBody['Fn::Sub'];
    const names = new Set([...body.matchAll(/\$\{([^}]+)\}/g)].map((m) => m[1]!));
    for (const name of names) if (name !== 'AWS::Region') expect(vars).toHaveProperty(name);
    const json = body.replace(/\$\{([^}]+)\}/g, (_, name: string) =>
      typeof vars[name] === 'string' || typeof vars[name] === 'number' ? String(vars[name]) : `x-${name}`,
    );
    // The NLB lines name the deployed NLB's target group (internet-facing by default) and no other.
    const resolved = resolveIf(vars, conditions) as Record<string, unknown>;
    expect(resolved.PublicTlsTg).toEqual({ 'Fn::GetAtt': ['PublicTlsTargetGroup', 'TargetGroupFullName'] });
    expect(resolved.InternalLb).toBe('none');
    const widgets = (JSON.parse(json) as { widgets: { type: string; properties: Record<string, unknown> }[] })
      .widgets;
    const text = JSON.stringify(widgets);
    for (const metric of [
      EMF_METRICS.certificateDaysToExpiry,
      EMF_METRICS.objectsOutOfSync,
      EMF_METRICS.applyFailures,
      EMF_METRICS.accessLogLinesDropped,
      EMF_METRICS.accessLogRingOverflows,
      EMF_METRICS.gatewayRefusals,
      'ExecutionsFailed',
      'UnHealthyHostCount',
    ])
      expect(text).toContain(metric);
    expect(widgets.filter((w) => w.type === 'metric').length).toBeGreaterThanOrEqual(7);
    // Refusals by reason: a SEARCH over the Fleet, Reason records the sidecars write.
    const expressions = widgets.flatMap((w) =>
      ((w.properties.metrics ?? []) as unknown[][]).flatMap((row) =>
        row.flatMap((item) =>
          typeof item === 'object' && item !== null && 'expression' in item
            ? [String((item as { expression: unknown }).expression)]
            : [],
        ),
      ),
    );
    expect(expressions).toContain(
      `SEARCH('{Portcullis,Fleet,${EMF_REASON_DIMENSION}} Fleet="main" MetricName="${EMF_METRICS.gatewayRefusals}"', 'Sum', 300)`,
    );
    // Widgets do not overlap on the 24-column grid.
    const cells = new Set<string>();
    for (const w of widgets as unknown as { x: number; y: number; width: number; height: number }[])
      for (let x = w.x; x < w.x + w.width; x++)
        for (let y = w.y; y < w.y + w.height; y++) {
          expect(x).toBeLessThan(24);
          expect(cells.has(`${x},${y}`)).toBe(false);
          cells.add(`${x},${y}`);
        }
  });

  it('logs the fleet’s events and its executions’ status changes in one group EventBridge may write to', () => {
    const group = resources.EventLogGroup?.Properties as { LogGroupName: string };
    // EventBridge writes only to log groups named /aws/events/…
    expect(group.LogGroupName).toBe(`/aws/events/${PREFIX}`);
    for (const rule of ['EventLogRule', 'ExecutionLogRule']) {
      const props = resources[rule]?.Properties as {
        Targets: { Arn: unknown }[];
        EventPattern: Record<string, unknown>;
      };
      expect(props.Targets).toEqual([{ Id: 'event-log', Arn: { 'Fn::GetAtt': ['EventLogGroup', 'Arn'] } }]);
    }
    expect((resources.EventLogRule!.Properties as { EventPattern: unknown }).EventPattern).toEqual({
      source: ['portcullis'],
      detail: { fleet: ['main'] },
    });
    const [doc, vars] = (
      resources.EventLogResourcePolicy!.Properties as {
        PolicyDocument: { 'Fn::Sub': [string, Record<string, unknown>] };
      }
    ).PolicyDocument['Fn::Sub'];
    const policy = JSON.parse(doc.replace(/\$\{([^}]+)\}/g, (_, n: string) => `arn:${n}`)) as {
      Statement: { Action: string[]; Condition: { ArnEquals: { 'aws:SourceArn': string[] } } }[];
    };
    expect(policy.Statement[0]?.Action).toEqual(['logs:CreateLogStream', 'logs:PutLogEvents']);
    expect(policy.Statement[0]?.Condition.ArnEquals['aws:SourceArn']).toEqual([
      'arn:EventRuleArn',
      'arn:ExecutionRuleArn',
    ]);
    expect(vars.EventRuleArn).toEqual({ 'Fn::GetAtt': ['EventLogRule', 'Arn'] });
  });

  it('outputs everything `portcullis --stack` reads, and the dashboard', () => {
    for (const key of [...Object.values(STACK_OUTPUTS), 'DashboardName'])
      expect(template.Outputs).toHaveProperty(key);
  });
});

describe('observability in the packaged stack, every part turned off', () => {
  let packaged: PackagedService;
  let template: CfnTemplate;
  let conditions: Record<string, boolean>;

  beforeAll(async () => {
    packaged = await packageService({
      stage: STAGE,
      params: {
        metrics: 'false',
        alarms: 'false',
        dashboard: 'false',
        eventLog: 'false',
        deploymentMode: 'both',
      },
    });
    template = packaged.template;
    conditions = evaluateConditions(template);
  }, 180_000);
  afterAll(async () => {
    await packaged?.cleanup();
  });

  it('creates no alarm, dashboard or event log, and the sidecars write no EMF', () => {
    const resources = created(template, conditions);
    const types = Object.values(resources).map((r) => r.Type);
    expect(types).not.toContain('AWS::CloudWatch::Alarm');
    expect(types).not.toContain('AWS::CloudWatch::Dashboard');
    expect(resources.EventLogGroup).toBeUndefined();
    expect(sidecarConfig(template, conditions).emf).toBeUndefined();
  });

  it('keeps the NLB alarms with alarms on even without sidecar metrics', async () => {
    const other = await packageService({
      stage: STAGE,
      params: { metrics: 'false', deploymentMode: 'both' },
    });
    try {
      const ids = Object.keys(alarms(created(other.template, evaluateConditions(other.template)))).sort();
      expect(ids).toEqual([
        'ConvergeTaskFailedAlarm',
        'InternalHttpUnhealthyAlarm',
        'InternalTlsUnhealthyAlarm',
        'PublicHttpUnhealthyAlarm',
        'PublicTlsUnhealthyAlarm',
        'RotateCertificatesFailedAlarm',
        'UpdateAllowlistFailedAlarm',
      ]);
    } finally {
      await other.cleanup();
    }
  }, 180_000);
});
