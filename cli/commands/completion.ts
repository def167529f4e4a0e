/**
 * `portcullis completion bash|zsh` — a shell completion script: command names, their
 * subcommands, every option each command module declares (`export const options`, the same
 * object it parses its arguments with, so the two cannot drift), file names after the options
 * that take a path, and the values of `-o`. Install with
 * `source <(portcullis completion bash)` (zsh: `autoload -U bashcompinit && bashcompinit` first,
 * which `completion zsh` does).
 */
import { ExitCode, parseCommandArgs, usageError } from '../command.ts';

export const summary = 'Print a shell completion script';

const HELP = `Usage: portcullis completion bash|zsh

Prints a completion script for the shell: add \`source <(portcullis completion bash)\` to
~/.bashrc, or \`source <(portcullis completion zsh)\` to ~/.zshrc.`;

/** Words completed after each command besides its options: its subcommands or arguments. */
export const COMMAND_WORDS: Readonly<Record<string, readonly string[]>> = {
  allowlist: ['show', 'set', 'add', 'remove'],
  proxy: ['render'],
  completion: ['bash', 'zsh'],
};

/** Options whose value is a path: completed with file names. */
const PATH_OPTIONS = ['local', 'config', 'out', 'file', 'allowlist-file', 'state-dir'];

/** The options a command parses, as the command module declares them. */
export type CommandOptions = Readonly<Record<string, { short?: string }>>;

/** The words after `command`: its subcommands, then each option (`--name`, `-s`) and `--help`. Pure. */
export function commandWords(command: string, options: CommandOptions = {}): string[] {
  const words = [...(COMMAND_WORDS[command] ?? [])];
  for (const [name, option] of Object.entries(options)) {
    words.push(`--${name}`);
    if (option.short !== undefined) words.push(`-${option.short}`);
  }
  if (command !== 'completion') words.push('--help');
  return words;
}

/** The bash script for `commands` (name → the options its module declares). Pure. */
export function bashCompletion(commands: Readonly<Record<string, CommandOptions | undefined>>): string {
  const cases = Object.entries(commands)
    .map(([c, options]) => `    ${c}) words="${commandWords(c, options).join(' ')}" ;;`)
    .join('\n');
  const paths = PATH_OPTIONS.map((o) => `--${o}`).join('|');
  return `# portcullis shell completion (bash; zsh through bashcompinit)
_portcullis() {
  local cur prev words command
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  if [[ \${COMP_CWORD} -eq 1 ]]; then
    COMPREPLY=( $(compgen -W "${Object.keys(commands).join(' ')} --version --help --profile" -- "\${cur}") )
    return 0
  fi
  case "\${prev}" in
    -o|--output) COMPREPLY=( $(compgen -W "table wide json yaml" -- "\${cur}") ); return 0 ;;
    ${paths}) COMPREPLY=( $(compgen -f -- "\${cur}") ); return 0 ;;
  esac
  command="\${COMP_WORDS[1]}"
  case "\${command}" in
${cases}
    *) words="--help" ;;
  esac
  COMPREPLY=( $(compgen -W "\${words}" -- "\${cur}") )
}
complete -F _portcullis portcullis
`;
}

/** Every registered command with the options its module declares (loads each module). */
export async function registeredCommandOptions(): Promise<Record<string, CommandOptions | undefined>> {
  // Loaded here: cli/main.ts imports this module lazily, so the list is the registered one.
  const { commands } = await import('../main.ts');
  const out: Record<string, CommandOptions | undefined> = {};
  for (const [name, entry] of Object.entries(commands)) {
    const module = (await entry.load()) as { options?: CommandOptions };
    out[name] = module.options;
  }
  return out;
}

/** Entry point of `portcullis completion`. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs(argv, {}, HELP, { allowPositionals: true });
  if (typeof parsed === 'number') return parsed;
  const [shell] = parsed.positionals;
  const script = bashCompletion(await registeredCommandOptions());
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
