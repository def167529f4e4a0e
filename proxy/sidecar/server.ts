/**
 * The sidecar's admin HTTP API, thin over callbacks: `GET /healthz`, `GET /v1/status`,
 * `GET /metrics`, `POST /v1/nudge`. Bodies are bounded; errors are `{ error: { name, message } }`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { NudgeHeaders } from '../../lib/secrets/index.ts';

/** What a handler answers: status code and a JSON-able body (or text for metrics). */
export interface Reply {
  statusCode: number;
  body: unknown;
  contentType?: string;
}

export interface AdminHandlers {
  healthy(): boolean;
  status(): unknown;
  metrics(): Promise<string>;
  nudge(
    headers: { timestamp: string | undefined; signature: string | undefined },
    body: string,
  ): Promise<Reply>;
}

export interface AdminServer {
  readonly port: number;
  readonly host: string;
  close(): Promise<void>;
}

function send(res: ServerResponse, reply: Reply): void {
  const text =
    typeof reply.body === 'string' && reply.contentType !== undefined
      ? reply.body
      : JSON.stringify(reply.body);
  res.writeHead(reply.statusCode, {
    'content-type': reply.contentType ?? 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

export function errorReply(statusCode: number, name: string, message: string): Reply {
  return { statusCode, body: { error: { name, message } } };
}

function readBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        // Stop keeping it; the rest is drained by Node, and the 413 closes the connection.
        req.removeAllListeners('data');
        req.resume();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Starts the admin API on `host:port` (0 = any free port). */
export async function startAdminServer(
  host: string,
  port: number,
  handlers: AdminHandlers,
  options: { maxBodyBytes: number; onError?: (error: unknown) => void },
): Promise<AdminServer> {
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/healthz') {
      const ok = handlers.healthy();
      send(res, { statusCode: ok ? 200 : 503, body: ok ? 'ok\n' : 'not-ready\n', contentType: 'text/plain' });
      return;
    }
    if (req.method === 'GET' && path === '/v1/status') {
      send(res, { statusCode: 200, body: handlers.status() });
      return;
    }
    if (req.method === 'GET' && path === '/metrics') {
      send(res, {
        statusCode: 200,
        body: await handlers.metrics(),
        contentType: 'text/plain; version=0.0.4',
      });
      return;
    }
    if (path === '/v1/nudge') {
      if (req.method !== 'POST') {
        send(res, errorReply(405, 'MethodNotAllowed', 'POST only'));
        return;
      }
      const body = await readBody(req, options.maxBodyBytes);
      if (body === undefined) {
        res.setHeader('connection', 'close');
        send(res, errorReply(413, 'PayloadTooLarge', `a nudge is at most ${options.maxBodyBytes} bytes`));
        return;
      }
      send(
        res,
        await handlers.nudge(
          { timestamp: header(req, NudgeHeaders.timestamp), signature: header(req, NudgeHeaders.signature) },
          body,
        ),
      );
      return;
    }
    send(res, errorReply(404, 'NotFound', 'no such endpoint'));
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      options.onError?.(error);
      if (!res.headersSent) send(res, errorReply(500, 'InternalError', 'the sidecar failed to answer'));
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return {
    port: address.port,
    host,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
