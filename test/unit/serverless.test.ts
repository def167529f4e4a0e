/**
 * The deployable stack, checked on the CloudFormation template that `sls package` generates
 * offline (no AWS credentials): functions, state machines and rules wired to each other, IAM
 * least privilege, and the gateway fleet's load balancing, security groups and scaling.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadFleetConfig } from '../../lib/config/load.ts';
import { LimitsSchema } from '../../lib/config/schema.ts';
import { containerLayout, haproxyArgs } from '../../proxy/haproxy/process.ts';
import { renderGateway } from '../../proxy/haproxy/render.ts';
import { loadSidecarConfig, parseSidecarConfig } from '../../proxy/sidecar/config.ts';
import { created, evaluateConditions, resolveIf } from '../deploy/conditions.ts';
import { allStatements, list, roleStatements, type Statement } from '../deploy/iam.ts';
import {
  type CfnResource,
  type CfnTemplate,
  type PackagedService,
  packageService,
  REPO,
} from '../deploy/package.ts';
import { unzip } from '../deploy/unzip.ts';

const execFileAsync = promisify(execFile);
const aslValidator = createRequire(import.meta.url)('asl-validator') as (
  definition: unknown,
  options?: { checkPaths?: boolean; checkArn?: boolean },
) => { isValid: boolean; errors: unknown[] };

/** The contract: serverless.yml key → handler file (functions/<kebab>.ts); these run as steps. */
const STEP_FUNCTIONS = [
  'planRotation',
  'issueCertificate',
  'getCertificate',
  'stageCertificate',
  'updateTasks',
  'promoteSecret',
  'rollService',
  'checkRollout',
  'revokeCertificate',
  'rollbackRotation',
  'notify',
  'validateAllowlist',
  'stageAllowlist',
  'rollbackAllowlist',
  'convergeTask',
] as const;
/** And the function behind the FleetReadiness custom resource, run by CloudFormation at each deploy. */
const FUNCTIONS = [...STEP_FUNCTIONS, 'fleetReadiness'] as const;
const VPC_FUNCTIONS = new Set(['updateTasks', 'convergeTask', 'rollbackRotation', 'rollbackAllowlist']);
const STATE_MACHINES = [
  'RotateCertificateStateMachine',
  'RotateCertificatesStateMachine',
  'UpdateAllowlistStateMachine',
  'ConvergeTaskStateMachine',
] as const;
const ENVIRONMENT = [
  'FLEET_NAME',
  'FLEET_CONFIG_SECRET_ID',
  'NUDGE_KEY_SECRET_ID',
  'CA_ARN',
  'CA_TEMPLATE_ARN',
  'CA_SIGNING_ALGORITHM',
  'ECS_CLUSTER',
  'ECS_SERVICE',
  'SIDECAR_ADMIN_PORT',
  'VERIFY_PORT',
  'EVENT_BUS_NAME',
  'POWERTOOLS_SERVICE_NAME',
];
const STAGE = 'ci';
const FLEET_SECRETS_ARN =
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a CloudFormation Fn::Sub string
  'arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:portcullis/main/*';
const TEMPLATE_ARN = 'arn:aws:acm-pca:::template/EndEntityCertificate_APIPassthrough/V1';

const pascal = (key: string) => key[0]!.toUpperCase() + key.slice(1);
const kebab = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

function resource(template: CfnTemplate, id: string): CfnResource {
  const found = template.Resources[id];
  if (found === undefined) throw new Error(`no resource ${id} in the template`);
  return found;
}

function props<T = Record<string, unknown>>(template: CfnTemplate, id: string): T {
  return resource(template, id).Properties as T;
}

function ofType(template: CfnTemplate, type: string): [string, CfnResource][] {
  return Object.entries(template.Resources).filter(([, r]) => r.Type === type);
}

/** Turns a compiled `DefinitionString` (`Fn::Sub` over the ASL) back into ASL plus its references. */
function definition(
  template: CfnTemplate,
  machineId: string,
): { asl: Record<string, unknown>; refs: string[] } {
  const raw = props<{ DefinitionString: unknown }>(template, machineId).DefinitionString;
  if (typeof raw === 'string') return { asl: JSON.parse(raw), refs: [] };
  const [text, vars] = (raw as { 'Fn::Sub': [string, Record<string, unknown>] })['Fn::Sub'];
  const refs = Object.values(vars ?? {}).map((value) => {
    const getAtt = (value as { 'Fn::GetAtt'?: [string, string] })['Fn::GetAtt'];
    const ref = (value as { Ref?: string }).Ref;
    const id = getAtt?.[0] ?? ref;
    if (id === undefined) throw new Error(`unexpected substitution ${JSON.stringify(value)}`);
    return id;
  });
  // Functions only: rotate-certificates also names the machine it starts (startExecution.sync:2).
  const functionRefs = refs.filter((id) => id.endsWith('LambdaFunction'));
  const substituted = text.replace(
    /\$\{([^}]+)\}/g,
    (_, name: string) => `arn:aws:lambda:eu-west-1:123456789012:function:${name}`,
  );
  return { asl: JSON.parse(substituted), refs: functionRefs };
}

/** `com.amazonaws.<region>.<service>` of every VPC endpoint that would be created. */
function endpointServices(template: CfnTemplate, conditions: Record<string, boolean>): string[] {
  return Object.entries(created(template, conditions))
    .filter(([, r]) => r.Type === 'AWS::EC2::VPCEndpoint')
    .map(([, r]) => {
      const name = (r.Properties as { ServiceName: { 'Fn::Sub': string } }).ServiceName['Fn::Sub'];
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a CloudFormation Fn::Sub string
      return name.replace('com.amazonaws.${AWS::Region}.', '');
    })
    .sort();
}

function targetsOf(
  template: CfnTemplate,
  ruleId: string,
): { Arn: unknown; Input?: string; RoleArn?: unknown }[] {
  return props<{ Targets: { Arn: unknown; Input?: string }[] }>(template, ruleId).Targets;
}

function ruleTargeting(
  template: CfnTemplate,
  targetRef: string,
  predicate: (pattern: string) => boolean,
): string {
  const rules = ofType(template, 'AWS::Events::Rule').filter(([id]) =>
    targetsOf(template, id).some((t) => JSON.stringify(t.Arn) === JSON.stringify({ Ref: targetRef })),
  );
  const match = rules.find(([, r]) =>
    predicate(
      JSON.stringify((r.Properties as { EventPattern?: unknown; ScheduleExpression?: string }) ?? {}),
    ),
  );
  if (match === undefined) throw new Error(`no matching rule targets ${targetRef}`);
  return match[0];
}

/** The FleetReadiness resource's Deployment property in the first packaging. */
let firstDeployment: unknown;

