/**
 * Allowlist files as the CLI reads them (`allowlist set --file`, `init --allowlist-file`): one
 * CIDR a line, `#` to the end of the line is a comment, blank lines skipped, `-` for standard
 * input.
 */
import { readFile } from 'node:fs/promises';
import { parseCidr } from '../lib/allowlist/index.ts';
import { ValidationError } from '../lib/errors.ts';

/** One entry of a list file and the line (1-based) it is on. */
export interface CidrLine {
  line: number;
  entry: string;
}

/** Invalid entries named in one error; the rest are counted. */
const MAX_NAMED_PROBLEMS = 10;

/** The entries of a list file with their line numbers (see the module comment). Pure. */
export function cidrLines(text: string): CidrLine[] {
  const out: CidrLine[] = [];
  text.split(/\r?\n/).forEach((line, index) => {
    const hash = line.indexOf('#');
    const entry = (hash < 0 ? line : line.slice(0, hash)).trim();
    if (entry !== '') out.push({ line: index + 1, entry });
  });
  return out;
}

/** The CIDRs of a list file: one a line, `#` to the end of the line is a comment, blank lines skipped. Pure. */
export function parseCidrLines(text: string): string[] {
  return cidrLines(text).map((l) => l.entry);
}

/** The text of a list file; `-` reads standard input to its end. Throws the read's own error. */
export async function readListText(path: string): Promise<string> {
  if (path !== '-') return readFile(path, 'utf8');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * The entries of the list file at `path` (`-`: standard input), every one checked as a CIDR.
 * @throws ValidationError when the file cannot be read, or naming the line of each invalid
 * entry (the first few, then a count).
 */
export async function readCidrFile(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await readListText(path);
  } catch (error) {
    throw new ValidationError(`cannot read allowlist file ${path}: ${(error as Error).message}`);
  }
  const name = path === '-' ? 'standard input' : path;
  const lines = cidrLines(text);
  const problems: string[] = [];
  for (const { line, entry } of lines) {
    const parsed = parseCidr(entry);
    if (parsed.kind === 'invalid')
      problems.push(`${name}:${line}: ${JSON.stringify(entry)}: ${parsed.reason}`);
  }
  if (problems.length > 0) {
    const named = problems.slice(0, MAX_NAMED_PROBLEMS);
    const more = problems.length - named.length;
    throw new ValidationError(
      `${problems.length} invalid CIDR${problems.length === 1 ? '' : 's'} in ${name}:\n  ${named.join('\n  ')}${more > 0 ? `\n  … and ${more} more` : ''}`,
      { path: 'allowlist' },
    );
  }
  return lines.map((l) => l.entry);
}
