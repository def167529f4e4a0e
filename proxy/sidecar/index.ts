export {
  loadSidecarConfig,
  parseSidecarConfig,
  type SidecarConfig,
  type SidecarConfigInput,
  SidecarConfigSchema,
} from './config.ts';
export { ApplyFailed, ContentRejected, NudgeUnauthorized, SidecarNotReady } from './errors.ts';
export { type LocalTask, type LocalTaskOptions, startLocalTask } from './local-task.ts';
export { jsonLogger, type Logger } from './log.ts';
export {
  hostnamesFor,
  interfaceAddresses,
  loadedCertificates,
  objectRefs,
  type RunningSidecar,
  type SidecarDeps,
  startSidecar,
} from './main.ts';
export { parseStickTable, renderMetrics, type TlsCounters, tlsCountersFrom } from './metrics.ts';
export {
  initialState,
  nudgeTarget,
  type ObjectRef,
  Phase,
  pollTarget,
  reduce,
  type SidecarEffect,
  type SidecarEvent,
  type SidecarState,
  type StoreView,
  toTaskStatus,
} from './state.ts';
export {
  type Checked,
  checkAllowlistDocument,
  checkCertificateDocument,
  checkFleetDocument,
  checkNudgeKeyDocument,
  checkTrustDocument,
} from './validate.ts';