describe('serverless.yml packaged offline', () => {
  let packaged: PackagedService;
  let template: CfnTemplate;

  beforeAll(async () => {
    packaged = await packageService({ stage: STAGE, timeoutMs: 150_000 });
    template = packaged.template;
    firstDeployment = (template.Resources.FleetReadiness?.Properties as { Deployment?: unknown } | undefined)
      ?.Deployment;
    console.table(
      packaged.bundleReport.map((r) => ({
        function: r.function,
        files: r.files.length,
        'bundle KiB': Number((r.bundleBytes / 1024).toFixed(1)),
        'zip KiB': Number((r.zipBytes / 1024).toFixed(1)),
      })),
    );
  }, 180_000);

  afterAll(async () => {
    await packaged?.cleanup();
  });

  describe('functions', () => {
    it('declares exactly the contract functions, each bundled into its own archive', async () => {
      expect(Object.keys(packaged.state.service.functions).sort()).toEqual([...FUNCTIONS].sort());
      for (const key of FUNCTIONS) {
        const entry = packaged.bundleReport.find((r) => r.function === key);
        expect(entry, key).toBeDefined();
        const files = unzip(await readFile(join(packaged.out, entry!.artifact)));
        expect(files.map((f) => f.name)).toEqual(entry!.files);
        expect(files[0]!.name).toBe(`functions/${kebab(key)}.mjs`);
        expect(files.slice(1).every((f) => f.name.startsWith('functions/chunks/'))).toBe(true);
      }
    });

    it('ships archives whose entry module loads in Node and exports handler', async () => {
      const env = props<{ Environment: { Variables: Record<string, unknown> } }>(
        template,
        'PlanRotationLambdaFunction',
      ).Environment.Variables;
      const strings = Object.fromEntries(
        Object.entries(env).map(([k, v]) => [k, typeof v === 'string' ? v : 'placeholder']),
      );
      const root = join(packaged.root, 'unpacked');
      const entries: string[] = [];
      for (const key of FUNCTIONS) {
        const entry = packaged.bundleReport.find((r) => r.function === key)!;
        for (const file of unzip(await readFile(join(packaged.out, entry.artifact)))) {
          await mkdir(dirname(join(root, key, file.name)), { recursive: true });
          await writeFile(join(root, key, file.name), file.data);
        }
        entries.push(pathToFileURL(join(root, key, entry.files[0]!)).href);
      }
      // One child process with the functions' environment and no credentials, as in Lambda
      // before the first call: loading must not need the network or the AWS account.
      const script = `const out = {}; for (const url of ${JSON.stringify(entries)}) { const m = await import(url); out[url] = typeof m.handler; } console.log(JSON.stringify(out));`;
      const { stdout } = await execFileAsync(process.execPath, ['--input-type=module', '-e', script], {
        env: {
          PATH: process.env.PATH,
          AWS_REGION: 'eu-west-1',
          AWS_EC2_METADATA_DISABLED: 'true',
          ...strings,
        },
        timeout: 60_000,
      });
      const types = JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, string>;
      expect(Object.values(types)).toEqual(FUNCTIONS.map(() => 'function'));
    }, 90_000);

    it('runs every function on nodejs24.x arm64 with its own role, tracing and the contract environment', () => {
      for (const key of FUNCTIONS) {
        const fn = props<{
          Handler: string;
          Runtime: string;
          Architectures: string[];
          Role: unknown;
          TracingConfig: { Mode: string };
          FunctionName: string;
          Environment: { Variables: Record<string, unknown> };
        }>(template, `${pascal(key)}LambdaFunction`);
        expect(fn.Handler).toBe(`functions/${kebab(key)}.handler`);
        expect(fn.Runtime).toBe('nodejs24.x');
        expect(fn.Architectures).toEqual(['arm64']);
        expect(fn.Role).toEqual({ 'Fn::GetAtt': [`${pascal(key)}Role`, 'Arn'] });
        expect(fn.TracingConfig.Mode).toBe('Active');
        expect(fn.FunctionName).toBe(`portcullis-${STAGE}-main-${key}`);
        expect(Object.keys(fn.Environment.Variables)).toEqual(expect.arrayContaining(ENVIRONMENT));
      }
      const env = props<{ Environment: { Variables: Record<string, unknown> } }>(
        template,
        'PlanRotationLambdaFunction',
      ).Environment.Variables;
      expect(env).toMatchObject({
        CA_SIGNING_ALGORITHM: 'SHA256WITHECDSA',
        CA_TEMPLATE_ARN: TEMPLATE_ARN,
        SIDECAR_ADMIN_PORT: '9901',
        // The tasks' verification listener (listeners.verify), not the TLS listener behind the NLB.
        VERIFY_PORT: '8444',
        EVENT_BUS_NAME: 'default',
        POWERTOOLS_SERVICE_NAME: 'portcullis',
        ECS_CLUSTER: `portcullis-${STAGE}-main`,
        ECS_SERVICE: 'gateway',
      });
      expect(env).not.toHaveProperty('TLS_PORT');
    });

    it('attaches only the functions that call the tasks to the VPC, in the control-plane security group', () => {
      for (const key of FUNCTIONS) {
        const vpc = props<{ VpcConfig?: { SecurityGroupIds: unknown[]; SubnetIds: unknown } }>(
          template,
          `${pascal(key)}LambdaFunction`,
        ).VpcConfig;
        if (VPC_FUNCTIONS.has(key)) {
          expect(vpc?.SecurityGroupIds, key).toEqual([{ Ref: 'ControlPlaneSecurityGroup' }]);
          expect(vpc?.SubnetIds, key).toBeDefined();
        } else {
          expect(vpc, key).toBeUndefined();
        }
      }
    });

    it('keeps every function log group under a retention period', () => {
      for (const key of FUNCTIONS) {
        expect(props<{ RetentionInDays: number }>(template, `${pascal(key)}LogGroup`).RetentionInDays).toBe(
          30,
        );
      }
    });
  });

  describe('state machines', () => {
    it('compiles the three definitions from statemachines/ into valid ASL', () => {
      for (const id of STATE_MACHINES) {
        const { asl } = definition(template, id);
        const result = aslValidator(asl, { checkPaths: true, checkArn: true });
        expect(result.errors, id).toEqual([]);
        expect(result.isValid).toBe(true);
      }
    });

    it('references only functions of this stack, and every function is used by some state machine', () => {
      const used = new Set<string>();
      for (const id of STATE_MACHINES) {
        for (const ref of definition(template, id).refs) {
          expect(template.Resources[ref]?.Type, `${id} → ${ref}`).toBe('AWS::Lambda::Function');
          used.add(ref);
        }
      }
      expect([...used].sort()).toEqual(STEP_FUNCTIONS.map((key) => `${pascal(key)}LambdaFunction`).sort());
    });

    it('lets each state machine invoke exactly the functions its definition names', () => {
      for (const id of STATE_MACHINES) {
        const role = props<{ RoleArn: { 'Fn::GetAtt': [string, string] } }>(template, id).RoleArn[
          'Fn::GetAtt'
        ][0];
        const invokable = roleStatements(template, role)
          .filter((s) => list(s.Action).includes('lambda:InvokeFunction'))
          .flatMap((s) => list(s.Resource))
          .map((r) => (r as { 'Fn::GetAtt'?: [string, string] })['Fn::GetAtt']?.[0])
          .filter((r): r is string => r !== undefined);
        expect(new Set(invokable), id).toEqual(new Set(definition(template, id).refs));
      }
    });

    it('gives each function the time limit of the states that invoke it', async () => {
      // A function that stops sooner than its state cuts the step's budget (a rollback killed
      // before it revokes); one that runs longer goes on after the machine has moved on.
      type State = {
        Type: string;
        Resource?: string;
        TimeoutSeconds?: number;
        Parameters?: unknown;
        ItemProcessor?: Machine;
      };
      type Machine = { States: Record<string, State> };
      const limits: string[] = [];
      const walk = (machine: Machine, file: string) => {
        for (const [name, state] of Object.entries(machine.States)) {
          if (state.ItemProcessor) walk(state.ItemProcessor, file);
          if (state.Type !== 'Task' || state.Resource !== 'arn:aws:states:::lambda:invoke') continue;
          const fn = (state.Parameters as { FunctionName: { 'Fn::GetAtt': [string, string] } }).FunctionName[
            'Fn::GetAtt'
          ][0];
          const timeout = props<{ Timeout: number }>(template, fn).Timeout;
          limits.push(`${file}/${name}: state ${state.TimeoutSeconds} s, ${fn} ${timeout} s`);
          expect(timeout, limits.at(-1)).toBe(state.TimeoutSeconds);
        }
      };
      for (const file of ['rotate-certificates', 'rotate-certificate', 'update-allowlist', 'converge-task']) {
        const text = await readFile(
          join(import.meta.dirname, '..', '..', 'statemachines', `${file}.asl.json`),
          'utf8',
        );
        walk(JSON.parse(text) as Machine, file);
      }
      expect(limits.length).toBeGreaterThan(20);
    });

    it('logs to a log group with retention and traces with X-Ray', () => {
      for (const id of STATE_MACHINES) {
        const sm = props<{
          LoggingConfiguration: {
            Level: string;
            Destinations: { CloudWatchLogsLogGroup: { LogGroupArn: unknown } }[];
          };
          TracingConfiguration: { Enabled: boolean };
          StateMachineName: string;
        }>(template, id);
        expect(sm.TracingConfiguration.Enabled).toBe(true);
        expect(sm.LoggingConfiguration.Level).toBe('ERROR');
        const logGroup = (
          sm.LoggingConfiguration.Destinations[0]!.CloudWatchLogsLogGroup.LogGroupArn as {
            'Fn::GetAtt': [string, string];
          }
        )['Fn::GetAtt'][0];
        expect(props<{ RetentionInDays: number }>(template, logGroup).RetentionInDays).toBe(30);
        expect(sm.StateMachineName).toMatch(new RegExp(`^portcullis-${STAGE}-main-`));
      }
    });
  });

  describe('event rules', () => {
    it('starts rotate-certificates every hour with {"mode":"due"}', () => {
      const id = ruleTargeting(template, 'RotateCertificatesStateMachine', (p) =>
        p.includes('ScheduleExpression'),
      );
      expect(props<{ ScheduleExpression: string }>(template, id).ScheduleExpression).toBe('rate(1 hour)');
      const [target] = targetsOf(template, id);
      expect(JSON.parse(target!.Input!)).toEqual({ mode: 'due' });
      expect(target!.RoleArn).toBeDefined();
    });

    it('starts update-allowlist when the allowlist secret changes, but not on its own writes', () => {
      const id = ruleTargeting(template, 'UpdateAllowlistStateMachine', (p) =>
        p.includes('aws.secretsmanager'),
      );
      const pattern = props<{ EventPattern: Record<string, unknown> }>(template, id).EventPattern as {
        source: string[];
        'detail-type': string[];
        detail: {
          eventName: string[];
          errorCode: unknown;
          requestParameters: { secretId: unknown[] };
          userIdentity: { arn: { 'anything-but': { wildcard: string } }[] };
        };
      };
      expect(pattern.source).toEqual(['aws.secretsmanager']);
      expect(pattern['detail-type']).toEqual(['AWS API Call via CloudTrail']);
      expect(pattern.detail.eventName.sort()).toEqual(['PutSecretValue', 'UpdateSecretVersionStage']);
      // CloudTrail also records refused calls (AccessDenied, an unknown version id) with an
      // errorCode: they changed nothing and must not start a run.
      expect(pattern.detail.errorCode).toEqual([{ exists: false }]);
      expect(pattern.detail.requestParameters.secretId).toContain('portcullis/main/allowlist');
      expect(pattern.detail.userIdentity.arn[0]!['anything-but'].wildcard).toBe(
        `arn:aws:sts::*:assumed-role/*/portcullis-${STAGE}-main-*`,
      );
      // ValidateAllowlist parses the CloudTrail event itself.
      expect(targetsOf(template, id)[0]).not.toHaveProperty('InputTransformer');
    });

    it('starts converge-task when a task of the fleet cluster reaches RUNNING', () => {
      const id = ruleTargeting(template, 'ConvergeTaskStateMachine', (p) =>
        p.includes('ECS Task State Change'),
      );
      const pattern = props<{ EventPattern: { source: string[]; detail: Record<string, unknown> } }>(
        template,
        id,
      ).EventPattern;
      expect(pattern.source).toEqual(['aws.ecs']);
      expect(pattern.detail.lastStatus).toEqual(['RUNNING']);
      expect(JSON.stringify(pattern.detail.clusterArn)).toContain(`:cluster/portcullis-${STAGE}-main`);
      // The state machine receives the whole event: ConvergeTask parses ECS's event itself.
      expect(targetsOf(template, id)[0]).not.toHaveProperty('InputTransformer');
      expect(targetsOf(template, id)[0]).not.toHaveProperty('Input');
    });

    it('notifies the SNS topic when any of the three state machines fails or times out', () => {
      const id = ruleTargeting(template, 'NotificationTopic', (p) => p.includes('aws.states'));
      const pattern = props<{ EventPattern: { detail: { status: string[]; stateMachineArn: unknown[] } } }>(
        template,
        id,
      ).EventPattern;
      expect(pattern.detail.status.sort()).toEqual(['FAILED', 'TIMED_OUT']);
      // A certificate's rotate-certificate execution is reported by rotate-certificates, which fails with it.
      expect(pattern.detail.stateMachineArn).toEqual(
        STATE_MACHINES.filter((sm) => sm !== 'RotateCertificateStateMachine').map((sm) => ({ Ref: sm })),
      );
      const policy = props<{ PolicyDocument: { Statement: Statement[] } }>(
        template,
        'NotificationTopicPolicy',
      );
      const statement = policy.PolicyDocument.Statement[0]!;
      expect(statement.Action).toBe('sns:Publish');
      expect(statement.Condition?.ArnEquals?.['aws:SourceArn']).toEqual({ 'Fn::GetAtt': [id, 'Arn'] });
    });
  });

  describe('outputs', () => {
    it('exports only fleet-scoped names, so several fleets can share an account and stage', () => {
      const exports = Object.values(template.Outputs ?? {})
        .map((o) => (o as { Export?: { Name: string } }).Export?.Name)
        .filter((name): name is string => name !== undefined);
      expect(exports.length).toBeGreaterThanOrEqual(4);
      for (const name of exports) expect(name).toMatch(new RegExp(`^portcullis-${STAGE}-main-`));
      expect(template.Outputs).toHaveProperty('RotateCertificatesStateMachineArn');
    });
  });

  describe('IAM', () => {
    it('never grants a wildcard action or uses NotAction', () => {
      const statements = allStatements(template);
      expect(statements.length).toBeGreaterThan(40);
      for (const { owner, statement } of statements) {
        expect(statement.NotAction, owner).toBeUndefined();
        for (const action of list(statement.Action)) {
          expect(action, owner).not.toBe('*');
          expect(action, owner).not.toMatch(/:\*$/);
          expect(action, owner).toMatch(/^[a-z0-9-]+:[A-Za-z0-9]+$/);
        }
      }
    });

    it('lets only issueCertificate issue, only on the fleet CA and only with the fleet template', () => {
      const issuing = allStatements(template).filter(({ statement }) =>
        list(statement.Action).some((a) => a === 'acm-pca:IssueCertificate'),
      );
      expect(issuing.map((s) => s.owner)).toEqual(['IssueCertificateRole']);
      const { statement } = issuing[0]!;
      expect(statement.Resource).toMatch(/^arn:aws:acm-pca:eu-west-1:\d{12}:certificate-authority\//);
      expect(statement.Condition).toEqual({ StringEquals: { 'acm-pca:TemplateArn': TEMPLATE_ARN } });
    });

    it('lets only issueCertificate create secrets (a first certificate secret) and only rollService roll', () => {
      const owners = (action: string) =>
        allStatements(template)
          .filter(({ statement }) => list(statement.Action).includes(action))
          .map((s) => s.owner);
      expect(owners('secretsmanager:CreateSecret')).toEqual(['IssueCertificateRole']);
      expect(owners('ecs:UpdateService')).toEqual(['RollServiceRole']);
      expect(owners('events:PutEvents')).toEqual(['NotifyRole']);
      expect(owners('secretsmanager:DeleteSecret')).toEqual([]);
    });

    it('scopes every other PCA action to the fleet CA', () => {
      for (const { owner, statement } of allStatements(template)) {
        if (!list(statement.Action).some((a) => a.startsWith('acm-pca:'))) continue;
        expect(
          list(statement.Action).every((a) => a.startsWith('acm-pca:')),
          owner,
        ).toBe(true);
        expect(statement.Resource, owner).toMatch(/:certificate-authority\//);
      }
    });

    it('scopes every Secrets Manager action to the fleet prefix', () => {
      const secretStatements = allStatements(template).filter(({ statement }) =>
        list(statement.Action).some((a) => a.startsWith('secretsmanager:')),
      );
      expect(secretStatements.length).toBeGreaterThan(10);
      for (const { owner, statement } of secretStatements) {
        expect(
          list(statement.Action).every((a) => a.startsWith('secretsmanager:')),
          owner,
        ).toBe(true);
        expect(statement.Resource, owner).toEqual({ 'Fn::Sub': FLEET_SECRETS_ARN });
      }
    });

    it('limits the gateway task role to reading the fleet secrets (and allowlist objects, serverless-allowlist.test.ts)', () => {
      const statements = roleStatements(template, 'TaskRole').filter(
        (s) => s.Sid !== undefined && list(s.Action).some((a) => a.startsWith('secretsmanager:')),
      );
      expect(statements).toHaveLength(1);
      expect(list(statements[0]!.Action).sort()).toEqual([
        'secretsmanager:DescribeSecret',
        'secretsmanager:GetSecretValue',
        'secretsmanager:ListSecretVersionIds',
      ]);
      expect(statements[0]!.Resource).toEqual({ 'Fn::Sub': FLEET_SECRETS_ARN });
    });

    it('scopes ECS calls to the fleet cluster and service and PutEvents to the bus', () => {
      for (const { owner, statement } of allStatements(template)) {
        const actions = list(statement.Action);
        if (actions.some((a) => a === 'ecs:ListTasks' || a === 'ecs:DescribeTasks')) {
          expect(JSON.stringify(statement.Condition?.ArnEquals?.['ecs:cluster']), owner).toContain(
            `:cluster/portcullis-${STAGE}-main`,
          );
        }
        if (actions.some((a) => a === 'ecs:UpdateService' || a === 'ecs:DescribeServices')) {
          expect(JSON.stringify(statement.Resource), owner).toContain(
            `:service/portcullis-${STAGE}-main/gateway`,
          );
        }
        if (actions.includes('events:PutEvents')) {
          expect(JSON.stringify(statement.Resource), owner).toContain(':event-bus/default');
        }
      }
    });
  });

  describe('gateway fleet', () => {
    it('turns Container Insights on for the cluster', () => {
      expect(props<{ ClusterSettings: unknown[] }>(template, 'GatewayCluster').ClusterSettings).toEqual([
        { Name: 'containerInsights', Value: 'enabled' },
      ]);
    });

    it('starts HAProxy with exactly haproxyArgs(), only after the sidecar is healthy', () => {
      const td = props<{
        ContainerDefinitions: Record<string, unknown>[];
        RuntimePlatform: { CpuArchitecture: string };
      }>(template, 'GatewayTaskDefinition');
      expect(td.RuntimePlatform.CpuArchitecture).toBe('ARM64');
      const gateway = td.ContainerDefinitions.find((c) => c.Name === 'gateway')!;
      expect(gateway.Command).toEqual(haproxyArgs(containerLayout()));
      expect(gateway.DependsOn).toEqual([{ ContainerName: 'sidecar', Condition: 'HEALTHY' }]);
      // One exact release (x.y.z), the stock image unmodified; by default straight from public.ecr.aws.
      expect(resolveIf(gateway.Image, evaluateConditions(template))).toMatch(
        /^public\.ecr\.aws\/docker\/library\/haproxy:\d+\.\d+\.\d+$/,
      );
    });

    it('health-checks the sidecar on its /healthz admin endpoint', () => {
      const td = props<{ ContainerDefinitions: Record<string, unknown>[] }>(
        template,
        'GatewayTaskDefinition',
      );
      const sidecar = td.ContainerDefinitions.find((c) => c.Name === 'sidecar')!;
      const command = (sidecar.HealthCheck as { Command: string[] }).Command;
      expect(command[0]).toBe('CMD');
      expect(command.join(' ')).toContain('http://127.0.0.1:9901/healthz');
    });

    it('hands the sidecar a configuration file its own loader accepts, written before it starts', async () => {
      const td = props<{ ContainerDefinitions: Record<string, unknown>[] }>(
        template,
        'GatewayTaskDefinition',
      );
      const sidecar = td.ContainerDefinitions.find((c) => c.Name === 'sidecar')!;
      const writer = td.ContainerDefinitions.find((c) => c.Name === 'sidecar-config')!;
      expect(sidecar.Command).toEqual(['sidecar', '--config', '/etc/portcullis/sidecar.json']);
      expect(sidecar.DependsOn).toEqual([{ ContainerName: 'sidecar-config', Condition: 'SUCCESS' }]);
      expect(sidecar.MountPoints).toContainEqual({
        SourceVolume: 'sidecar-config',
        ContainerPath: '/etc/portcullis',
        ReadOnly: true,
      });
      expect(writer.Essential).toBe(false);
      expect(writer.Image).toBe(sidecar.Image);
      expect(writer.MountPoints).toEqual([
        { SourceVolume: 'sidecar-config', ContainerPath: '/etc/portcullis', ReadOnly: false },
      ]);
      expect(String((writer.Command as string[]).at(-1))).toContain("'/etc/portcullis/sidecar.json'");
      const text = resolveIf(
        (writer.Environment as { Name: string; Value: unknown }[]).find(
          (e) => e.Name === 'PORTCULLIS_SIDECAR_CONFIG',
        )!.Value,
        evaluateConditions(template),
      ) as string;
      // Run the writer's own command with node, pointed at a temporary directory, and load the
      // file the way `portcullis sidecar --config` does.
      const dir = join(packaged.root, 'etc-portcullis');
      await mkdir(dir);
      const script = String((writer.Command as string[]).at(-1)).replaceAll('/etc/portcullis', dir);
      await execFileAsync(process.execPath, ['-e', script], {
        env: { PATH: process.env.PATH, PORTCULLIS_SIDECAR_CONFIG: text },
        timeout: 30_000,
      });
      const config = await loadSidecarConfig(join(dir, 'sidecar.json'));
      expect(parseSidecarConfig(JSON.parse(text))).toEqual(config);
      expect(config.store).toEqual({ kind: 'aws', region: 'eu-west-1' });
      expect(config.fleetConfig).toEqual({ secretId: 'portcullis/main/fleet-config' });
      expect(config.gatewayDir).toBe(containerLayout().root);
      expect(config.admin).toEqual({ host: '0.0.0.0', port: 9901 });
    });

    it('runs both containers non-root, unprivileged, read-only, sharing one volume and logging with retention', () => {
      const td = props<{ ContainerDefinitions: Record<string, unknown>[] }>(
        template,
        'GatewayTaskDefinition',
      );
      expect(td.ContainerDefinitions.map((c) => c.Name).sort()).toEqual([
        'gateway',
        'sidecar',
        'sidecar-config',
      ]);
      for (const container of td.ContainerDefinitions) {
        const name = String(container.Name);
        expect(container.User, name).toMatch(/^[1-9]\d*(:[1-9]\d*)?$/);
        expect(container.ReadonlyRootFilesystem, name).toBe(true);
        expect(container.Privileged, name).toBe(false);
        expect(
          (container.LinuxParameters as { Capabilities: { Drop: string[] } }).Capabilities.Drop,
          name,
        ).toEqual(['ALL']);
        if (name !== 'sidecar-config') {
          expect(container.MountPoints, name).toContainEqual({
            SourceVolume: 'gateway-state',
            ContainerPath: containerLayout().root,
            ReadOnly: false,
          });
        }
        const logGroup = (container.LogConfiguration as { Options: { 'awslogs-group': { Ref: string } } })
          .Options['awslogs-group'].Ref;
        expect(props<{ RetentionInDays: number }>(template, logGroup).RetentionInDays, name).toBe(30);
      }
    });

    it('forwards with PROXY protocol v2 and a deliberate deregistration delay to IP targets', () => {
      const groups = ofType(template, 'AWS::ElasticLoadBalancingV2::TargetGroup');
      expect(groups.map(([id]) => id).sort()).toEqual([
        'InternalHttpTargetGroup',
        'InternalTlsTargetGroup',
        'PublicHttpTargetGroup',
        'PublicTlsTargetGroup',
      ]);
      for (const [id, group] of groups) {
        const p = group.Properties as {
          TargetType: string;
          Protocol: string;
          HealthCheckProtocol: string;
          HealthCheckPort: string;
          HealthCheckPath: string;
          TargetGroupAttributes: { Key: string; Value: string }[];
        };
        const attributes = Object.fromEntries(p.TargetGroupAttributes.map((a) => [a.Key, a.Value]));
        expect(p.TargetType, id).toBe('ip');
        expect(p.Protocol, id).toBe('TCP');
        expect(attributes['proxy_protocol_v2.enabled'], id).toBe('true');
        expect(attributes['preserve_client_ip.enabled'], id).toBe('false');
        expect(attributes['deregistration_delay.timeout_seconds'], id).toBe('120');
        expect(p.HealthCheckProtocol, id).toBe('HTTP');
        expect(p.HealthCheckPort, id).toBe('8081');
        expect(p.HealthCheckPath, id).toBe('/healthz');
      }
    });

    it('listens on TCP 443 and 80 and registers the gateway container behind every existing target group', () => {
      const listeners = ofType(template, 'AWS::ElasticLoadBalancingV2::Listener').map(
        ([, r]) => (r.Properties as { Port: number; Protocol: string }).Port,
      );
      expect(listeners.sort()).toEqual([443, 443, 80, 80]);
      const service = props<{ LoadBalancers: unknown[] }>(template, 'GatewayService');
      expect(JSON.stringify(service.LoadBalancers)).toContain('"ContainerPort":"8443"');
      expect(JSON.stringify(service.LoadBalancers)).toContain('"ContainerPort":"8080"');
    });

    it('creates only the internet-facing NLB by default', () => {
      const conditions = evaluateConditions(template);
      expect(conditions).toMatchObject({
        CreatePublicNlb: true,
        CreateInternalNlb: false,
        IsDualStack: false,
        HasLatticeServiceNetwork: false,
        ExecuteCommandEnabled: false,
      });
      expect(resource(template, 'PublicLoadBalancer').Condition).toBe('CreatePublicNlb');
      expect(resource(template, 'InternalLoadBalancer').Condition).toBe('CreateInternalNlb');
      expect(resource(template, 'LatticeServiceNetworkAssociation').Condition).toBe(
        'HasLatticeServiceNetwork',
      );
    });

    it('opens the tasks to the NLB on the data and health ports and to the control plane on admin and verification only', () => {
      const ingress = ofType(template, 'AWS::EC2::SecurityGroupIngress')
        .map(
          ([, r]) =>
            r.Properties as {
              GroupId: { Ref: string };
              FromPort: number;
              ToPort: number;
              SourceSecurityGroupId?: { Ref: string };
            },
        )
        .filter((p) => p.GroupId.Ref === 'TaskSecurityGroup');
      const bySource = (source: string) =>
        ingress
          .filter((p) => p.SourceSecurityGroupId?.Ref === source)
          .map((p) => `${p.FromPort}-${p.ToPort}`)
          .sort();
      expect(bySource('NlbSecurityGroup')).toEqual(['8080-8080', '8081-8081', '8443-8443']);
      expect(bySource('ControlPlaneSecurityGroup')).toEqual(['8444-8444', '9901-9901']);
      expect(ingress.every((p) => p.SourceSecurityGroupId !== undefined)).toBe(true);
      const task = props<{ SecurityGroupIngress?: unknown }>(template, 'TaskSecurityGroup');
      expect(task.SecurityGroupIngress).toBeUndefined();
    });

    it('lets the control-plane functions reach the tasks on admin and verification only, and AWS APIs on 443', () => {
      const sg = props<{ SecurityGroupEgress: { FromPort: number; ToPort: number; CidrIp: string }[] }>(
        template,
        'ControlPlaneSecurityGroup',
      );
      expect(sg.SecurityGroupEgress.map((r) => [r.FromPort, r.ToPort, r.CidrIp])).toEqual([
        [443, 443, '0.0.0.0/0'],
      ]);
      const toTasks = ofType(template, 'AWS::EC2::SecurityGroupEgress')
        .map(
          ([, r]) =>
            r.Properties as {
              GroupId: { Ref: string };
              FromPort: number;
              ToPort: number;
              DestinationSecurityGroupId: { Ref: string };
            },
        )
        .filter((p) => p.GroupId.Ref === 'ControlPlaneSecurityGroup');
      expect(toTasks.every((p) => p.DestinationSecurityGroupId.Ref === 'TaskSecurityGroup')).toBe(true);
      expect(toTasks.map((p) => `${p.FromPort}-${p.ToPort}`).sort()).toEqual(['8444-8444', '9901-9901']);
    });

    it('maps the verification port on the gateway container, and registers only the data ports with the NLBs', () => {
      const td = props<{ ContainerDefinitions: Record<string, unknown>[] }>(
        template,
        'GatewayTaskDefinition',
      );
      const gateway = td.ContainerDefinitions.find((c) => c.Name === 'gateway')!;
      expect(gateway.PortMappings).toEqual([
        { ContainerPort: '8443', Protocol: 'tcp', Name: 'tls' },
        { ContainerPort: '8080', Protocol: 'tcp', Name: 'http' },
        { ContainerPort: '8081', Protocol: 'tcp', Name: 'health' },
        { ContainerPort: '8444', Protocol: 'tcp', Name: 'verify' },
      ]);
      const service = props<{ LoadBalancers: unknown[] }>(template, 'GatewayService');
      expect(JSON.stringify(service.LoadBalancers)).not.toContain('"ContainerPort":"8444"');
    });

    it('admits clients to the NLB on 443 and 80 only', () => {
      const nlb = props<{ SecurityGroupIngress: { FromPort: number; ToPort: number; CidrIp: string }[] }>(
        template,
        'NlbSecurityGroup',
      );
      expect(nlb.SecurityGroupIngress.map((r) => [r.FromPort, r.ToPort, r.CidrIp])).toEqual([
        [443, 443, '0.0.0.0/0'],
        [80, 80, '0.0.0.0/0'],
      ]);
    });

    it('rolls with a circuit breaker that rolls back, and ECS Exec off', () => {
      const service = props<{
        DeploymentConfiguration: {
          MinimumHealthyPercent: number;
          MaximumPercent: number;
          DeploymentCircuitBreaker: { Enable: boolean; Rollback: boolean };
        };
        EnableExecuteCommand: unknown;
        LaunchType: string;
        DesiredCount: string;
      }>(template, 'GatewayService');
      expect(service.DeploymentConfiguration).toEqual({
        MinimumHealthyPercent: 100,
        MaximumPercent: 200,
        DeploymentCircuitBreaker: { Enable: true, Rollback: true },
      });
      expect(service.EnableExecuteCommand).toEqual({ 'Fn::If': ['ExecuteCommandEnabled', true, false] });
      expect(service.LaunchType).toBe('FARGATE');
    });

    it('creates the service without tasks until the fleet secrets exist, asking at every deploy', () => {
      // The counts come from the FleetReadiness custom resource (functions/fleet-readiness.ts,
      // tested in fleet-readiness.test.ts): 0 tasks and 0..0 autoscaling before init.
      const service = props<{ DesiredCount: unknown }>(template, 'GatewayService');
      expect(service.DesiredCount).toEqual({ 'Fn::GetAtt': ['FleetReadiness', 'DesiredCount'] });
      const target = props<{ MinCapacity: unknown; MaxCapacity: unknown }>(template, 'GatewayScalableTarget');
      expect(target.MinCapacity).toEqual({ 'Fn::GetAtt': ['FleetReadiness', 'MinCapacity'] });
      expect(target.MaxCapacity).toEqual({ 'Fn::GetAtt': ['FleetReadiness', 'MaxCapacity'] });
      const readiness = template.Resources.FleetReadiness!;
      expect(readiness.Type).toBe('Custom::FleetReadiness');
      const p = readiness.Properties as Record<string, unknown>;
      expect(p).toMatchObject({
        ServiceToken: { 'Fn::GetAtt': ['FleetReadinessLambdaFunction', 'Arn'] },
        Fleet: 'main',
        FleetConfigSecretId: 'portcullis/main/fleet-config',
        DesiredCount: '3',
        MinCapacity: '3',
        MaxCapacity: '9',
      });
      // A lost answer fails the deploy within minutes, not CloudFormation's default hour; the
      // function's own deadline (its timeout) comes first.
      expect(Number(p.ServiceTimeout)).toBeGreaterThan(
        props<{ Timeout: number }>(template, 'FleetReadinessLambdaFunction').Timeout,
      );
      expect(Number(p.ServiceTimeout)).toBeLessThanOrEqual(3600);
      // A property new at every packaging, so that CloudFormation runs the check at every deploy.
      expect(typeof p.Deployment).toBe('string');
      expect(p.Deployment).not.toBe('');
      // Reads the fleet's secrets, writes nothing.
      const actions = roleStatements(template, 'FleetReadinessRole').flatMap((st) => list(st.Action));
      expect(actions.filter((a) => String(a).startsWith('secretsmanager:')).sort()).toEqual([
        'secretsmanager:DescribeSecret',
        'secretsmanager:GetSecretValue',
        'secretsmanager:ListSecretVersionIds',
      ]);
      // The stack never creates the secrets (`portcullis init` does), and the tasks read exactly
      // the ones init creates: the fleet config under the fleet's prefix, which names the rest.
      expect(ofType(template, 'AWS::SecretsManager::Secret')).toEqual([]);
      const td = props<{ ContainerDefinitions: Record<string, unknown>[] }>(
        template,
        'GatewayTaskDefinition',
      );
      const writer = td.ContainerDefinitions.find((c) => c.Name === 'sidecar-config')!;
      const env = (writer.Environment as { Name: string; Value: string }[]).find(
        (e) => e.Name === 'PORTCULLIS_SIDECAR_CONFIG',
      )!;
      expect(JSON.parse(resolveIf(env.Value, evaluateConditions(template)) as string).fleetConfig).toEqual({
        secretId: 'portcullis/main/fleet-config',
      });
    });

    it('creates no VPC endpoint and no pull-through cache by default, and runs HAProxy 3.2.0 from public.ecr.aws', () => {
      const conditions = evaluateConditions(template);
      expect(conditions).toMatchObject({
        CreateVpcEndpoints: false,
        CreateS3GatewayEndpoint: false,
        UsePullThroughCache: false,
        CreatePullThroughCacheRule: false,
      });
      expect(endpointServices(template, conditions)).toEqual([]);
      const td = resolveIf(props(template, 'GatewayTaskDefinition'), conditions) as {
        ContainerDefinitions: { Name: string; Image: unknown }[];
      };
      expect(td.ContainerDefinitions.find((c) => c.Name === 'gateway')!.Image).toBe(
        'public.ecr.aws/docker/library/haproxy:3.2.0',
      );
    });

    it('keeps idle TCP flows on every NLB listener at least as long as HAProxy keeps an idle tunnel', async () => {
      const listeners = ofType(template, 'AWS::ElasticLoadBalancingV2::Listener');
      expect(listeners).toHaveLength(4);
      const idle = new Set<number>();
      for (const [id, listener] of listeners) {
        const p = listener.Properties as {
          Protocol: string;
          ListenerAttributes: { Key: string; Value: string }[];
        };
        // tcp.idle_timeout.seconds exists on TCP listeners only (a TLS listener's is fixed at 350 s).
        expect(p.Protocol, id).toBe('TCP');
        const attribute = p.ListenerAttributes.find((a) => a.Key === 'tcp.idle_timeout.seconds');
        expect(attribute, id).toBeDefined();
        idle.add(Number(attribute!.Value));
      }
      expect(idle.size).toBe(1);
      const [seconds] = [...idle];
      // The attribute's documented range is 60-6000 s (default 350).
      expect(Number.isInteger(seconds)).toBe(true);
      expect(seconds).toBeGreaterThanOrEqual(60);
      expect(seconds).toBeLessThanOrEqual(6000);
      // What HAProxy renders for the documented example and for the schema default.
      const example = await loadFleetConfig(join(REPO, 'examples', 'lattice-fleet.yaml'));
      const cfg = Object.entries(renderGateway(example, { layout: containerLayout() }).files).find(([name]) =>
        name.endsWith('haproxy.cfg'),
      )![1].content;
      const tunnel = /^\s*timeout tunnel (\d+)ms$/m.exec(cfg);
      expect(tunnel).not.toBeNull();
      expect(Number(tunnel![1]) / 1000).toBeLessThanOrEqual(seconds!);
      expect(LimitsSchema.parse({}).tunnelTimeoutMs / 1000).toBeLessThanOrEqual(seconds!);
      // The schema lets a fleet raise it beyond what any NLB keeps; docs/deploy.md says to keep
      // limits.tunnelTimeoutMs ≤ tcpIdleTimeoutSeconds.
    });

    it('tracks 70 % average CPU, between 3 and 9 tasks once the secrets exist', () => {
      const target = props<{ MinCapacity: unknown; MaxCapacity: unknown; ScalableDimension: string }>(
        template,
        'GatewayScalableTarget',
      );
      expect(target).toMatchObject({
        MinCapacity: { 'Fn::GetAtt': ['FleetReadiness', 'MinCapacity'] },
        MaxCapacity: { 'Fn::GetAtt': ['FleetReadiness', 'MaxCapacity'] },
        ScalableDimension: 'ecs:service:DesiredCount',
      });
      const policy = props<{
        PolicyType: string;
        ScalingTargetId: unknown;
        TargetTrackingScalingPolicyConfiguration: {
          TargetValue: string;
          PredefinedMetricSpecification: { PredefinedMetricType: string };
        };
      }>(template, 'GatewayCpuScalingPolicy');
      expect(policy.PolicyType).toBe('TargetTrackingScaling');
      expect(policy.ScalingTargetId).toEqual({ Ref: 'GatewayScalableTarget' });
      expect(policy.TargetTrackingScalingPolicyConfiguration.TargetValue).toBe('70');
      expect(
        policy.TargetTrackingScalingPolicyConfiguration.PredefinedMetricSpecification.PredefinedMetricType,
      ).toBe('ECSServiceAverageCPUUtilization');
    });
  });
});

describe('serverless.yml packaged for a later deploy with other counts into a VPC without NAT, with both NLBs, dual stack and a Lattice service network', () => {
  let packaged: PackagedService;

  beforeAll(async () => {
    packaged = await packageService({
      params: {
        deploymentMode: 'both',
        dualStack: 'true',
        latticeServiceNetworkId: 'sn-0123456789abcdef0',
        desiredCount: '6',
        minCapacity: '4',
        maxCapacity: '12',
        vpcEndpoints: 'true',
        privateRouteTableIds: 'rtb-00000000000000001,rtb-00000000000000002',
        ecrPullThroughPrefix: 'ecr-public',
        enableExecuteCommand: 'true',
      },
      timeoutMs: 150_000,
    });
  }, 180_000);

  it('asks the readiness check for the configured counts, again at this deploy', () => {
    const p = props<Record<string, unknown>>(packaged.template, 'FleetReadiness');
    expect(p).toMatchObject({ DesiredCount: '6', MinCapacity: '4', MaxCapacity: '12' });
    // Another packaging, another Deployment value: CloudFormation updates the resource, so the
    // check runs again (the deploy after init starts the tasks without any parameter).
    expect(p.Deployment).not.toBe(firstDeployment);
  });

  it('creates an interface endpoint for every AWS API the tasks and the VPC functions call, and the S3 gateway for image layers', () => {
    const { template } = packaged;
    const conditions = evaluateConditions(template);
    // Lambda ships a function's logs and X-Ray segments and manages its ENIs itself, outside the
    // function's network interface: those calls need no route from the VPC.
    const outsideVpc = new Set(['logs', 'xray', 'ec2']);
    const needed = new Set<string>();
    for (const key of VPC_FUNCTIONS) {
      for (const statement of roleStatements(template, `${pascal(key)}Role`)) {
        for (const action of list(statement.Action)) {
          const service = action.split(':')[0]!;
          if (!outsideVpc.has(service)) needed.add(service);
        }
      }
    }
    // The task's containers (the sidecar; ECS Exec's channel), and what ECS does for the task
    // with its execution role: image pull (ECR API and registry) and the awslogs driver.
    for (const role of ['TaskRole', 'TaskExecutionRole']) {
      for (const statement of roleStatements(template, role)) {
        // A key used only through S3 (kms:ViaService) is called by S3, not from the task.
        if (statement.Condition?.StringEquals?.['kms:ViaService'] !== undefined) continue;
        for (const action of list(statement.Action)) {
          const service = action.split(':')[0]!;
          for (const endpoint of service === 'ecr' ? ['ecr.api', 'ecr.dkr'] : [service]) needed.add(endpoint);
        }
      }
    }
    expect([...needed].sort()).toEqual([
      'acm-pca',
      'ecr.api',
      'ecr.dkr',
      'ecs',
      'logs',
      // Allowlist objects, through the S3 gateway endpoint like the image layers.
      's3',
      'secretsmanager',
      'ssmmessages',
    ]);
    expect(endpointServices(template, conditions)).toEqual([...new Set([...needed, 's3'])].sort());

    const interfaces = Object.entries(created(template, conditions)).filter(
      ([, r]) =>
        r.Type === 'AWS::EC2::VPCEndpoint' &&
        (r.Properties as { VpcEndpointType: string }).VpcEndpointType === 'Interface',
    );
    // Amazon VPC quota: 50 interface endpoints per VPC by default; leave the VPC most of it.
    expect(interfaces.length).toBeLessThanOrEqual(10);
    for (const [id, endpoint] of interfaces) {
      expect(endpoint.Properties, id).toMatchObject({
        PrivateDnsEnabled: true,
        VpcId: 'vpc-00000000000000000',
        SecurityGroupIds: [{ Ref: 'VpcEndpointSecurityGroup' }],
        SubnetIds: {
          'Fn::Split': [',', 'subnet-00000000000000001,subnet-00000000000000002,subnet-00000000000000003'],
        },
      });
    }
    expect(props(template, 'S3GatewayEndpoint')).toMatchObject({
      VpcEndpointType: 'Gateway',
      RouteTableIds: { 'Fn::Split': [',', 'rtb-00000000000000001,rtb-00000000000000002'] },
    });
    // The tasks start only once the endpoints they pull and log through exist.
    const prerequisites = JSON.stringify(
      resolveIf(resource(template, 'ServicePrerequisites').Metadata, conditions),
    );
    for (const id of [
      'SecretsManagerEndpoint',
      'EcrApiEndpoint',
      'EcrDockerEndpoint',
      'LogsEndpoint',
      'S3GatewayEndpoint',
    ]) {
      expect(prerequisites, id).toContain(`{"Ref":"${id}"}`);
    }
  });

  it('admits HTTPS to the endpoints from the tasks and the control-plane functions only', () => {
    const sg = props<{
      SecurityGroupIngress: {
        FromPort: number;
        ToPort: number;
        SourceSecurityGroupId?: { Ref: string };
        CidrIp?: string;
      }[];
    }>(packaged.template, 'VpcEndpointSecurityGroup');
    expect(
      sg.SecurityGroupIngress.map((r) => [r.FromPort, r.ToPort, r.SourceSecurityGroupId?.Ref, r.CidrIp]),
    ).toEqual([
      [443, 443, 'TaskSecurityGroup', undefined],
      [443, 443, 'ControlPlaneSecurityGroup', undefined],
    ]);
  });

  it('pulls HAProxy through a pull-through cache rule of this account, with only the import rights the first pull needs', () => {
    const { template } = packaged;
    const conditions = evaluateConditions(template);
    expect(conditions).toMatchObject({ UsePullThroughCache: true, CreatePullThroughCacheRule: true });
    const rule = props<{ EcrRepositoryPrefix: string; UpstreamRegistryUrl: string }>(
      template,
      'HaproxyImagePullThroughCacheRule',
    );
    expect(rule.UpstreamRegistryUrl).toBe('public.ecr.aws');
    // ECR: a repository prefix is 2-30 characters of lowercase letters, digits and ._-/ separators.
    expect(rule.EcrRepositoryPrefix).toMatch(/^(?=.{2,30}$)[a-z0-9]+(?:[._/-][a-z0-9]+)*$/);

    const td = resolveIf(props(template, 'GatewayTaskDefinition'), conditions) as {
      ContainerDefinitions: { Name: string; Image: unknown }[];
    };
    const image = td.ContainerDefinitions.find((c) => c.Name === 'gateway')!.Image as {
      'Fn::Sub': [string, { UpstreamPath: { 'Fn::Select': [number, { 'Fn::Split': [string, string] }] } }];
    };
    const [pattern, vars] = image['Fn::Sub'];
    const select = vars.UpstreamPath['Fn::Select'];
    const path = select[1]['Fn::Split'][1].split(select[1]['Fn::Split'][0])[select[0]];
    expect(pattern).toBe(
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a CloudFormation Fn::Sub string
      '${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/ecr-public/${UpstreamPath}',
    );
    expect(path).toBe('docker/library/haproxy:3.2.0');

    const pull = roleStatements(template, 'TaskExecutionRole').find((s) => s.Sid === 'PullThroughCache')!;
    expect(list(pull.Action).sort()).toEqual(['ecr:BatchImportUpstreamImage', 'ecr:CreateRepository']);
    expect(pull.Resource).toEqual({
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a CloudFormation Fn::Sub string
      'Fn::Sub': 'arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/ecr-public/*',
    });
  });

  afterAll(async () => {
    await packaged?.cleanup();
  });

  it('creates both NLBs, dual-stack, with IPv6 client rules and the Lattice association', () => {
    const { template } = packaged;
    expect(evaluateConditions(template)).toMatchObject({
      CreatePublicNlb: true,
      CreateInternalNlb: true,
      IsDualStack: true,
      HasLatticeServiceNetwork: true,
    });
    expect(
      props<{ ServiceNetworkIdentifier: string }>(template, 'LatticeServiceNetworkAssociation'),
    ).toMatchObject({
      ServiceNetworkIdentifier: 'sn-0123456789abcdef0',
    });
    expect(resource(template, 'NlbIngressTlsIpv6').Condition).toBe('IsDualStack');
  });
});
