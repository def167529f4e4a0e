/**
 * The HAProxy the tests run: `HAPROXY_BIN`, else `haproxy` from PATH (the same rule as the
 * product's `haproxyBinary()`), with the capabilities of its version. Tests never assume a
 * release: where releases differ they read `HAPROXY.capabilities`.
 */
import { expect } from 'vitest';
import {
  binaryVersion,
  capabilitiesOf,
  checkConfig,
  type HaproxyCapabilities,
  haproxyBinary,
} from '../../proxy/haproxy/capabilities.ts';

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
