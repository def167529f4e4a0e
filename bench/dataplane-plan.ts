/**
 * What a dataplane run measures and for how long (pure), and the gateway variants `--explore`
 * tries: fleet settings and HAProxy changes the renderer does not make by default, applied to its
 * output for measurement only.
 */
import { availableParallelism } from 'node:os';
import type { FleetConfigInput } from '../lib/config/index.ts';

export interface DataplanePlan {
  quick: boolean;
  explore: boolean;
  /** Connections in flight at any time (all generator workers together). */
  concurrency: number;
  generatorWorkers: number;
  upstreamWorkers: number;
  /** NGINX SNI proxy workers; HAProxy picks one thread per core by itself. */
  proxyWorkers: number;
  warmupMs: number;
  durationMs: number;
  /** Alternating rounds over every path and size (ABC… then …CBA). */
  rounds: number;
  /** Random entries besides the client's own; the first is the baseline, the last the large list. */
  allowlistSizes: number[];
  bulkBytes: number;
  bulkRepeats: number;
  /** How long both proxies reuse a DNS answer (the fleet default, `holdValidMs`). */
  resolverHoldMs: number;
  /** A `GATEWAY_VARIANTS` entry measured in the rounds next to the rendered gateway. */
  proposedVariant: string | null;
  /** The `--explore` variants to run (all of `GATEWAY_VARIANTS` unless `--variants` names some). */
  variants: string[];
}

/**
 * Full run: two alternating rounds of 4 s windows over direct + 2 proxies × allowlists
 * 0 / 1 000 / 100 000, 256 MiB bulk three times per path (~2 min).
 * Quick: one round of 1.5 s windows, allowlists 0 / 100 000, 64 MiB once (~30 s).
 */
export function dataplanePlan(options: {
  quick: boolean;
  explore?: boolean;
  /** `--variants a,b`: only these `--explore` variants (implies `explore`). */
  variants?: readonly string[];
  concurrency?: number;
  cores?: number;
}): DataplanePlan {
  const cores = Math.max(1, options.cores ?? availableParallelism());
  const concurrency = options.concurrency ?? 32;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 4096) {
    throw new RangeError(`concurrency must be an integer 1…4096, got ${options.concurrency}`);
  }
  const known = GATEWAY_VARIANTS.map((v) => v.name);
  const unknown = (options.variants ?? []).filter((name) => !known.includes(name));
  if (unknown.length > 0) {
    throw new RangeError(`unknown variant(s) ${unknown.join(', ')}; known: ${known.join(', ')}`);
  }
  const common = {
    explore: (options.explore ?? false) || (options.variants ?? []).length > 0,
    variants: options.variants && options.variants.length > 0 ? [...options.variants] : known,
    concurrency,
    generatorWorkers: cores,
    upstreamWorkers: cores,
    proxyWorkers: cores,
    resolverHoldMs: 10_000,
    proposedVariant: 'threads-1',
  };
  return options.quick
    ? {
        ...common,
        quick: true,
        warmupMs: 500,
        durationMs: 1500,
        rounds: 1,
        allowlistSizes: [0, 100_000],
        bulkBytes: 64 * 2 ** 20,
        bulkRepeats: 1,
      }
    : {
        ...common,
        quick: false,
        warmupMs: 1000,
        durationMs: 4000,
        rounds: 2,
        allowlistSizes: [0, 1000, 100_000],
        bulkBytes: 256 * 2 ** 20,
        bulkRepeats: 3,
      };
}

/** A gateway configuration to compare against the rendered one. */
export interface GatewayVariant {
  name: string;
  /** Why it is worth measuring, and whether it weakens anything. */
  why: string;
  /** Merged into the bench fleet config before rendering. */
  config?: Partial<FleetConfigInput>;
  /** Applied to the rendered `haproxy.cfg`. */
  patch?: (config: string, context: VariantContext) => string;
}

export interface VariantContext {
  /** HAProxy threads the rendered gateway runs (one per core unless the fleet sets `limits.threads`). */
  threads: number;
}

/** Removes the section that starts with the line `header` (up to the next blank line). */
export function dropSection(config: string, header: string): string {
  const rows = config.split('\n');
  const start = rows.indexOf(header);
  if (start < 0) throw new RangeError(`no "${header}" section in the configuration`);
  let end = start;
  while (end < rows.length && rows[end] !== '') end++;
  rows.splice(start, end - start + 1);
  return rows.join('\n');
}

/** Replaces `from` by `to` and refuses a configuration that lacks `from` (a variant must not silently measure nothing). */
export function replaceOnce(config: string, from: string, to: string): string {
  if (!config.includes(from)) throw new RangeError(`the configuration has no "${from}"`);
  return config.replace(from, to);
}

