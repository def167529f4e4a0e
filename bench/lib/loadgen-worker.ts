/**
 * A load-generator process (forked by `loadgen.ts`). Each connection is a full TLS handshake
 * (no session is ever offered, so nothing resumes), one small request and the whole answer
 * read to the server's close: the cost a new client connection puts on a proxy. Certificates
 * are not verified: verification is client-side work that neither proxy sees and would only
 * make the generator heavier on a machine it shares with them.
 */
import tls from 'node:tls';
import type { BulkReport, FromWorker, TlsTarget, ToWorker, WindowReport } from './loadgen-protocol.ts';

const MAX_LATENCY_SAMPLES = 20_000;
const CONNECTION_TIMEOUT_MS = 10_000;

function send(message: FromWorker): void {
  process.send?.(message);
}

function cpuMicros(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

interface Outcome {
  ok: boolean;
  bytes: number;
  error?: string;
}

const sockets = new Set<tls.TLSSocket>();

/**
 * One context for every connection: without it tls.connect builds a fresh SSL_CTX (and its
 * certificate store) per connection, which costs the generator more than the handshake itself.
 * A shared context does not resume sessions: no `session` is ever passed.
 */
const context = tls.createSecureContext({ minVersion: 'TLSv1.3' });

/** One connection to completion; never rejects. `onData` sees every chunk of the answer. */
function oneConnection(
  target: TlsTarget,
  request: string,
  onData?: (chunk: Buffer) => void,
): Promise<Outcome> {
  return new Promise((resolve) => {
    let bytes = 0;
    let settled = false;
    let firstChunk: Buffer | undefined;
    // tls.connect hands socket.connect options (localAddress) through; its type does not list them.
    const options: tls.ConnectionOptions & { localAddress?: string } = {
      host: target.host,
      port: target.port,
      servername: target.servername,
      secureContext: context,
      rejectUnauthorized: false,
    };
    if (target.localAddress !== undefined) options.localAddress = target.localAddress;
    const socket = tls.connect(options);
    sockets.add(socket);
    const finish = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      sockets.delete(socket);
      socket.destroy();
      resolve(outcome);
    };
    socket.setTimeout(CONNECTION_TIMEOUT_MS, () => finish({ ok: false, bytes, error: 'timeout' }));
    socket.once('secureConnect', () => socket.write(request));
    socket.on('data', (chunk: Buffer) => {
      if (firstChunk === undefined) firstChunk = chunk;
      bytes += chunk.length;
      onData?.(chunk);
    });
    socket.once('end', () => {
      const ok = firstChunk !== undefined && firstChunk.subarray(0, 12).toString('latin1') === 'HTTP/1.1 200';
      finish(ok ? { ok, bytes } : { ok, bytes, error: `unexpected answer (${bytes} bytes)` });
    });
    socket.once('error', (error: Error) => finish({ ok: false, bytes, error: error.message }));
    socket.once('close', () => finish({ ok: false, bytes, error: 'closed before the answer ended' }));
  });
}

interface Window {
  connections: number;
  errors: number;
  errorSamples: Set<string>;
  startedAt: number;
  cpuAtStart: number;
  latenciesMs: number[];
  seen: number;
}

function newWindow(): Window {
  return {
    connections: 0,
    errors: 0,
    errorSamples: new Set(),
    startedAt: performance.now(),
    cpuAtStart: cpuMicros(),
    latenciesMs: [],
    seen: 0,
  };
}

let running = false;
let window = newWindow();
const loops: Promise<void>[] = [];

function record(latencyMs: number): void {
  window.seen++;
  // Reservoir sampling keeps the latency sample bounded and unbiased.
  if (window.latenciesMs.length < MAX_LATENCY_SAMPLES) window.latenciesMs.push(latencyMs);
  else {
    const slot = Math.floor(Math.random() * window.seen);
    if (slot < MAX_LATENCY_SAMPLES) window.latenciesMs[slot] = latencyMs;
  }
}

async function loop(target: TlsTarget, request: string, deadline: number): Promise<void> {
  while (running && performance.now() < deadline) {
    const started = performance.now();
    const outcome = await oneConnection(target, request);
    if (!running) return;
    if (outcome.ok) {
      window.connections++;
      record(performance.now() - started);
    } else {
      window.errors++;
      if (window.errorSamples.size < 5 && outcome.error !== undefined) window.errorSamples.add(outcome.error);
      // A refused or reset connection returns at once; do not spin on a broken target.
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
}

function report(): WindowReport {
  return {
    type: 'window',
    connections: window.connections,
    errors: window.errors,
    errorSamples: [...window.errorSamples],
    elapsedMs: performance.now() - window.startedAt,
    cpuMicros: cpuMicros() - window.cpuAtStart,
    latenciesMs: window.latenciesMs,
  };
}

async function bulk(target: TlsTarget, request: string, safetyMs: number): Promise<BulkReport> {
  const cpuStart = cpuMicros();
  const started = performance.now();
  const timer = setTimeout(() => {
    for (const socket of sockets) socket.destroy(new Error(`bulk transfer exceeded ${safetyMs} ms`));
  }, safetyMs);
  const outcome = await oneConnection(target, request);
  clearTimeout(timer);
  return {
    type: 'bulk',
    bytes: outcome.bytes,
    elapsedMs: performance.now() - started,
    cpuMicros: cpuMicros() - cpuStart,
    ...(outcome.ok ? {} : { error: outcome.error ?? 'failed' }),
  };
}

process.on('message', (message: ToWorker) => {
  switch (message.type) {
    case 'connections': {
      running = true;
      window = newWindow();
      const deadline = performance.now() + message.safetyMs;
      for (let i = 0; i < message.concurrency; i++)
        loops.push(loop(message.target, message.request, deadline));
      send({ type: 'started' });
      return;
    }
    case 'begin':
      window = newWindow();
      return;
    case 'end': {
      send(report());
      running = false;
      for (const socket of sockets) socket.destroy();
      void Promise.all(loops.splice(0)).then(() => send({ type: 'stopped' }));
      return;
    }
    case 'bulk':
      void bulk(message.target, message.request, message.safetyMs).then(send);
      return;
  }
});

// Never outlive the benchmark.
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
