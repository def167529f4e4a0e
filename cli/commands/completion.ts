/**
 * `portcullis completion bash|zsh` — a shell completion script: command names, their
 * subcommands, the options every operator command shares, and the values of `-o`. Install with
 * `source <(portcullis completion bash)` (zsh: `autoload -U bashcompinit && bashcompinit` first,
 * which `completion zsh` does).
 */
import { ExitCode, parseCommandArgs, usageError } from '../command.ts';
import { commonOptions } from '../demo/target.ts';

export const summary = 'Print a shell completion script';

const HELP = `Usage: portcullis completion bash|zsh

Prints a completion script for the shell: add \`source <(portcullis completion bash)\` to
~/.bashrc, or \`source <(portcullis completion zsh)\` to ~/.zshrc.`;

/** Words completed after each command (subcommands and the options it takes beyond the shared ones). */
export const COMMAND_WORDS: Readonly<Record<string, readonly string[]>> = {
  status: ['--json', '-o', '--output', '--watch', '-w', '--interval', '--count'],
  history: ['--since', '--type', '--limit', '--log-group', '-o', '--output'],
  rotate: [
    '--certificate',
    '--force',
    '--dry-run',
    '--wait',
    '--json',
    '--state-machine-arn',
    '--execution-name',
    '--grace-seconds',
  ],
  allowlist: [
    'show',
    'set',
    'add',
    'remove',
    '--reason',
    '--file',
    '--wait',
    '--json',
    '--state-machine-arn',
  ],
  init: ['--config', '--allowlist', '--reason'],
  proxy: ['render', '--config', '--out'],
  sidecar: ['--config', '--check'],
  demo: ['--tasks', '--json', '--state-dir', '--keep'],
  completion: ['bash', 'zsh'],
};

/** The bash script for `commands`. Pure. */
export function bashCompletion(commands: readonly string[]): string {
  const shared = [...Object.keys(commonOptions).map((o) => `--${o}`), '--help'].join(' ');
  const cases = commands
    .map(
      (c) =>
        `    ${c}) words="${[...(COMMAND_WORDS[c] ?? []), ...(c === 'completion' ? [] : shared.split(' '))].join(' ')}" ;;`,
    )
    .join('\n');
  return `# portcullis shell completion (bash; zsh through bashcompinit)
_portcullis() {
  local cur prev words command
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  if [[ \${COMP_CWORD} -eq 1 ]]; then
    COMPREPLY=( $(compgen -W "${commands.join(' ')} --version --help --profile" -- "\${cur}") )
    return 0
  fi
  case "\${prev}" in
    -o|--output) COMPREPLY=( $(compgen -W "table wide json yaml" -- "\${cur}") ); return 0 ;;
    --local|--config|--out|--file|--state-dir) COMPREPLY=( $(compgen -f -- "\${cur}") ); return 0 ;;
  esac
  command="\${COMP_WORDS[1]}"
  case "\${command}" in
${cases}
    *) words="${shared}" ;;
  esac
  COMPREPLY=( $(compgen -W "\${words}" -- "\${cur}") )
}
complete -F _portcullis portcullis
`;
}

/** Entry point of `portcullis completion`. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs(argv, {}, HELP, { allowPositionals: true });
  if (typeof parsed === 'number') return parsed;
  const [shell] = parsed.positionals;
  // Loaded here: cli/main.ts imports this module lazily, so the list is the registered one.
  const { commands } = await import('../main.ts');
  const script = bashCompletion(Object.keys(commands));
  if (shell === 'bash') {
    process.stdout.write(script);
    return ExitCode.Ok;
  }
  if (shell === 'zsh') {
    process.stdout.write(`autoload -U +X bashcompinit && bashcompinit\n${script}`);
    return ExitCode.Ok;
  }
  return usageError(`completion takes bash or zsh\n\n${HELP}`);
}
