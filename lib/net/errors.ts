/**
 * Errors of the wire codecs. Decoders never throw (they return tagged results); encoders throw
 * these when asked to encode something the protocol cannot carry.
 */
import { ValidationError } from '../errors.ts';

/** An encoder was given a value the wire format cannot represent (bad address, oversized field). */
export class EncodeError extends ValidationError {
  constructor(message: string, options?: ErrorOptions & { path?: string }) {
    super(message, options);
    this.name = 'EncodeError';
  }
}
