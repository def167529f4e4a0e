/**
 * The only part of the runtime-API client that touches sockets: write one request to a UNIX
 * socket, half-close, read until HAProxy closes, with a deadline and a size bound.
 *
 * Half-closing is per socket: the 2.6 master CLI keeps a non-interactive connection open until
 * the client shuts down its side, while the worker CLI closes after the line by itself and, when
 * it sees the client's shutdown early, drops the commands of a long `;` line it has not read yet
 * (measured on 2.6.12 under load; see `chunkBatch` in `runtime-protocol.ts`).
 */
import { createConnection } from 'node:net';
import { RuntimeTimeout, RuntimeUnavailable } from './errors.ts';

export interface SendOptions {
  timeoutMs: number;
  /** Stop reading (and fail) beyond this many bytes of answer. */
  maxAnswerBytes: number;
  /** Shut down our side after writing (the master CLI needs it; the worker CLI must not get it). */
  halfClose?: boolean;
}

/** Sends raw request text and resolves with the raw answer ('' when HAProxy closed without one). */
export type RuntimeTransport = (socketPath: string, request: string, options: SendOptions) => Promise<string>;

/** The UNIX-socket transport. Errors: `RuntimeUnavailable` (with `code`), `RuntimeTimeout`. */
export const unixSocketTransport: RuntimeTransport = (socketPath, request, options) =>
  new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const socket = createConnection({ path: socketPath });
    const finish = (error: Error | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const timer = setTimeout(
      () => finish(new RuntimeTimeout(socketPath, options.timeoutMs)),
      options.timeoutMs,
    );
    socket.on('connect', () => (options.halfClose ? socket.end(request) : socket.write(request)));
    socket.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > options.maxAnswerBytes) {
        finish(new RuntimeUnavailable(socketPath, `answer larger than ${options.maxAnswerBytes} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    socket.on('end', () => finish(undefined));
    socket.on('close', () => finish(undefined));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // HAProxy may close its read side while a long batch is still being written (EPIPE);
      // what it answered before that is still worth reading, so only fail without an answer.
      if ((err.code === 'EPIPE' || err.code === 'ECONNRESET') && size > 0) return;
      finish(new RuntimeUnavailable(socketPath, err.message, { cause: err, code: err.code }));
    });
  });
