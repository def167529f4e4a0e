/**
 * The ratio table printed after a dataplane run: each ratio next to its target. Targets are
 * reported, never asserted: a missed one is a finding to explain, not a failed run.
 */

export interface Target {
  op: '<=' | '>=';
  value: number;
}

export interface Ratio {
  name: string;
  /** `NaN` when a figure it needs was not measured. */
  value: number;
  target?: Target;
  note?: string;
}

/** Per-path figures the ratios are computed from. */
export interface DataplaneSummary {
  direct: { connectionsPerSecond: number; bulkMiBps: number };
  /** On the image's HAProxy release (`gatewayRelease`). */
  gateway: PathSummary;
  nginx: PathSummary;
  gatewayRelease?: string;
  /** The gateway on other HAProxy releases, keyed by release (`2.6.12`), same rounds. */
  comparedGateways?: Record<string, PathSummary>;
}

export interface PathSummary {
  /** Keyed by number of allowlist entries (besides the client's own). */
  bySize: Record<number, { connectionsPerSecond: number; cpuMicrosPerConnection: number }>;
  bulkMiBps: number;
}

function div(a: number | undefined, b: number | undefined): number {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0)
    return Number.NaN;
  return a / b;
}

/** A gateway configuration other than the rendered one, measured in the same rounds. */
export interface ProposedGateway {
  name: string;
  /** At the smallest allowlist. */
  cpuMicrosPerConnection: number;
  connectionsPerSecond: number;
  /** At the largest allowlist, when measured. */
  cpuMicrosPerConnectionLargest?: number;
}

/**
 * The ratios the task sets targets for, plus the NGINX scaling figure for comparison and, when
 * `proposed` is given, the two per-connection ratios again for the proposed configuration.
 */
export function computeRatios(
  summary: DataplaneSummary,
  smallest: number,
  largest: number,
  proposed?: ProposedGateway,
): Ratio[] {
  const g0 = summary.gateway.bySize[smallest];
  const gN = summary.gateway.bySize[largest];
  const n0 = summary.nginx.bySize[smallest];
  const nN = summary.nginx.bySize[largest];
  return [
    {
      name: `gateway / NGINX CPU per connection (${smallest} entries)`,
      value: div(g0?.cpuMicrosPerConnection, n0?.cpuMicrosPerConnection),
      target: { op: '<=', value: 0.9 },
    },
    {
      name: `gateway / NGINX CPU per connection (${largest} entries)`,
      value: div(gN?.cpuMicrosPerConnection, nN?.cpuMicrosPerConnection),
      note: 'no target; shows how the allowlist changes the comparison',
    },
    {
      name: `gateway / direct new connections per second (${smallest} entries)`,
      value: div(g0?.connectionsPerSecond, summary.direct.connectionsPerSecond),
      target: { op: '>=', value: 0.97 },
    },
    {
      name: 'gateway / NGINX bulk throughput',
      value: div(summary.gateway.bulkMiBps, summary.nginx.bulkMiBps),
      target: { op: '>=', value: 1.05 },
    },
    {
      name: 'gateway / direct bulk throughput',
      value: div(summary.gateway.bulkMiBps, summary.direct.bulkMiBps),
      target: { op: '>=', value: 0.9 },
    },
    {
      name: `gateway CPU per connection, ${largest} / ${smallest} entries`,
      value: div(gN?.cpuMicrosPerConnection, g0?.cpuMicrosPerConnection),
      target: { op: '<=', value: 1.1 },
    },
    {
      name: `NGINX CPU per connection, ${largest} / ${smallest} entries`,
      value: div(nN?.cpuMicrosPerConnection, n0?.cpuMicrosPerConnection),
      note: 'no target; `allow` lines are scanned in order',
    },
    {
      name: `gateway new connections per second, ${largest} / ${smallest} entries`,
      value: div(gN?.connectionsPerSecond, g0?.connectionsPerSecond),
      target: { op: '>=', value: 0.9 },
    },
    {
      name: `NGINX new connections per second, ${largest} / ${smallest} entries`,
      value: div(nN?.connectionsPerSecond, n0?.connectionsPerSecond),
      note: 'no target',
    },
    ...(proposed === undefined
      ? []
      : [
          {
            name: `gateway + ${proposed.name} / NGINX CPU per connection (${smallest} entries)`,
            value: div(proposed.cpuMicrosPerConnection, n0?.cpuMicrosPerConnection),
            target: { op: '<=', value: 0.9 } as const,
            note: 'alternative fleet setting',
          },
          {
            name: `gateway + ${proposed.name} / direct new connections per second (${smallest} entries)`,
            value: div(proposed.connectionsPerSecond, summary.direct.connectionsPerSecond),
            target: { op: '>=', value: 0.97 } as const,
            note: 'alternative fleet setting',
          },
          {
            name: `gateway + ${proposed.name} CPU per connection, ${largest} / ${smallest} entries`,
            value: div(proposed.cpuMicrosPerConnectionLargest, proposed.cpuMicrosPerConnection),
            target: { op: '<=', value: 1.1 } as const,
            note: 'alternative fleet setting',
          },
        ]),
    ...Object.entries(summary.comparedGateways ?? {}).flatMap(([release, other]) =>
      comparedRatios(summary, release, other, smallest, largest),
    ),
  ];
}

