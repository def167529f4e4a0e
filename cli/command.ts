import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';

/** Exit codes scripts can rely on. */
export const ExitCode = {
  Ok: 0,
  /** The operation ran and failed (rotation rolled back, validation rejected input). */
  Failure: 1,
  /** The command line was wrong. */
  Usage: 2,
} as const;

export interface CommandModule {
  summary?: string;
  run(argv: string[]): Promise<number>;
}

export function usageError(message: string): number {
  console.error(`portcullis: ${message}`);
  return ExitCode.Usage;
}

const helpOption = { help: { type: 'boolean', short: 'h' } } as const;

/** What {@link parseCommandArgs} parsed: `parseArgs`' result for the options plus `--help`. */
export type ParsedCommand<O extends ParseArgsOptionsConfig> = ReturnType<
  typeof parseArgs<{ options: O & typeof helpOption; strict: true; allowPositionals: true }>
>;

/**
 * Parses a command's arguments strictly, with `-h/--help` added to `options`. Returns the
 * parsed values, or the exit code the command should return at once: {@link ExitCode.Ok} after
 * printing `help` for `--help`, {@link ExitCode.Usage} (message and `help` on stderr) for an
 * unknown option, a missing option value or, unless `allowPositionals`, a positional.
 *
 * @example
 * const parsed = parseCommandArgs(argv, { fleet: { type: 'string' } }, HELP);
 * if (typeof parsed === 'number') return parsed;
 */
export function parseCommandArgs<const O extends ParseArgsOptionsConfig>(
  argv: string[],
  options: O,
  help: string,
  settings: { allowPositionals?: boolean } = {},
): ParsedCommand<O> | number {
  let parsed: ParsedCommand<O>;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...options, ...helpOption },
      strict: true,
      allowPositionals: settings.allowPositionals === true,
    }) as ParsedCommand<O>;
  } catch (error) {
    return usageError(`${(error as Error).message}\n\n${help}`);
  }
  if ((parsed.values as { help?: boolean }).help === true) {
    console.log(help);
    return ExitCode.Ok;
  }
  return parsed;
}

/**
 * Prints why a command failed as `portcullis <command>: <name>: <message>` (never a stack) and
 * returns {@link ExitCode.Failure}. Commands whose stdout carries a report print it on `stream`.
 */
export function reportError(
  command: string,
  error: unknown,
  stream: NodeJS.WritableStream = process.stderr,
): number {
  stream.write(
    `portcullis ${command}: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}\n`,
  );
  return ExitCode.Failure;
}

/** Colours only when writing to a terminal (and `NO_COLOR` is unset). */
export function colour(stream: NodeJS.WriteStream): (code: number, text: string) => string {
  const on = stream.isTTY === true && process.env.NO_COLOR === undefined;
  return (code, text) => (on ? `\u001b[${code}m${text}\u001b[0m` : text);
}
