/**
 * The text protocol of HAProxy's CLI, as pure functions: how a command line is encoded, how a
 * payload is attached, how answers are framed and how a failure answer maps to a reason.
 *
 * What the 2.6 CLI does with a line (checked against 2.6.12):
 * - commands are separated by `;` and arguments by spaces/tabs; a backslash makes the next
 *   character literal (`\;`, `\ `, `\\`), so those three are escaped, not rejected;
 * - a newline ends the line and nothing can escape it, so control characters are rejected;
 * - a line whose raw text ends with `<<` switches to payload mode whatever precedes it
 *   (`x\ <<` does too), so `<<` is rejected in arguments;
 * - `#<n>` names an ACL/map by id and `@<n>` a version, in identifier and key positions, after
 *   unescaping: a leading `#`/`@` there is rejected;
 * - extra arguments are silently ignored (`set map m k a b` stores `a`), which is why values
 *   are escaped rather than joined.
 * - every answer ends with an empty line and no answer contains one, so a batch of answers is
 *   split on empty lines.
 */
import { X509Certificate } from 'node:crypto';
import { ValidationError } from '../../lib/errors.ts';
import { RuntimeApiError, type RuntimeErrorReason, RuntimeProtocolError } from './errors.ts';

// Control characters (C0 and DEL): HAProxy has no escape for a newline, and the rest have no
// business in a command.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Where an argument sits decides which prefixes HAProxy gives a meaning to. */
export type ArgumentKind = 'identifier' | 'key' | 'value';

/**
 * Encodes one argument for the CLI: escapes `\`, `;` and space with a backslash and rejects
 * what HAProxy cannot take literally. Throws `ValidationError` (never echoing the value).
 */
export function encodeArgument(value: string, kind: ArgumentKind = 'value', label = 'argument'): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new ValidationError(`${label} must be a non-empty string`, { path: label });
  }
  if (CONTROL.test(value)) {
    throw new ValidationError(`${label} contains a control character (newline, tab, …)`, { path: label });
  }
  if (value.includes('<<')) {
    throw new ValidationError(`${label} contains '<<', which HAProxy reads as a payload marker`, {
      path: label,
    });
  }
  if ((kind === 'identifier' || kind === 'key') && (value.startsWith('#') || value.startsWith('@'))) {
    throw new ValidationError(`${label} may not start with '#' or '@' (HAProxy reads an id or a version)`, {
      path: label,
    });
  }
  return value.replace(/[\\; ]/g, (c) => `\\${c}`);
}

/** `#<id>` for a numeric ACL/map id, the escaped file name otherwise. */
export function encodeReference(ref: string | number, label = 'reference'): string {
  if (typeof ref === 'number') {
    if (!Number.isSafeInteger(ref) || ref < 0) {
      throw new ValidationError(`${label} id must be a non-negative integer`, { path: label });
    }
    return `#${ref}`;
  }
  return encodeArgument(ref, 'identifier', label);
}

/** `@<version>` for prepare/commit transactions (unsigned 32-bit in HAProxy). */
export function encodeVersion(version: number): string {
  if (!Number.isSafeInteger(version) || version < 0 || version > 0xffffffff) {
    throw new ValidationError('version must be an unsigned 32-bit integer', { path: 'version' });
  }
  return `@${version}`;
}

/** A command ready to send: the line without its final newline, and an optional payload. */
export interface EncodedCommand {
  /** The verb, for error messages (`add acl`), never the arguments. */
  verb: string;
  line: string;
  payload?: string;
}

/** Builds a command line from a fixed verb and already encoded arguments. */
export function command(verb: string, ...encodedArgs: string[]): EncodedCommand {
  return { verb, line: [verb, ...encodedArgs].join(' ') };
}

/**
 * Normalises a PEM payload for the CLI: CRLF to LF, blank lines dropped (an empty line ends the
 * payload), trailing spaces trimmed. Rejects control characters and an empty result.
 */
