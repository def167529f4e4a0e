/**
 * IPv4/IPv6 CIDR parsing, normalisation and containment, without sockets. The gateway renders
 * these into HAProxy ACL files and the sidecar validates allowlists with them, so both agree on
 * one canonical text per network (host bits cleared, RFC 5952 for IPv6). Addresses are read and
 * written by `lib/net/ip.ts`, the one IP codec of the project.
 */

import { formatIp, parseIp } from '../net/ip.ts';

/** An address family: 4 (IPv4) or 6 (IPv6). */
export type IpFamily = 4 | 6;

/** A network: its family, address bytes with the host bits cleared, and prefix length. */
export interface Cidr {
  readonly family: IpFamily;
  /** 4 or 16 bytes, host bits zero. */
  readonly bytes: Uint8Array;
  readonly prefix: number;
  /** Canonical text, always with a prefix length (`10.0.0.0/8`, `fd00:ec2:80::/64`). */
  readonly text: string;
}

/** Result of parsing untrusted text: a tagged value instead of an exception. */
export type CidrParseResult = { kind: 'ok'; cidr: Cidr } | { kind: 'invalid'; reason: string };

function maskBytes(bytes: Uint8Array, prefix: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    out[i] = bits === 0 ? 0 : bytes[i]! & ((0xff << (8 - bits)) & 0xff);
  }
  return out;
}

/** Builds a `Cidr` from address bytes and a prefix, clearing host bits. */
export function cidrOf(bytes: Uint8Array, prefix: number): Cidr {
  const family: IpFamily = bytes.length === 4 ? 4 : 6;
  const max = family === 4 ? 32 : 128;
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) {
    throw new RangeError(`prefix length must be 0..${max}, got ${prefix}`);
  }
  const masked = maskBytes(bytes, prefix);
  return { family, bytes: masked, prefix, text: `${formatIp(masked)}/${prefix}` };
}

/**
 * Parses `address/prefix` or a bare address (a host: /32 or /128). Host bits are cleared
 * (`10.1.2.3/8` → `10.0.0.0/8`): an allowlist entry means the network it names.
 */
export function parseCidr(input: string): CidrParseResult {
  const text = input.trim();
  if (text === '') return { kind: 'invalid', reason: 'empty' };
  const slash = text.indexOf('/');
  const addressText = slash < 0 ? text : text.slice(0, slash);
  const bytes = parseIp(addressText);
  if (bytes === undefined)
    return { kind: 'invalid', reason: `not an IPv4 or IPv6 address: "${addressText}"` };
  const max = bytes.length === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const prefixText = text.slice(slash + 1);
    if (!/^(0|[1-9]\d{0,2})$/.test(prefixText) || Number(prefixText) > max) {
      return { kind: 'invalid', reason: `prefix length must be 0..${max}, got "${prefixText}"` };
    }
    prefix = Number(prefixText);
  }
  return { kind: 'ok', cidr: cidrOf(bytes, prefix) };
}

/** Canonical text of a CIDR, or `undefined` when the input is not one. */
export function normaliseCidr(input: string): string | undefined {
  const parsed = parseCidr(input);
  return parsed.kind === 'ok' ? parsed.cidr.text : undefined;
}

/** True when the address bytes lie inside `cidr` (same family only: no IPv4-mapped magic). */
export function cidrContainsAddress(cidr: Cidr, address: Uint8Array): boolean {
  if (address.length !== cidr.bytes.length) return false;
  const masked = maskBytes(address, cidr.prefix);
  return masked.every((b, i) => b === cidr.bytes[i]);
}

/** True when every address of `inner` is inside `outer`. */
export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  return (
    outer.family === inner.family && inner.prefix >= outer.prefix && cidrContainsAddress(outer, inner.bytes)
  );
}

/** True when the two networks share at least one address. */
export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  return cidrContains(a, b) || cidrContains(b, a);
}

/** `::ffff:0.0.0.0`: the first IPv4-mapped IPv6 address. */
const IPV4_MAPPED = new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0]);

/**
 * True for `0.0.0.0/0` and `::/0` (every address of the family), and for IPv6 networks holding
 * all of `::ffff:0:0/96` (`::ffff:0:0/96`, `::/80`, …): HAProxy matches IPv4 clients against
 * IPv4-mapped entries, so such an entry admits every IPv4 address just like `0.0.0.0/0`.
 */
export function isWholeFamily(cidr: Cidr): boolean {
  if (cidr.prefix === 0) return true;
  return cidr.family === 6 && cidr.prefix <= 96 && cidrContainsAddress(cidr, IPV4_MAPPED);
}