/** The gateway on another HAProxy release against the image's release and NGINX (no targets). */
function comparedRatios(
  summary: DataplaneSummary,
  release: string,
  other: PathSummary,
  smallest: number,
  largest: number,
): Ratio[] {
  const image = summary.gatewayRelease ?? 'image release';
  const note = `the gateway on HAProxy ${release}; no target`;
  return [
    {
      name: `gateway on ${release} / on ${image} CPU per connection (${smallest} entries)`,
      value: div(
        other.bySize[smallest]?.cpuMicrosPerConnection,
        summary.gateway.bySize[smallest]?.cpuMicrosPerConnection,
      ),
      note,
    },
    {
      name: `gateway on ${release} / on ${image} CPU per connection (${largest} entries)`,
      value: div(
        other.bySize[largest]?.cpuMicrosPerConnection,
        summary.gateway.bySize[largest]?.cpuMicrosPerConnection,
      ),
      note,
    },
    {
      name: `gateway on ${release} / on ${image} new connections per second (${smallest} entries)`,
      value: div(
        other.bySize[smallest]?.connectionsPerSecond,
        summary.gateway.bySize[smallest]?.connectionsPerSecond,
      ),
      note,
    },
    {
      name: `gateway on ${release} / on ${image} bulk throughput`,
      value: div(other.bulkMiBps, summary.gateway.bulkMiBps),
      note,
    },
    {
      name: `gateway on ${release} / NGINX CPU per connection (${smallest} entries)`,
      value: div(
        other.bySize[smallest]?.cpuMicrosPerConnection,
        summary.nginx.bySize[smallest]?.cpuMicrosPerConnection,
      ),
      note,
    },
  ];
}

/** Whether a ratio meets its target; `undefined` when it has none or was not measured. */
export function meets(ratio: Ratio): boolean | undefined {
  if (ratio.target === undefined || !Number.isFinite(ratio.value)) return undefined;
  return ratio.target.op === '<=' ? ratio.value <= ratio.target.value : ratio.value >= ratio.target.value;
}

/** Formats a ratio as `0.93×`, or `n/a`. */
export function formatRatio(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}×` : 'n/a';
}

/** The Markdown table: ratio, measured value, target, met. */
export function formatRatioTable(ratios: readonly Ratio[]): string {
  const rows = ratios.map((ratio) => {
    const met = meets(ratio);
    const target =
      ratio.target === undefined
        ? '—'
        : `${ratio.target.op === '<=' ? '≤' : '≥'} ${ratio.target.value.toFixed(2)}×`;
    const verdict = met === undefined ? (ratio.note ?? '—') : met ? 'met' : 'missed';
    return `| ${ratio.name} | ${formatRatio(ratio.value)} | ${target} | ${verdict} |`;
  });
  return ['| ratio | measured | target | |', '| --- | ---: | ---: | --- |', ...rows].join('\n');
}
