// Re-exported so that callers holding CIDRs can read addresses without a second import path;
// the codec itself lives in lib/net/ip.ts.
export { formatIp, parseIPv4, parseIPv6, parseIp } from '../net/ip.ts';
export { type AllowlistPolicy, type AllowlistResult, compareCidrs, normaliseAllowlist } from './allowlist.ts';
export {
  type Cidr,
  type CidrParseResult,
  cidrContains,
  cidrContainsAddress,
  cidrOf,
  cidrOverlaps,
  type IpFamily,
  isWholeFamily,
  normaliseCidr,
  parseCidr,
} from './cidr.ts';
