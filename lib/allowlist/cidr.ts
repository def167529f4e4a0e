/**
 * IPv4/IPv6 CIDR parsing, normalisation and containment, without sockets. The gateway renders
 * these into HAProxy ACL files and the sidecar validates allowlists with them, so both agree on
 * one canonical text per network (host bits cleared, RFC 5952 for IPv6).
 */

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

const IPV4_OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const HEXTET = /^[0-9a-fA-F]{1,4}$/;

/**
 * Parses strict dotted-quad IPv4 text. Leading zeros are refused: `010.0.0.1` means 8.0.0.1 to
 * inet_aton and 10.0.0.1 to most humans, and an allowlist must not depend on which one reads it.
 */
export function parseIPv4(text: string): Uint8Array | undefined {
  const parts = text.split('.');
  if (parts.length !== 4 || !parts.every((p) => IPV4_OCTET.test(p))) return undefined;
  return Uint8Array.from(parts.map(Number));
}

/** Parses IPv6 text (with `::` and an optional trailing dotted quad); zone ids are refused. */
export function parseIPv6(text: string): Uint8Array | undefined {
  if (text.length < 2 || text.length > 45) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groupsOf = (part: string, v4Tail: boolean): number[] | undefined => {
    if (part === '') return [];
    const pieces = part.split(':');
    const out: number[] = [];
    for (const [i, piece] of pieces.entries()) {
      if (v4Tail && i === pieces.length - 1 && piece.includes('.')) {
        const v4 = parseIPv4(piece);
        if (v4 === undefined) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (HEXTET.test(piece)) {
        out.push(Number.parseInt(piece, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  let groups: number[];
  if (halves.length === 2) {
    const head = groupsOf(halves[0]!, false);
    const tail = groupsOf(halves[1]!, true);
    if (head === undefined || tail === undefined || head.length + tail.length > 7) return undefined;
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    const all = groupsOf(text, true);
    if (all === undefined || all.length !== 8) return undefined;
    groups = all;
  }
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[i * 2] = g >> 8;
    bytes[i * 2 + 1] = g & 0xff;
  });
  return bytes;
}

/** Parses an address of either family; the length of the result (4 or 16) tells which. */
export function parseIp(text: string): Uint8Array | undefined {
  return parseIPv4(text) ?? parseIPv6(text);
}

/** Formats 4 bytes as a dotted quad, 16 bytes as RFC 5952 text (`::ffff:a.b.c.d` when mapped). */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  if (bytes.length !== 16) throw new RangeError(`an IP address has 4 or 16 bytes, not ${bytes.length}`);
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${Array.from(bytes.subarray(12)).join('.')}`;
  }
  // RFC 5952: compress the longest run of two or more zero groups, the first one on a tie.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

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

/** True for `0.0.0.0/0` and `::/0`: every address of the family. */
export function isWholeFamily(cidr: Cidr): boolean {
  return cidr.prefix === 0;
}