/**
 * HAProxy's own `req.ssl_sni` instead of the Lua ClientHello parser: what the Lua layer costs at
 * most. Unsafe (measurement only): it reads the first record only and is lenient (two names, two
 * server_name extensions, trailing bytes and control characters pass; see render-lua.ts).
 */
export function nativeSni(config: string): string {
  return replaceOnce(
    replaceOnce(config, 'req.payload(0,0),hex,lua.portcullis_hello', 'str(0/)'),
    'var(txn.hello),field(2,/),lower',
    'req.ssl_sni,lower',
  );
}

/** Inserts `lines` right after the first line equal to `section` (e.g. `global`, `defaults`). */
export function addToSection(config: string, section: string, lines: readonly string[]): string {
  const rows = config.split('\n');
  const index = rows.indexOf(section);
  if (index < 0) throw new RangeError(`no "${section}" section in the configuration`);
  rows.splice(index + 1, 0, ...lines.map((line) => `  ${line}`));
  return rows.join('\n');
}

/** Drops every line containing one of `needles` (for measuring what a feature costs). */
export function dropLines(config: string, needles: readonly string[]): string {
  return config
    .split('\n')
    .filter((line) => !needles.some((needle) => line.includes(needle)))
    .join('\n');
}

const FRONTEND_TLS = 'frontend fe_tls';

/**
 * Repeats each `bind` line of `section` once per thread (`thread 1`, `thread 2`, …): each copy
 * is its own SO_REUSEPORT socket, so the kernel spreads connections over the threads and no
 * thread hands an accepted connection to another (what `shards` automates from 2.7 on).
 */
export function bindPerThread(config: string, section: string, threads: number): string {
  const rows = config.split('\n');
  const start = rows.indexOf(section);
  if (start < 0) throw new RangeError(`no "${section}" section in the configuration`);
  const out: string[] = [];
  rows.forEach((row, index) => {
    const inSection = index > start && rows.slice(start + 1, index).every((r) => r !== '');
    if (inSection && row.startsWith('  bind ')) {
      for (let thread = 1; thread <= threads; thread++) out.push(`${row} thread ${thread}`);
    } else {
      out.push(row);
    }
  });
  return out.join('\n');
}
const BACKEND_TLS = 'backend be_tls_passthrough';

export const GATEWAY_VARIANTS: readonly GatewayVariant[] = [
  {
    name: 'repeat',
    why: 'the rendered configuration once more: how far two runs of the same thing differ here',
  },
  {
    name: 'threads-1',
    why: 'limits.threads: 1 (nbthread 1): no cross-thread wake-ups or locks, but one core for all traffic',
    config: { limits: { threads: 1 } },
  },
  {
    name: 'no-resolution-keepalive',
    why: 'the gateway before the resolution keep-alive: one DNS query per connection (HAProxy 2.6 do-resolve)',
    patch: (config) => dropSection(config, 'backend be_resolution_keepalive'),
  },
  {
    name: 'native-sni-unsafe',
    why: "HAProxy's req.ssl_sni instead of the strict Lua parser: the Lua layer's cost; fails the adversarial SNI checks (measured, never proposed)",
    patch: nativeSni,
  },
  {
    name: 'no-access-log',
    why: 'cost of the per-connection JSON log line on stdout (a product requirement: measured, not proposed)',
    config: { accessLog: { enabled: false } },
  },
  {
    name: 'no-session-tracking',
    why: 'cost of track-sc0 into the session table (needed to cut removed sources: measured, not proposed)',
    patch: (config) => dropLines(config, ['track-sc0', 'set-var-fmt(txn.session_key)']),
  },
  {
    name: 'tcp-smart-accept',
    why: 'TCP_DEFER_ACCEPT: the client speaks first, so accept once the ClientHello is there (one rule pass, fewer wake-ups)',
    patch: (config) => addToSection(config, FRONTEND_TLS, ['option tcp-smart-accept']),
  },
  {
    name: 'tcp-smart-connect',
    why: 'the upstream connect ACK leaves with the first data (one packet less per connection)',
    patch: (config) => addToSection(config, BACKEND_TLS, ['option tcp-smart-connect']),
  },
  {
    name: 'splice-auto',
    why: 'kernel splice for bulk forwarding once a connection streams; no change to what is forwarded',
    patch: (config) => addToSection(config, 'defaults', ['option splice-auto']),
  },
  {
    name: 'listener-multi-queue-off',
    why: 'the accepting thread keeps the connection instead of queueing it to another thread',
    patch: (config) => addToSection(config, 'global', ['tune.listener.multi-queue off']),
  },
  {
    name: 'bind-per-thread',
    why: 'one SO_REUSEPORT listener per thread: the kernel balances, no cross-thread hand-off',
    patch: (config, context) => bindPerThread(config, FRONTEND_TLS, context.threads),
  },
];
