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

/** Colours only when writing to a terminal (and `NO_COLOR` is unset). */
export function colour(stream: NodeJS.WriteStream): (code: number, text: string) => string {
  const on = stream.isTTY === true && process.env.NO_COLOR === undefined;
  return (code, text) => (on ? `\u001b[${code}m${text}\u001b[0m` : text);
}
