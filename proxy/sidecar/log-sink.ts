/**
 * The gateway's access log path. HAProxy writes every log line into an in-memory ring
 * (`ring access_log` in the rendered config) whose one server is this sink, a unix stream socket
 * in the task's shared volume; the sink writes each line to the sidecar's stdout.
 *
 * Why not HAProxy's own stdout: HAProxy never blocks on a log write. With stdout a pipe (every
 * container runtime) a burst fills the pipe and each further line is dropped (`DroppedLogs`); a
 * burst of 600 refusals lost 239 of 640 lines that way. A ring keeps every line until its reader
 * has taken it; only a line that finds the ring full (`accessLog.bufferBytes`) is lost, and
 * HAProxy counts it. The sink waits for stdout to drain before it reads more, so a slow log
 * driver backs up into the ring rather than losing lines.
 *
 * Framing: RFC 6587 octet counting (`<length> <message>`, `log-proto octet-count`), so a line
 * never depends on a delimiter. Every line written is JSON: one that is not (HAProxy logs nothing
 * else, but a future release might) is wrapped as `{"component":"haproxy","message":…}`.
 *
 * Counters (the sidecar's `/metrics`, living in the sidecar so that HAProxy reloads do not reset
 * them): lines forwarded; lines lost before the sink, which HAProxy reports two ways, both
 * counted: a full ring announces "N events dropped" in the ring, with the first line it logs
 * once it has room again (not in `DroppedLogs`), and any other failed log write counts in
 * `DroppedLogs` of `show info` (summed across workers); the number of such announcements (ring
 * overflows); and refusals by listener
 * and reason, read from the lines' `refusal` field. Measured on 2.6.12 and 3.2.0, the
 * announcements of a long overflow add up to far fewer lines than were lost (most say "1 event
 * dropped"), so the dropped counter is a lower bound and any overflow is the signal to alarm on:
 * the ring (`accessLog.bufferBytes`) only overflows while the sidecar reads nothing for as long
 * as HAProxy needs to fill it (16 MiB: about 35 000 lines).
 */
import { chmod, mkdir, unlink } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { CONNECTION_REFUSAL, FRONTEND, HTTP_REFUSAL, REFUSAL } from '../haproxy/render.ts';
import { TERMINATE, TERMINATE_REFUSAL } from '../haproxy/render-terminate.ts';
import {
  type MetricFamily,
  type MetricsContributor,
  type MetricsRegistry,
  ReloadSafeCounters,
} from './metrics.ts';

/** Every reason a gateway line can carry in `refusal`; anything else is counted as `other`. */
export const KNOWN_REFUSALS: ReadonlySet<string> = new Set([
  ...Object.values(REFUSAL),
  ...Object.values(HTTP_REFUSAL),
  ...Object.values(CONNECTION_REFUSAL),
  ...Object.values(TERMINATE_REFUSAL),
  'tls-handshake-failed',
]);

const KNOWN_FRONTENDS: ReadonlySet<string> = new Set([...Object.values(FRONTEND), TERMINATE.frontend]);

/** The longest frame accepted (HAProxy's lines are at most `LOG_LINE_MAX`; this leaves room). */
const MAX_FRAME = 64 * 1024;

export const LOG_FAMILIES = {
  lines: {
    name: 'portcullis_access_log_lines_total',
    type: 'counter',
    help: 'Access-log lines HAProxy handed to the sidecar and the sidecar wrote to stdout.',
    labels: [],
  },
  dropped: {
    name: 'portcullis_access_log_dropped_lines_total',
    type: 'counter',
    help: "Log lines lost before the sidecar, at least: the drops HAProxy announced for its full ring plus its DroppedLogs, summed across HAProxy's workers.",
    labels: [],
  },
  overflows: {
    name: 'portcullis_access_log_ring_overflows_total',
    type: 'counter',
    help: 'Times HAProxy announced lines its log ring had no room for (any value above 0 means lines were lost).',
    labels: [],
  },
  refusals: {
    name: 'portcullis_gateway_refusals_total',
    type: 'counter',
    help: 'Connections and requests the gateway refused, by listener and reason (the refusal field of their log line).',
    labels: ['frontend', 'reason'],
  },
} as const satisfies Record<string, MetricFamily>;

