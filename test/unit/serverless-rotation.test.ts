/**
 * The rotation's two machines in the packaged stack (`sls package`, offline): rotate-certificates
 * starts rotate-certificate per certificate with `startExecution.sync:2`, so its role may start,
 * describe and stop exactly that machine's executions and manage the EventBridge rule Step
 * Functions uses to learn that a child ended; the batch function has the tasks' reads only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { list, roleStatements, type Statement } from '../deploy/iam.ts';
import { type CfnTemplate, type PackagedService, packageService } from '../deploy/package.ts';

const STAGE = 'ci';

function roleOf(template: CfnTemplate, stateMachineId: string): string {
  const arn = template.Resources[stateMachineId]!.Properties!.RoleArn as { 'Fn::GetAtt': [string, string] };
  return arn['Fn::GetAtt'][0];
}

/** The actions granted on a resource whose JSON contains `needle`. */
function actionsOn(statements: Statement[], needle: string): string[] {
  return statements
    .filter((s) => s.Effect === 'Allow' && JSON.stringify(s.Resource).includes(needle))
    .flatMap((s) => list(s.Action));
}

describe('rotation machines in the packaged stack', () => {
  let packaged: PackagedService;
  let template: CfnTemplate;

  beforeAll(async () => {
    packaged = await packageService({ stage: STAGE, timeoutMs: 150_000 });
    template = packaged.template;
  }, 180_000);
  afterAll(async () => {
    await packaged?.cleanup();
  });

  it('deploys rotate-certificate beside rotate-certificates, logging to its own log group', () => {
    const child = template.Resources.RotateCertificateStateMachine;
    expect(child?.Type).toBe('AWS::StepFunctions::StateMachine');
    const props = child!.Properties as {
      StateMachineName: string;
      LoggingConfiguration: { Destinations: { CloudWatchLogsLogGroup: { LogGroupArn: unknown } }[] };
    };
    expect(props.StateMachineName).toBe(`portcullis-${STAGE}-main-rotate-certificate`);
    expect(JSON.stringify(props.LoggingConfiguration.Destinations)).toContain(
      'RotateCertificateStateMachineLogGroup',
    );
    expect(template.Resources.RotateCertificateStateMachineLogGroup?.Type).toBe('AWS::Logs::LogGroup');
  });

  it('lets rotate-certificates start, describe and stop rotate-certificate executions and manage the .sync events rule', () => {
    const statements = roleStatements(template, roleOf(template, 'RotateCertificatesStateMachine'));
    const start = statements.filter((s) => list(s.Action).includes('states:StartExecution'));
    expect(start).toHaveLength(1);
    expect(JSON.stringify(start[0]!.Resource)).toContain('RotateCertificateStateMachine');
    // Describe and stop: the child machine's executions only, never any resource.
    const follow = statements.filter((s) =>
      list(s.Action).some((a) => /^states:(Describe|Stop)Execution$/.test(a)),
    );
    expect(follow).toHaveLength(1);
    expect(list(follow[0]!.Action).sort()).toEqual(['states:DescribeExecution', 'states:StopExecution']);
    expect(follow[0]!.Resource).toEqual({
      'Fn::Sub':
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a CloudFormation Fn::Sub string
        'arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:${RotateCertificateStateMachine.Name}:*',
    });
    // Only log delivery and X-Ray, which have no resource-level permissions, go on '*'.
    for (const statement of statements.filter((s) => JSON.stringify(s.Resource).includes('"*"')))
      for (const action of list(statement.Action)) expect(action).toMatch(/^(logs|xray):/);
    const rule = actionsOn(statements, 'rule/StepFunctionsGetEventsForStepFunctionsExecutionRule');
    expect(rule.sort()).toEqual(['events:DescribeRule', 'events:PutRule', 'events:PutTargets']);
    // It invokes only what it runs itself: the plan, the rollback of a stopped child, the notice.
    const invoked = actionsOn(statements, 'LambdaFunction');
    expect(invoked.every((a) => a === 'lambda:InvokeFunction')).toBe(true);
    const functions = JSON.stringify(
      statements.filter((s) => list(s.Action).includes('lambda:InvokeFunction')),
    );
    for (const id of ['PlanRotation', 'RollbackRotation', 'Notify'])
      expect(functions).toContain(`${id}LambdaFunction`);
    expect(functions).not.toContain('UpdateTasksLambdaFunction');
  });

  it('lets rotate-certificate invoke the batch function, which runs in the VPC for 600 s with the tasks read-only', () => {
    const childStatements = roleStatements(template, roleOf(template, 'RotateCertificateStateMachine'));
    expect(JSON.stringify(childStatements)).toContain('UpdateTasksLambdaFunction');
    const fn = template.Resources.UpdateTasksLambdaFunction!.Properties as {
      Timeout: number;
      VpcConfig?: unknown;
      Role: unknown;
    };
    expect(fn.Timeout).toBe(600);
    expect(fn.VpcConfig).toBeDefined();
    const actions = roleStatements(template, 'UpdateTasksRole').flatMap((s) => list(s.Action));
    expect(actions).toEqual(expect.arrayContaining(['ecs:ListTasks', 'ecs:DescribeTasks']));
    expect(actions.filter((a) => /^(secretsmanager:(Put|Update|Create|Delete)|ecs:Update)/.test(a))).toEqual(
      [],
    );
  });
});
