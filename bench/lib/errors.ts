import { PortcullisError } from '../../lib/errors.ts';

/** A benchmark could not set up or run a measurement (a process failed to start, a run saw no traffic). */
export class BenchmarkError extends PortcullisError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'BenchmarkError';
  }
}
