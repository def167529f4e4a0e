#!/usr/bin/env node
/**
 * `portcullis` — one entry point for operators, the sidecar and the embedded demo.
 * Each command lives in `cli/commands/<name>.ts` and exports `run(argv): Promise<number>`
 * (the process exit code). Imports are static so the bundle carries every command.
 */
import { pathToFileURL } from 'node:url';
import packageJson from '../package.json' with { type: 'json' };
import { type CommandModule, ExitCode, usageError } from './command.ts';

/** This build's version (package.json), printed by `portcullis --version`. */
export const VERSION: string = packageJson.version;

interface CommandEntry {
  summary: string;
  load: () => Promise<CommandModule>;
}

export const commands: Record<string, CommandEntry> = {
  proxy: { summary: 'Render the gateway configuration', load: () => import('./commands/proxy.ts') },
  demo: { summary: 'Run the whole loop on this machine', load: () => import('./commands/demo.ts') },
  init: { summary: "Create a fleet's secrets", load: () => import('./commands/init.ts') },
  rotate: { summary: 'Rotate certificates', load: () => import('./commands/rotate.ts') },
  status: { summary: 'What every task serves', load: () => import('./commands/status.ts') },
  history: { summary: "The fleet's control-plane events", load: () => import('./commands/history.ts') },
  allowlist: {
    summary: 'Show or change the source allowlist',
    load: () => import('./commands/allowlist.ts'),
  },
  sidecar: { summary: 'Run the gateway sidecar', load: () => import('./commands/sidecar.ts') },
  completion: { summary: 'Print a shell completion script', load: () => import('./commands/completion.ts') },
};

function help(): string {
  const rows = Object.entries(commands).map(([name, entry]) => `  ${name.padEnd(10)} ${entry.summary}`);
  return [
    'Usage: portcullis [--profile NAME] <command> [options]',
    '       portcullis --version',
    '',
    'Commands:',
    ...rows,
    '',
    'Run `portcullis <command> --help` for the options of one command. AWS commands take',
    '--profile NAME and --region REGION (before or after the command), and --stack NAME to read',
    'ARNs and names from the deployed stack.',
  ].join('\n');
}

/**
 * Moves `--profile X` / `--region X` given before the command behind it, where every command's
 * parser takes them (`portcullis --profile ops status …` = `portcullis status … --profile ops`).
 */
export function hoistGlobalOptions(argv: readonly string[]): string[] {
  const global: string[] = [];
  let i = 0;
  while (i < argv.length) {
    const arg = argv[i]!;
    const m = /^--(profile|region)(?:=(.*))?$/.exec(arg);
    if (!m) break;
    if (m[2] !== undefined) {
      global.push(`--${m[1]}`, m[2]);
      i += 1;
    } else {
      if (argv[i + 1] === undefined) break;
      global.push(arg, argv[i + 1]!);
      i += 2;
    }
  }
  const [name, ...rest] = argv.slice(i);
  return name === undefined ? [] : [name, ...rest, ...global];
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = hoistGlobalOptions(argv);
  if (name === '--version' || name === '-V' || name === 'version') {
    console.log(`portcullis ${VERSION}`);
    return ExitCode.Ok;
  }
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return name === undefined ? ExitCode.Usage : ExitCode.Ok;
  }
  const entry = commands[name];
  if (entry === undefined) {
    return usageError(`unknown command '${name}'\n\n${help()}`);
  }
  const mod = await entry.load();
  return mod.run(rest);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      console.error(
        `portcullis: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`,
      );
      process.exitCode = ExitCode.Failure;
    },
  );
}
