/**
 * Host name matching for certificates, after RFC 6125 §6.4 and the CA/Browser Forum rules:
 * a wildcard is only ever the whole left-most label and stands for exactly one label;
 * partial-label wildcards (`f*.example.com`), wildcards deeper in the name and wildcards over a
 * single-label suffix (`*.com`) never match. Comparison ignores case and one trailing dot.
 * Only DNS subjectAltNames count — never the subject CN (RFC 6125 §6.4.4, as browsers do).
 */
import { isIP } from 'node:net';

const label = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

/**
 * Lowercases a DNS name and strips one trailing dot; `undefined` when it is not a valid name
 * (empty labels, bad characters, over 253 characters). `*` is allowed only as a whole
 * left-most label when `allowWildcard` is set.
 */
export function normaliseHostname(
  name: string,
  options: { allowWildcard?: boolean } = {},
): string | undefined {
  if (typeof name !== 'string') return undefined;
  let host = name.toLowerCase();
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (host.length === 0 || host.length > 253) return undefined;
  const labels = host.split('.');
  for (const [index, part] of labels.entries()) {
    if (part === '*' && index === 0 && options.allowWildcard) continue;
    if (!label.test(part)) return undefined;
  }
  return host;
}

/**
 * Whether the certificate name `pattern` (a DNS SAN, possibly `*.suffix`) matches `hostname`.
 * A wildcard `hostname` (a route like `*.svc.example`) is matched only by the identical
 * wildcard pattern: a certificate for one name cannot serve a whole domain.
 * @example matchesHostname('*.example.com', 'API.example.com.') // true
 * @example matchesHostname('*.example.com', 'a.b.example.com')  // false
 */
export function matchesHostname(pattern: string, hostname: string): boolean {
  const p = normaliseHostname(pattern, { allowWildcard: true });
  const h = normaliseHostname(hostname, { allowWildcard: true });
  if (p === undefined || h === undefined) return false;
  if (isIP(h) !== 0) return false;
  if (!p.startsWith('*.') || h.startsWith('*.')) return p === h;
  const suffix = p.slice(2);
  // A wildcard over one label would cover a whole TLD (`*.com`); without a public-suffix list
  // we refuse just those, which is the check RFC 6125 §7.2 asks for at the least.
  if (!suffix.includes('.')) return false;
  const dot = h.indexOf('.');
  return dot > 0 && h.slice(dot + 1) === suffix;
}

/** The names a certificate presents, as read from its subjectAltName extension. */
export interface PresentedNames {
  dns: string[];
  ip: string[];
}

/** Canonical text for an IP address (IPv6 compressed, lowercase), or `undefined`. */
export function canonicalIp(address: string): string | undefined {
  const version = isIP(address);
  if (version === 4) return address;
  if (version === 6) {
    try {
      return new URL(`http://[${address}]/`).hostname.slice(1, -1);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/**
 * Which of `names` the presented names do not cover. IP literals are matched against IP SANs
 * only; DNS names against DNS SANs with {@link matchesHostname}.
 */
export function uncoveredNames(presented: PresentedNames, names: string[]): string[] {
  const ips = new Set(presented.ip.map((ip) => canonicalIp(ip)).filter((ip) => ip !== undefined));
  return names.filter((name) => {
    const ip = canonicalIp(name.replace(/^\[|\]$/g, ''));
    if (ip !== undefined) return !ips.has(ip);
    return !presented.dns.some((pattern) => matchesHostname(pattern, name));
  });
}
