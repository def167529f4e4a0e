/** Middy middlewares of our own. */
import type { MiddlewareObj, Request } from '@middy/core';
import { ValidationError } from '../../lib/errors.ts';
import { logger, metrics } from './powertools.ts';

export interface StepMiddlewareOptions {
  /** The function key, for logs and the `StepFailed` metric dimension. */
  step: string;
}

/**
 * Turns the parser's `ParseError` into `ValidationError` (the name the state machines match),
 * and logs and counts every failure by error name — the message only, never the event, which
 * might one day carry something sensitive.
 */
export function stepErrors(options: StepMiddlewareOptions): MiddlewareObj {
  const defaults = { step: 'unknown' };
  const { step } = { ...defaults, ...options };
  return {
    onError: async function stepErrorsOnError(request: Request): Promise<void> {
      const error = request.error;
      if (error instanceof Error && error.name === 'ParseError') {
        request.error = new ValidationError(`${step}: invalid input: ${error.message.split('\n')[0]}`, {
          cause: error,
        });
      }
      const name = request.error instanceof Error ? request.error.name : 'Error';
      logger.warn('step failed', { step, error: name, message: request.error?.message?.split('\n')[0] });
      metrics.addMetric(`StepFailed`, 'Count', 1);
    },
  };
}