/** Where forwarded lines go: a stream (backpressure honoured) or a function (tests). */
export type LogOutput = NodeJS.WritableStream | ((line: string) => void);

export interface LogSinkOptions {
  /** Unix socket path (the layout's `logSocket`); a stale socket file there is replaced. */
  path: string;
  /** Default: `process.stdout`. */
  output?: LogOutput;
  now?: () => Date;
}

export interface LogSinkCounts {
  /** Lines written to the output. */
  lines: number;
  /** Lines that were not JSON objects and were written wrapped. */
  wrapped: number;
  /** HAProxy's announcements of lines its ring had no room for. */
  overflows: number;
  /** `frontend\u0000reason` → count. */
  refusals: ReadonlyMap<string, number>;
}

export interface LogSink {
  readonly path: string;
  counts(): LogSinkCounts;
  /** Records HAProxy's `DroppedLogs` as read from worker `pid` (`show info`). */
  observeDropped(pid: number, droppedLogs: number): void;
  /**
   * Lines lost before the sink, at least: HAProxy's `DroppedLogs` (summed across its workers)
   * plus the lines its ring had no room for as HAProxy announces them in the ring ("N events
   * dropped"), which undercounts a long overflow (see the module comment).
   */
  dropped(): number;
  /** The `/metrics` families of this sink. */
  contributor: MetricsContributor;
  /** Stops reading (lines wait in the socket, then in HAProxy's ring) until `resume`. */
  pause(): void;
  resume(): void;
  close(): Promise<void>;
}

const NUL_END = new RegExp(`${String.fromCharCode(0)}+$`);

/** Splits RFC 6587 octet-counted frames; returns the messages and the unconsumed rest. */
export function parseOctetFrames(buffer: Buffer): { messages: Buffer[]; rest: Buffer; invalid: boolean } {
  const messages: Buffer[] = [];
  let at = 0;
  while (at < buffer.length) {
    const space = buffer.indexOf(0x20, at);
    if (space < 0) {
      // Only digits may be pending: a length longer than MAX_FRAME's digits is no length.
      const pending = buffer.subarray(at);
      const invalid = pending.length > 6 || !/^\d*$/.test(pending.toString('latin1'));
      return { messages, rest: pending, invalid };
    }
    const digits = buffer.subarray(at, space).toString('latin1');
    if (!/^[1-9]\d{0,5}$/.test(digits) || Number(digits) > MAX_FRAME) {
      return { messages, rest: buffer.subarray(at), invalid: true };
    }
    const end = space + 1 + Number(digits);
    if (end > buffer.length) break;
    messages.push(buffer.subarray(space + 1, end));
    at = end;
  }
  return { messages, rest: buffer.subarray(at), invalid: false };
}

/**
 * One output line for one message: the message itself when it is a JSON object, else wrapped.
 * Also returns the object's `frontend` and `refusal`, for the counters.
 */
export function logLine(
  message: string,
  now: () => Date = () => new Date(),
): { line: string; wrapped: boolean; frontend?: string; refusal?: string; droppedLines?: number } {
  // 3.2 ends the ring's own announcements with a NUL byte.
  const text = message.replace(/\r?\n$/, '').replace(NUL_END, '');
  // HAProxy's announcement, once the ring has room again, of the lines it had no room for.
  const announced = /^(\d+) events? dropped$/.exec(text);
  if (announced) {
    const droppedLines = Number(announced[1]);
    return {
      line: JSON.stringify({
        time: now().toISOString(),
        component: 'haproxy',
        message: text,
        dropped_lines: droppedLines,
      }),
      wrapped: false,
      droppedLines,
    };
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) && !/[\r\n]/.test(text)) {
      const { frontend, refusal } = parsed as Record<string, unknown>;
      return {
        line: text,
        wrapped: false,
        ...(typeof frontend === 'string' ? { frontend } : {}),
        ...(typeof refusal === 'string' ? { refusal } : {}),
      };
    }
  } catch {
    // not JSON: wrapped below
  }
  return {
    line: JSON.stringify({ time: now().toISOString(), component: 'haproxy', message: text }),
    wrapped: true,
  };
}

