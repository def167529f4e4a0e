/**
 * Server-name rules shared by the fleet config and the renderer. A route names either one DNS
 * name or `*.suffix` (exactly one leftmost label, as RFC 6125 matches certificate wildcards).
 * Anything a resolver or a browser could read as an IP address is refused: an IP-literal route
 * would turn the gateway into a proxy to arbitrary addresses.
 */

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** A final label that inet_aton or the WHATWG URL parser would read as a number (`1`, `0x7f`). */
const NUMERIC_LABEL = /^(0x[0-9a-f]*|[0-9]+)$/;

/** Lower-cases and drops one trailing dot: `App.Example.TEST.` → `app.example.test`. */
export function canonicalName(name: string): string {
  const lower = name.trim().toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/**
 * True when the text is (or would be parsed by some client as) an IP address literal:
 * anything with `:` or `[` (IPv6, host:port), or whose last label is numeric — which covers
 * `10.0.0.1`, `127.1`, `0x7f.1`, `0177.0.0.1` and `2130706433`.
 */
export function isIpLiteral(name: string): boolean {
  const canonical = canonicalName(name);
  if (canonical.includes(':') || canonical.includes('[') || canonical.includes(']')) return true;
  const labels = canonical.split('.');
  return NUMERIC_LABEL.test(labels[labels.length - 1] ?? '');
}

/** Why `name` (already canonical) is not a DNS host name, or `undefined` when it is one. */
export function dnsNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  if (name.length > 253) return 'is longer than 253 characters';
  if (isIpLiteral(name)) return 'is an IP literal';
  const labels = name.split('.');
  if (labels.length < 2) return 'needs at least two labels';
  const bad = labels.find((label) => !LABEL.test(label));
  if (bad !== undefined) return `has an invalid label "${bad}"`;
  return undefined;
}

/** A parsed route server name. */
export type ServerName = { kind: 'exact'; name: string } | { kind: 'wildcard'; suffix: string };

/**
 * Parses a route's `serverName`: an exact DNS name or `*.suffix` whose suffix has at least two
 * labels (a wildcard over a whole TLD is refused). Returns a reason string on failure.
 */
export function parseServerName(
  input: string,
): { kind: 'ok'; value: ServerName } | { kind: 'invalid'; reason: string } {
  const name = canonicalName(input);
  const wildcard = name.startsWith('*.');
  const host = wildcard ? name.slice(2) : name;
  const problem = dnsNameProblem(host);
  if (problem !== undefined || host.includes('*')) {
    return { kind: 'invalid', reason: `must be a DNS name or *.suffix, got ${JSON.stringify(input)}` };
  }
  if (wildcard && host.split('.').length < 2) {
    return {
      kind: 'invalid',
      reason: `a wildcard needs a suffix of two labels or more, got ${JSON.stringify(input)}`,
    };
  }
  return { kind: 'ok', value: wildcard ? { kind: 'wildcard', suffix: host } : { kind: 'exact', name: host } };
}

/** True when `host` (canonical) is matched by the route name (`*.a.b` matches `x.a.b`, not `a.b` nor `y.x.a.b`). */
export function serverNameMatches(route: string, host: string): boolean {
  if (!route.startsWith('*.')) return route === host;
  const dot = host.indexOf('.');
  return dot > 0 && host.slice(dot + 1) === route.slice(2);
}
