/**
 * `--stack NAME`: the deployed stack's outputs (serverless/observability.yml and
 * control-plane.yml) as the defaults of an AWS target, so operators pass one name instead of
 * exporting ARNs, cluster and service by hand. Explicit options and environment still win.
 */
import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { awsClientConfig } from '../../lib/aws/client-config.ts';
import { readStackOutputs } from '../../lib/aws/stack-outputs.ts';
import { ValidationError } from '../../lib/errors.ts';

/** What a stack's outputs tell an operator command. */
export interface StackSettings {
  stackName: string;
  fleet?: string;
  fleetConfigSecretId?: string;
  cluster?: string;
  service?: string;
  rotateStateMachineArn?: string;
  allowlistStateMachineArn?: string;
  convergeStateMachineArn?: string;
  eventLogGroupName?: string;
  sidecarLogGroupName?: string;
  allowlistBucket?: string;
  certificateAuthorityArn?: string;
}

/** The output keys read, by setting. */
export const STACK_OUTPUTS = {
  fleet: 'FleetName',
  fleetConfigSecretId: 'FleetConfigSecretId',
  cluster: 'ClusterName',
  service: 'ServiceName',
  rotateStateMachineArn: 'RotateCertificatesStateMachineArn',
  allowlistStateMachineArn: 'UpdateAllowlistStateMachineArn',
  convergeStateMachineArn: 'ConvergeTaskStateMachineArn',
  eventLogGroupName: 'EventLogGroupName',
  sidecarLogGroupName: 'SidecarLogGroupName',
  allowlistBucket: 'AllowlistBucketName',
  certificateAuthorityArn: 'CertificateAuthorityArn',
} as const satisfies Record<Exclude<keyof StackSettings, 'stackName'>, string>;

/** Settings from output key → value. Pure. */
export function stackSettings(stackName: string, outputs: Readonly<Record<string, string>>): StackSettings {
  const settings: StackSettings = { stackName };
  for (const [key, output] of Object.entries(STACK_OUTPUTS) as [keyof typeof STACK_OUTPUTS, string][]) {
    const value = outputs[output];
    if (value !== undefined && value !== '') settings[key] = value;
  }
  if (settings.rotateStateMachineArn === undefined)
    throw new ValidationError(
      `stack '${stackName}' has no ${STACK_OUTPUTS.rotateStateMachineArn} output: not a Portcullis stack`,
    );
  return settings;
}

/** Reads the settings of stack `stackName` with the CLI's region and profile. */
export async function readStackSettings(
  stackName: string,
  options: { region?: string; profile?: string; client?: CloudFormationClient } = {},
): Promise<StackSettings> {
  const client =
    options.client ??
    new CloudFormationClient({
      ...(options.region === undefined ? {} : { region: options.region }),
      ...(options.profile === undefined ? {} : { profile: options.profile }),
      ...awsClientConfig(),
    });
  try {
    return stackSettings(stackName, await readStackOutputs(stackName, { client }));
  } finally {
    if (options.client === undefined) client.destroy();
  }
}

/** The state machine ARN a command starts: its option, else the environment, else the stack's output. */
export function stateMachineArn(
  kind: 'rotate' | 'allowlist',
  option: unknown,
  stack: StackSettings | undefined,
): string {
  const env = kind === 'rotate' ? 'ROTATE_STATE_MACHINE_ARN' : 'ALLOWLIST_STATE_MACHINE_ARN';
  const fromStack = kind === 'rotate' ? stack?.rotateStateMachineArn : stack?.allowlistStateMachineArn;
  const arn =
    (typeof option === 'string' && option !== '' ? option : undefined) ?? process.env[env] ?? fromStack;
  if (arn === undefined || arn === '')
    throw new ValidationError(`--state-machine-arn (or ${env}, or --stack) is required on AWS`);
  return arn;
}