/** The labels a refusal is counted under: known listeners and reasons, everything else `other`. */
export function refusalLabels(
  frontend: string | undefined,
  refusal: string,
): { frontend: string; reason: string } {
  return {
    frontend: frontend !== undefined && KNOWN_FRONTENDS.has(frontend) ? frontend : 'other',
    reason: KNOWN_REFUSALS.has(refusal) ? refusal : 'other',
  };
}

/** Listens on `options.path` and forwards HAProxy's log lines; see the module comment. */
export async function startLogSink(options: LogSinkOptions): Promise<LogSink> {
  const output: LogOutput = options.output ?? process.stdout;
  const now = options.now ?? (() => new Date());
  let lines = 0;
  let wrapped = 0;
  const refusals = new Map<string, number>();
  const droppedTotals = new ReloadSafeCounters();
  /** HAProxy's DroppedLogs (failed log writes), summed across workers. */
  let droppedLogs = 0;
  /** Lines the ring had no room for, as HAProxy announced them in the ring. */
  let ringDropped = 0;
  let overflows = 0;
  const sockets = new Set<Socket>();
  let paused = false;
  /** Sockets paused for stdout's 'drain', resumed then unless the whole sink is paused. */
  const draining = new Set<Socket>();

  /** Writes one line; false when a stream output wants the sink to wait for 'drain'. */
  const write = (line: string): boolean => {
    lines++;
    if (typeof output === 'function') {
      output(`${line}\n`);
      return true;
    }
    return output.write(`${line}\n`);
  };

  const serve = (socket: Socket) => {
    sockets.add(socket);
    if (paused) socket.pause();
    let pending: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      const { messages, rest, invalid } = parseOctetFrames(
        pending.length === 0 ? chunk : Buffer.concat([pending, chunk]),
      );
      pending = Buffer.from(rest);
      let more = true;
      for (const message of messages) {
        const out = logLine(message.toString('utf8'), now);
        if (out.wrapped) wrapped++;
        if (out.droppedLines !== undefined) {
          ringDropped += out.droppedLines;
          overflows++;
        }
        if (out.refusal !== undefined && out.refusal !== '-') {
          const labels = refusalLabels(out.frontend, out.refusal);
          const key = `${labels.frontend}\u0000${labels.reason}`;
          refusals.set(key, (refusals.get(key) ?? 0) + 1);
        }
        more = write(out.line) && more;
      }
      if (invalid) {
        // Not HAProxy's framing: say so once and drop the connection (HAProxy reconnects).
        write(logLine(`log sink: unframed bytes on ${options.path}, connection closed`, now).line);
        wrapped++;
        socket.destroy();
        return;
      }
      if (!more && typeof output !== 'function') {
        socket.pause();
        draining.add(socket);
        output.once('drain', () => {
          draining.delete(socket);
          if (!paused) socket.resume();
        });
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => sockets.delete(socket));
  };

  await mkdir(dirname(options.path), { recursive: true, mode: 0o700 });
  await unlink(options.path).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
  const server: Server = createServer(serve);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // HAProxy runs as the sidecar's user (it shares the run directory, mode 0700, with it).
  await chmod(options.path, 0o600);

  const contributor: MetricsContributor = (registry: MetricsRegistry) => {
    const f = LOG_FAMILIES;
    for (const family of Object.values(f)) registry.family(family);
    registry.set(f.lines, {}, lines);
    registry.set(f.dropped, {}, droppedLogs + ringDropped);
    registry.set(f.overflows, {}, overflows);
    for (const [key, value] of refusals) {
      const [frontend = '', reason = ''] = key.split('\u0000');
      registry.set(f.refusals, { frontend, reason }, value);
    }
  };

  return {
    path: options.path,
    counts: () => ({ lines, wrapped, overflows, refusals: new Map(refusals) }),
    observeDropped(pid, value) {
      droppedLogs = droppedTotals.observe(pid, { dropped: value })['dropped'] ?? droppedLogs;
    },
    dropped: () => droppedLogs + ringDropped,
    contributor,
    pause() {
      paused = true;
      for (const socket of sockets) socket.pause();
    },
    resume() {
      paused = false;
      for (const socket of sockets) if (!draining.has(socket)) socket.resume();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await unlink(options.path).catch(() => undefined);
    },
  };
}
