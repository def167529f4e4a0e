export { type AllowlistPolicy, type AllowlistResult, compareCidrs, normaliseAllowlist } from './allowlist.ts';
export {
  type Cidr,
  type CidrParseResult,
  cidrContains,
  cidrContainsAddress,
  cidrOf,
  cidrOverlaps,
  formatIp,
  type IpFamily,
  isWholeFamily,
  normaliseCidr,
  parseCidr,
  parseIPv4,
  parseIPv6,
  parseIp,
} from './cidr.ts';
