/** Fixtures for the benchmark's report code: a result document around given runs. */
import { type DataplaneResults, summarise } from '../../bench/dataplane.ts';
import { dataplanePlan } from '../../bench/dataplane-plan.ts';
import { computeRatios, meets } from '../../bench/lib/report.ts';

/** A quick run's results around the given runs (ratios computed from them). */
export function dataplaneResults(
  runs: Pick<DataplaneResults, 'connections' | 'bulk'> & Partial<DataplaneResults>,
  imageHaproxy?: string,
): DataplaneResults {
  return {
    suite: 'dataplane',
    startedAt: '2026-01-01T00:00:00.000Z',
    finishedAt: '2026-01-01T00:01:00.000Z',
    mode: 'quick',
    environment: {
      node: 'v24',
      haproxy: 'HAProxy version 2.6.12',
      nginx: 'nginx/1.22.1',
      openssl: 'OpenSSL 3.0',
      kernel: 'Linux 6',
      cpuModel: 'cpu',
      cores: 2,
      memoryMiB: 1024,
      loadAverage1m: 1,
      loadAverage1mAtEnd: 2,
      perfInstructions: 'unsupported',
    },
    plan: dataplanePlan({ quick: true, cores: 2 }),
    gateways: [{ version: '2.6.12', banner: 'HAProxy version 2.6.12', role: 'image' }],
    setup: {},
    refusesUnlistedSource: { gateway: true, nginx: true },
    variants: [],
    ratios: computeRatios(summarise(runs.connections, runs.bulk, imageHaproxy), 0, 100000).map((r) => ({
      ...r,
      met: meets(r) ?? null,
    })),
    ...runs,
  };
}
