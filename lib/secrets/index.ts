export { AllowlistSecret, CertificateSecret, NudgeKeySecret, parseSecret, TrustSecret } from './formats.ts';
export { NUDGE_WINDOW_MS, type NudgeCheck, NudgeHeaders, signNudge, verifyNudge } from './nudge.ts';
export { readNudgeKey } from './nudge-key.ts';
