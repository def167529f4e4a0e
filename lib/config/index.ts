export { formatIssues, loadFleetConfig, parseFleetConfig } from './load.ts';
export {
  canonicalName,
  dnsNameProblem,
  isIpLiteral,
  parseServerName,
  type ServerName,
  serverNameMatches,
} from './names.ts';
export {
  type AccessLogConfig,
  type AllowlistConfig,
  AllowlistConfigSchema,
  BUILT_IN_DENIED_DESTINATIONS,
  type FleetConfig,
  type FleetConfigInput,
  FleetConfigSchema,
  LATTICE_DESTINATIONS,
  type Limits,
  type Listeners,
  LOOPBACK_DESTINATIONS,
  type PassthroughRoute,
  type ProxyProtocolConfig,
  type ResolversConfig,
  type Route,
  type RouteMode,
  RouteSchema,
} from './schema.ts';