export function sanitizePayload(pem: string, label = 'payload'): string {
  if (typeof pem !== 'string') throw new ValidationError(`${label} must be a string`, { path: label });
  const lines = pem
    .replace(/\r\n?/g, '\n')
    .split('\n')
    .map((l) => l.replace(/[ \t]+$/, ''))
    .filter((l) => l.length > 0);
  if (lines.length === 0) throw new ValidationError(`${label} is empty`, { path: label });
  for (const line of lines) {
    if (CONTROL.test(line)) {
      throw new ValidationError(`${label} contains a control character`, { path: label });
    }
  }
  return lines.join('\n');
}

/** Attaches a (sanitised) payload to a command: `<line> <<\n<payload>\n\n`. */
export function withPayload(cmd: EncodedCommand, payload: string): EncodedCommand {
  return { ...cmd, payload: sanitizePayload(payload) };
}

/** A hand-built command (`execute` is public) gets the same line checks as encoded arguments. */
function checkLine(cmd: EncodedCommand): void {
  if (CONTROL.test(cmd.line) || cmd.line.trimEnd().endsWith('<<') || cmd.line.trim() === '') {
    throw new ValidationError(`'${cmd.verb}' line is empty, holds a control character or ends with '<<'`, {
      path: 'command',
    });
  }
}

/** The bytes to write for one command (non-interactive mode: one line, answer, close). */
export function renderRequest(cmd: EncodedCommand): string {
  checkLine(cmd);
  return cmd.payload === undefined ? `${cmd.line}\n` : `${cmd.line} <<\n${cmd.payload}\n\n`;
}

/** The bytes to write for a batch of payload-free commands: one line, `;`-separated. */
export function renderBatch(cmds: readonly EncodedCommand[]): string {
  if (cmds.some((c) => c.payload !== undefined)) {
    throw new ValidationError('a payload command cannot be batched', { path: 'commands' });
  }
  cmds.forEach(checkLine);
  return `${cmds.map((c) => c.line).join(';')}\n`;
}

/**
 * Splits a raw answer into one answer per command: each ends at an empty line. The text of an
 * answer has its final newline removed ('' for a command that printed nothing).
 * Returns fewer answers than sent when the connection was cut; the caller decides.
 */
export function splitAnswers(raw: string): string[] {
  const answers: string[] = [];
  let current: string[] = [];
  const lines = raw.split('\n');
  // A complete answer stream ends with '\n', so the last split element is '' and carries nothing.
  const complete = lines.pop() === '';
  for (const line of lines) {
    if (line === '') {
      answers.push(current.join('\n'));
      current = [];
    } else {
      current.push(line);
    }
  }
  // The master CLI ends some error lines with a single newline and then closes: keep that answer.
  if (current.length > 0 && complete) answers.push(current.join('\n'));
  return answers;
}

/**
 * The single answer of a non-interactive command. `''` (no bytes at all) means HAProxy closed
 * without answering, which only `reload` on the master CLI does on purpose.
 */
export function singleAnswer(verb: string, raw: string): string {
  if (raw === '') throw new RuntimeProtocolError(verb, 'connection closed without an answer');
  if (!raw.endsWith('\n')) throw new RuntimeProtocolError(verb, 'answer truncated (no final newline)');
  return raw.replace(/\n+$/, '');
}

const REASONS: ReadonlyArray<[RegExp, RuntimeErrorReason]> = [
  [/^Unknown command/m, 'unknown-command'],
  [/Permission denied/, 'permission-denied'],
  [/Unknown (ACL|map) identifier/i, 'unknown-identifier'],
  [/Version number/i, 'version-conflict'],
  [/No ongoing transaction/i, 'no-transaction'],
  [/already exists/i, 'already-exists'],
  [
    /No such (server|backend|session|proxy)|entry not found|Not found|does not exist|Can't find/i,
    'not-found',
  ],
  [/not a valid|expects|expected|Invalid|must be/i, 'invalid-argument'],
  [/Can't|can't|unable|failed|error/i, 'rejected'],
];

/** Maps HAProxy's text for a failed command to a reason. */
export function classifyFailure(answer: string): RuntimeErrorReason {
  for (const [pattern, reason] of REASONS) if (pattern.test(answer)) return reason;
  return 'unexpected';
}

const MAX_MESSAGE = 400;

/**
 * HAProxy's answer made fit for an error message: the usage list that follows `Unknown command`
 * dropped, anything PEM-shaped removed (defence in depth: HAProxy does not echo payloads),
 * bounded in length.
 */
