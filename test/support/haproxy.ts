/**
 * The HAProxy the tests run: `HAPROXY_BIN`, else `haproxy` from PATH (the same rule as the
 * product's `haproxyBinary()`), with the capabilities of its version. Tests never assume a
 * release: where releases differ they read `HAPROXY.capabilities`.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import {
  capabilitiesOf,
  type HaproxyCapabilities,
  type HaproxyVersion,
  haproxyBinary,
  parseHaproxyVersion,
} from '../../proxy/haproxy/capabilities.ts';

const run = promisify(execFile);

/** Asks a binary for its version (`haproxy -v`). */
async function binaryVersion(binary: string): Promise<HaproxyVersion> {
  const { stdout } = await run(binary, ['-v'], { timeout: 10_000 });
  return parseHaproxyVersion(stdout.split('\n')[0] ?? '');
}

interface ConfigCheck {
  readonly valid: boolean;
  /** `[WARNING]` lines, without HAProxy's pid prefix. */
  readonly warnings: string[];
  /** `[ALERT]` lines, without HAProxy's pid prefix. */
  readonly alerts: string[];
  readonly output: string;
}

/**
 * `haproxy -c -V -f FILE`: `-V` makes every release say "Configuration file is valid" (3.x is quiet
 * without it), and the exit status is the verdict. Warnings are returned so callers can refuse them.
 */
async function checkConfig(file: string, binary: string): Promise<ConfigCheck> {
  const result = await run(binary, ['-c', '-V', '-f', file], { timeout: 30_000 }).then(
    ({ stdout, stderr }) => ({ ok: true, output: `${stdout}${stderr}` }),
    (error: { stdout?: string; stderr?: string; code?: unknown }) => {
      if (typeof error.code !== 'number') throw error;
      return { ok: false, output: `${error.stdout ?? ''}${error.stderr ?? ''}` };
    },
  );
  const lines = (tag: string) =>
    result.output
      .split('\n')
      .filter((line) => line.startsWith(`[${tag}]`))
      .map((line) => line.replace(/^\[\w+\]\s+\(\d+\)\s*:\s*/, ''));
  return {
    valid: result.ok && /Configuration file is valid/.test(result.output),
    warnings: lines('WARNING'),
    alerts: lines('ALERT'),
    output: result.output,
  };
}

export const HAPROXY_BIN = haproxyBinary();

const version = await binaryVersion(HAPROXY_BIN);

export const HAPROXY: { bin: string; capabilities: HaproxyCapabilities; label: string } = {
  bin: HAPROXY_BIN,
  capabilities: capabilitiesOf(version),
  label: `HAProxy ${version.text}`,
};

/** `haproxy -c -V`: valid, and without a single warning (on every release the tests run). */
export async function expectValidConfig(file: string, label = file): Promise<void> {
  const check = await checkConfig(file, HAPROXY_BIN);
  expect(check.alerts, `${label}: ${check.output}`).toEqual([]);
  expect(check.warnings, `${label} (${HAPROXY.label})`).toEqual([]);
  expect(check.valid, `${label}: ${check.output}`).toBe(true);
}
