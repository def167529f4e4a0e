import { type Cidr, isWholeFamily, parseCidr } from './cidr.ts';

/** Limits applied to a source allowlist before it reaches HAProxy. */
export interface AllowlistPolicy {
  /** Accept `0.0.0.0/0` or `::/0` (allow everyone of a family). Default false. */
  allowAll0?: boolean;
  /** Most entries accepted after de-duplication. Default 100 000. */
  maxEntries?: number;
}

/** Invalid entries named one by one in a refusal; the rest are counted. */
export const MAX_REPORTED_ISSUES = 10;

export type AllowlistResult = { kind: 'ok'; cidrs: Cidr[] } | { kind: 'invalid'; issues: string[] };

/**
 * Validates and normalises allowlist entries: each parses as a CIDR (host bits cleared),
 * duplicates collapse, `/0` is refused unless the policy allows it, and the count is bounded.
 * Output order is stable (IPv4 first, then by address and prefix) so files diff cleanly.
 */
export function normaliseAllowlist(
  entries: readonly string[],
  policy: AllowlistPolicy = {},
): AllowlistResult {
  const issues: string[] = [];
  let bad = 0;
  // A list of 100 000 typos must not become a 100 000-line message: the first few are named.
  const report = (issue: string) => {
    bad++;
    if (bad <= MAX_REPORTED_ISSUES) issues.push(issue);
  };
  const byText = new Map<string, Cidr>();
  entries.forEach((entry, index) => {
    const parsed = parseCidr(entry);
    if (parsed.kind === 'invalid') {
      report(`${index}: ${parsed.reason}`);
      return;
    }
    if (isWholeFamily(parsed.cidr) && policy.allowAll0 !== true) {
      report(`${index}: ${parsed.cidr.text} allows every address; set allowlist.allowAll0 to accept it`);
      return;
    }
    byText.set(parsed.cidr.text, parsed.cidr);
  });
  if (bad > MAX_REPORTED_ISSUES) issues.push(`… and ${bad - MAX_REPORTED_ISSUES} more invalid entries`);
  const max = policy.maxEntries ?? 100_000;
  if (byText.size > max)
    issues.push(`${byText.size} entries exceed the limit of ${max} (allowlist.maxEntries)`);
  if (issues.length > 0) return { kind: 'invalid', issues };
  return { kind: 'ok', cidrs: [...byText.values()].sort(compareCidrs) };
}

/** Orders IPv4 before IPv6, then by address bytes, then by prefix length. */
export function compareCidrs(a: Cidr, b: Cidr): number {
  if (a.family !== b.family) return a.family - b.family;
  for (let i = 0; i < a.bytes.length; i++) {
    const d = a.bytes[i]! - b.bytes[i]!;
    if (d !== 0) return d;
  }
  return a.prefix - b.prefix;
}
