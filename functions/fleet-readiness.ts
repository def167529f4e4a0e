/**
 * Lambda entry of the `FleetReadiness` custom resource (serverless/fleet.yml): at every deploy,
 * whether the fleet's secrets exist, and so how many tasks the gateway service runs
 * (lib/workflows/fleet-readiness.ts).
 *
 * It always answers CloudFormation: a failure of the check (access denied, throttling, a bad
 * property) is a FAILED response naming the error, and the stack operation rolls back rather
 * than guess a task count; a check that would outlive the function is cut off with a FAILED
 * response before the Lambda timeout.
 */
import type { Context } from 'aws-lambda';
import {
  type CustomResourceRequest,
  type CustomResourceResult,
  parseCustomResourceRequest,
  type SendOptions,
  sendCustomResourceResponse,
} from '../lib/aws/custom-resource.ts';
import type { SecretStore } from '../lib/ports.ts';
import { errorMessage, errorName } from '../lib/workflows/common.ts';
import { fleetReadinessResource } from '../lib/workflows/fleet-readiness.ts';
import { awsPorts } from './shared/aws-ports.ts';
import { logger } from './shared/powertools.ts';

/** Time kept back from the Lambda timeout to deliver a FAILED response (ms). */
export const RESPONSE_RESERVE_MS = 5000;

export interface ReadinessHandlerOptions {
  store: () => SecretStore;
  send?: SendOptions;
}

class CheckTimedOut extends Error {
  constructor(ms: number) {
    super(`the secrets check did not finish within ${ms} ms`);
    this.name = 'CheckTimedOut';
  }
}

async function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new CheckTimedOut(ms)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The handler over the given store (tests pass a mocked SDK's store and a loopback ResponseURL). */
export function makeFleetReadinessHandler(options: ReadinessHandlerOptions) {
  return async function fleetReadinessHandler(
    event: unknown,
    context: Pick<Context, 'getRemainingTimeInMillis'>,
  ) {
    let request: CustomResourceRequest;
    try {
      request = parseCustomResourceRequest(event);
    } catch (error) {
      // Nothing to answer to: not a CloudFormation request.
      logger.error('not a custom resource request', { error: errorMessage(error) });
      throw error;
    }
    let result: CustomResourceResult;
    try {
      const budget = Math.max(1000, context.getRemainingTimeInMillis() - RESPONSE_RESERVE_MS);
      const answer = await withDeadline(
        fleetReadinessResource(options.store(), {
          requestType: request.RequestType,
          ...(request.PhysicalResourceId === undefined
            ? {}
            : { physicalResourceId: request.PhysicalResourceId }),
          properties: request.ResourceProperties,
        }),
        budget,
      );
      logger.info('fleet readiness', {
        requestType: request.RequestType,
        physicalResourceId: answer.physicalResourceId,
        data: answer.data,
        missing: answer.readiness?.missing,
        invalid: answer.readiness?.invalid.map((i) => i.secretId),
      });
      result = {
        status: 'SUCCESS',
        physicalResourceId: answer.physicalResourceId,
        reason: answer.reason,
        data: answer.data,
      };
    } catch (error) {
      logger.error('fleet readiness check failed', {
        requestType: request.RequestType,
        error: errorName(error),
      });
      result = {
        status: 'FAILED',
        // A failed Create still needs an id: CloudFormation deletes it on rollback (a no-op).
        physicalResourceId: request.PhysicalResourceId ?? `${request.LogicalResourceId}-failed`,
        reason: `${errorName(error)}: ${errorMessage(error)}`,
      };
    }
    await sendCustomResourceResponse(request, result, options.send);
    return result;
  };
}

const ports = awsPorts();
export const handler = makeFleetReadinessHandler({ store: () => ports.store });
