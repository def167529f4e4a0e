/**
 * `npm run bench -- --suite rotation|dataplane|allowlist [suite options]`: a small dispatcher; each suite
 * lives in its own module and takes the remaining arguments.
 */
import { pathToFileURL } from 'node:url';

type Suite = (argv: string[]) => Promise<number>;

export const suites: Record<string, { summary: string; load: () => Promise<Suite> }> = {
  rotation: {
    summary:
      'certificate rotation on local fleets under traffic (seconds to serve, failures, sidecar CPU/RSS)',
    load: async () => (await import('./rotation.ts')).runRotationBench,
  },
  allowlist: {
    summary:
      'allowlist set of 100 000 entries on 10 local tasks: seconds to every task enforcing it, sidecar peak RSS',
    load: async () => (await import('./allowlist.ts')).runAllowlistBench,
  },
  dataplane: {
    summary: 'gateway vs direct vs NGINX ssl_preread: conn/s, CPU per connection, bulk throughput',
    load: async () => (await import('./dataplane.ts')).runDataplane,
  },
};

function usage(): string {
  return [
    'Usage: npm run bench -- --suite <name> [options]   (each suite has --help)',
    '',
    'Suites:',
    ...Object.entries(suites).map(([name, suite]) => `  ${name.padEnd(10)} ${suite.summary}`),
  ].join('\n');
}

/** Picks `--suite NAME` (or `--suite=NAME`) out of `argv`; the rest goes to the suite. */
export function splitSuite(argv: readonly string[]): { suite: string | undefined; rest: string[] } {
  const rest: string[] = [];
  let suite: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--suite') {
      suite = argv[i + 1];
      i++;
    } else if (arg.startsWith('--suite=')) {
      suite = arg.slice('--suite='.length);
    } else {
      rest.push(arg);
    }
  }
  return { suite, rest };
}

export async function main(argv: string[]): Promise<number> {
  const { suite, rest } = splitSuite(argv);
  if (suite === undefined) {
    console.log(usage());
    return argv.includes('--help') || argv.includes('-h') ? 0 : 2;
  }
  const entry = suites[suite];
  if (entry === undefined) {
    console.error(`bench: unknown suite '${suite}'\n\n${usage()}`);
    return 2;
  }
  return (await entry.load())(rest);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      console.error(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      process.exitCode = 1;
    },
  );
}
