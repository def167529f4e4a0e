/**
 * A CloudFormation stack's outputs (SDK v3 `DescribeStacks`): what `portcullis … --stack NAME`
 * reads instead of ARNs and names exported by hand (serverless/observability.yml lists them).
 */
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { NotFoundError, ValidationError } from '../errors.ts';
import { awsClientConfig } from './client-config.ts';
import { mapAwsError } from './errors.ts';

export interface StackOutputsOptions {
  /** Injected client (tests, another region or profile); default: one with the adapters' limits. */
  client?: CloudFormationClient;
}

/**
 * Reads output key → value of stack `stackName` (name or stack id).
 * Errors: `NotFoundError` (no such stack: CloudFormation answers `ValidationError` "does not
 * exist"), `AccessDenied`, `Throttled`, `ServiceUnavailable`, `AwsEndpointUnreachable`.
 * @example await readStackOutputs('portcullis-prod-edge') // { RotateCertificatesStateMachineArn: 'arn:…', … }
 */
export async function readStackOutputs(
  stackName: string,
  options: StackOutputsOptions = {},
): Promise<Record<string, string>> {
  const client = options.client ?? new CloudFormationClient(awsClientConfig());
  const context = { service: 'CloudFormation', operation: 'DescribeStacks', resource: stackName };
  try {
    const answer = await client.send(new DescribeStacksCommand({ StackName: stackName }));
    const stack = answer.Stacks?.[0];
    if (stack === undefined) throw new NotFoundError(`CloudFormation has no stack '${stackName}'`);
    const outputs: Record<string, string> = {};
    for (const output of stack.Outputs ?? []) {
      if (output.OutputKey !== undefined && output.OutputValue !== undefined)
        outputs[output.OutputKey] = output.OutputValue;
    }
    return outputs;
  } catch (error) {
    throw mapAwsError(error, {
      ...context,
      overrides: {
        // DescribeStacks names a missing stack with the generic ValidationError code.
        ValidationError: (message, cause) =>
          /does not exist/i.test(message)
            ? new NotFoundError(message, { cause })
            : new ValidationError(message, { cause }),
      },
    });
  } finally {
    if (options.client === undefined) client.destroy();
  }
}
