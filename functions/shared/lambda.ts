/** Turns a step into a Lambda handler: Powertools context, metrics and tracing, zod parsing. */
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { parser } from '@aws-lambda-powertools/parser/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import type { z } from 'zod';
import { stepErrors } from './middleware.ts';
import { logger, metrics, tracer } from './powertools.ts';

/**
 * `middy(step)` with, outside in: tracing, metrics (cold start), the Lambda context in every
 * log line (keys reset per invocation), error naming, and input parsing with `schema`.
 *
 * @example export const handler = lambdaHandler('notify', makeNotify(awsPorts()), NotifyInput);
 */
export function lambdaHandler<S extends z.ZodType, O>(
  name: string,
  step: (event: z.output<S>) => Promise<O>,
  schema: S,
): (event: unknown, context: Context) => Promise<O> {
  const handler = middy(async (event: z.output<S>) => step(event))
    .use(captureLambdaHandler(tracer))
    .use(logMetrics(metrics, { captureColdStartMetric: true }))
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .use(stepErrors({ step: name }))
    .use(parser({ schema }));
  return handler as unknown as (event: unknown, context: Context) => Promise<O>;
}
