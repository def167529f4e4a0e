/**
 * Reading the fleet's nudge signing key: the one place that turns the nudge-key secret's
 * `AWSCURRENT` version into the HMAC key bytes, for the control plane (Lambda ports), the CLI
 * and the local demo alike.
 */
import { type SecretStore, Stage } from '../ports.ts';
import { NudgeKeySecret, parseSecret } from './formats.ts';

/**
 * The nudge signing key held by `secretId` as `AWSCURRENT` (base64 in the secret, bytes here).
 * Never log the result.
 * @throws NotFoundError when the secret does not exist; ValidationError when it is not a nudge-key document.
 * @example
 * const key = await readNudgeKey(store, 'portcullis/demo/nudge-key');
 */
export async function readNudgeKey(store: SecretStore, secretId: string): Promise<Buffer> {
  const secret = await store.get(secretId, { stage: Stage.Current });
  return Buffer.from(parseSecret(NudgeKeySecret, secretId, secret.value).key, 'base64');
}
