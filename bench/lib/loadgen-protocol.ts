/** Messages between the benchmark and its load-generator worker processes (IPC, structured clone). */

/** Where connections go: TLS to `host:port` with SNI `servername`. */
export interface TlsTarget {
  host: string;
  port: number;
  servername: string;
  /** Source address of the client sockets (the allowlist entry the proxies must match). */
  localAddress?: string;
}

export type ToWorker =
  /** Open `concurrency` connection loops (full handshake, one request, read to close) until `end`. */
  | { type: 'connections'; target: TlsTarget; concurrency: number; request: string; safetyMs: number }
  /** Reset the counters: the measured window starts now. */
  | { type: 'begin' }
  /** Report the window's counters and stop the loops. */
  | { type: 'end' }
  /** One connection: send `request`, read the whole answer, report bytes and time. */
  | { type: 'bulk'; target: TlsTarget; request: string; safetyMs: number };

export interface WindowReport {
  type: 'window';
  /** Connections that completed (handshake, request, full answer, clean close) inside the window. */
  connections: number;
  errors: number;
  /** A few distinct error messages, for the report. */
  errorSamples: string[];
  elapsedMs: number;
  /** This worker's own CPU (user+system) during the window. */
  cpuMicros: number;
  /** Per-connection latencies (ms) of a bounded sample, for percentiles. */
  latenciesMs: number[];
}

export interface BulkReport {
  type: 'bulk';
  bytes: number;
  /** From the request write to the end of the answer. */
  elapsedMs: number;
  cpuMicros: number;
  error?: string;
}

export type FromWorker =
  | { type: 'ready' }
  | { type: 'started' }
  | WindowReport
  | BulkReport
  | { type: 'stopped' };
