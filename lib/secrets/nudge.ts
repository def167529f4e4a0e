/**
 * Nudge signatures: the control plane tells a sidecar "apply secret X (version V) now" over
 * plain HTTP inside the VPC, so the request is authenticated with an HMAC over a timestamp and
 * the exact body, and a sidecar accepts it only inside a short window and only once.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const NudgeHeaders = {
  timestamp: 'x-portcullis-timestamp',
  signature: 'x-portcullis-signature',
} as const;

/** How far a nudge's timestamp may be from the sidecar's clock. */
export const NUDGE_WINDOW_MS = 60_000;

export function signNudge(key: Buffer, timestampMs: number, body: string): string {
  return createHmac('sha256', key).update(`${timestampMs}\n${body}`).digest('hex');
}

export type NudgeCheck =
  | { kind: 'ok' }
  | { kind: 'invalid'; reason: 'malformed' | 'stale' | 'bad-signature' | 'replayed' };

/**
 * Verifies a nudge. `seen` remembers signatures inside the window so that a captured request
 * cannot be replayed; entries older than the window are dropped on every call.
 */
export function verifyNudge(
  key: Buffer,
  headers: { timestamp: string | undefined; signature: string | undefined },
  body: string,
  nowMs: number,
  seen: Map<string, number>,
): NudgeCheck {
  const { timestamp, signature } = headers;
  if (
    timestamp === undefined ||
    signature === undefined ||
    !/^\d{1,16}$/.test(timestamp) ||
    !/^[0-9a-f]{64}$/.test(signature)
  ) {
    return { kind: 'invalid', reason: 'malformed' };
  }
  const at = Number(timestamp);
  if (Math.abs(nowMs - at) > NUDGE_WINDOW_MS) return { kind: 'invalid', reason: 'stale' };
  const expected = Buffer.from(signNudge(key, at, body), 'hex');
  if (!timingSafeEqual(expected, Buffer.from(signature, 'hex')))
    return { kind: 'invalid', reason: 'bad-signature' };
  for (const [sig, when] of seen) if (nowMs - when > 2 * NUDGE_WINDOW_MS) seen.delete(sig);
  if (seen.has(signature)) return { kind: 'invalid', reason: 'replayed' };
  seen.set(signature, nowMs);
  return { kind: 'ok' };
}