export function errorMessage(answer: string): string {
  let text = answer.startsWith('Unknown command') ? (answer.split('\n')[0] ?? '') : answer;
  text = text.replace(/-----BEGIN [^-]+-----[\s\S]*?(-----END [^-]+-----|$)/g, '[pem removed]');
  text = text.replace(/\s*\n\s*/g, ' ').trim();
  return text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE)}…` : text;
}

/** A `RuntimeApiError` for a command whose answer says it failed. */
export function failure(verb: string, answer: string, reason?: RuntimeErrorReason): RuntimeApiError {
  return new RuntimeApiError(verb, errorMessage(answer), reason ?? classifyFailure(answer));
}

/**
 * Answers that mean "this command failed" for commands that answer with text on success too
 * (HAProxy's CLI has no status code). Commands that print nothing on success use `expectEmpty`.
 */
export function expectEmpty(verb: string, answer: string): void {
  if (answer !== '') throw failure(verb, answer);
}

/** Throws unless the answer matches what success looks like for this command. */
export function expectMatch(verb: string, answer: string, success: RegExp): void {
  if (!success.test(answer)) throw failure(verb, answer);
}

/** Throws a `RuntimeApiError` when an answer that should hold data is an error text instead. */
export function rejectErrorText(verb: string, answer: string): void {
  if (
    /^(Unknown command|Permission denied|Unknown (ACL|map) identifier|No such |Can't |Missing |'[^']*' expects )/.test(
      answer,
    )
  ) {
    throw failure(verb, answer);
  }
}

/**
 * Bytes of `tune.bufsize` a batched line leaves unused: HAProxy documents that what it reads at
 * once must fit in the buffer, and long lines did lose commands (see below).
 */
export const BUFFER_RESERVE = 1024;

/**
 * Splits commands into `;`-lines of at most `maxCommands` commands and `maxBytes` bytes
 * (HAProxy documents that what it reads at once must fit in `tune.bufsize`).
 *
 * Transport, measured on 2.6.12 (2 vCPU, with and without two busy loops competing) with
 * 10 000 `add acl @<ver>` commands:
 * - one connection per command: ~0.85 ms each, ~8.5 s in all — fine for single commands only;
 * - `;`-separated commands on one non-interactive line: ~50–130 ms in all. A line longer than
 *   `tune.bufsize` (16 kB) sent with a half-close lost part of its commands in 6 of 20 loaded
 *   runs; lines under the buffer (half-closed: 0 of 60) or long lines without the half-close
 *   (0 of 40) lost none, nor did both together (0 of 50, loaded). Both together are the batched
 *   mode used here (`chunkBatch`; the worker closes after the line by itself);
 * - interactive `prompt` mode, 10 000 pipelined lines then a half-close: HAProxy reset the
 *   connection after ~8 900 answers in 1 of 60 runs (it stops at our shutdown with input still
 *   unread), and its answers need prompt parsing; not used.
 * Several newline-separated lines without `prompt` also "work", but only while HAProxy still has
 * unread input: racy, never used.
 */
export function chunkBatch(
  cmds: readonly EncodedCommand[],
  maxCommands: number,
  maxBytes: number,
): EncodedCommand[][] {
  const chunks: EncodedCommand[][] = [];
  let current: EncodedCommand[] = [];
  let bytes = 0;
  for (const cmd of cmds) {
    const size = Buffer.byteLength(cmd.line) + 1;
    if (size > maxBytes) {
      throw new ValidationError(`'${cmd.verb}' is longer than HAProxy's buffer`, { path: 'commands' });
    }
    if (current.length > 0 && (current.length >= maxCommands || bytes + size > maxBytes)) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(cmd);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

/** The leaf (first certificate) of a PEM bundle, or a `ValidationError`. */
export function leafOf(pem: string): X509Certificate {
  const block = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(pem);
  if (!block) throw new ValidationError('PEM bundle holds no certificate', { path: 'pem' });
  try {
    return new X509Certificate(block[0]);
  } catch (cause) {
    throw new ValidationError('PEM bundle: the first certificate does not parse', { path: 'pem', cause });
  }
}
