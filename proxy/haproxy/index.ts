export {
  capabilitiesOf,
  HAPROXY_RELEASE,
  type HaproxyCapabilities,
  type HaproxyVersion,
  haproxyBinary,
  parseHaproxyVersion,
} from './capabilities.ts';
export { type GatewayLayout, gatewayLayout } from './layout.ts';
export {
  CONTAINER_ROOT,
  cliCommand,
  containerLayout,
  haproxyArgs,
  type RunningHaproxy,
  type StartOptions,
  startHaproxy,
} from './process.ts';
export {
  BACKEND,
  deniedDestinations,
  FRONTEND,
  parseSessionKey,
  READY_KEY,
  REFUSAL,
  RESOLVERS,
  type Refusal,
  type RenderedFile,
  type RenderedGateway,
  type RenderOptions,
  ROUTE_FILES,
  renderAllowlist,
  renderGateway,
  SESSION_TABLE,
} from './render.ts';
export { CLIENT_HELLO_LUA_FILE } from './render-lua.ts';
export {
  type KeptResolution,
  keepsResolutions,
  keptResolutions,
  RESOLUTION_KEEPALIVE_BACKEND,
} from './render-resolution.ts';
export { writeFileAtomic, writeGateway } from './render-write.ts';
