#!/usr/bin/env node
/**
 * `portcullis` — one entry point for operators, the sidecar and the embedded demo.
 * Each command lives in `cli/commands/<name>.ts` and exports `run(argv): Promise<number>`
 * (the process exit code). Imports are static so the bundle carries every command.
 */
import { pathToFileURL } from 'node:url';
import { type CommandModule, ExitCode, usageError } from './command.ts';

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
  allowlist: {
    summary: 'Show or change the source allowlist',
    load: () => import('./commands/allowlist.ts'),
  },
  sidecar: { summary: 'Run the gateway sidecar', load: () => import('./commands/sidecar.ts') },
};

function help(): string {
  const rows = Object.entries(commands).map(([name, entry]) => `  ${name.padEnd(10)} ${entry.summary}`);
  return [
    'Usage: portcullis <command> [options]',
    '',
    'Commands:',
    ...rows,
    '',
    'Run `portcullis <command> --help` for the options of one command.',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
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
