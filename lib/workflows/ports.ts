import type { CertificateAuthority, Fleet, Notifier, SecretStore, TaskClient } from '../ports.ts';
import type { ObjectStore } from '../secrets/allowlist-storage.ts';

/**
 * Everything a control-plane step talks to. The Lambda entries fill it with AWS adapters
 * (built lazily from the environment), the local runner with the embedded ones; the steps are
 * the same code either way.
 */
export interface ControlPlanePorts {
  /** The fleet this deployment manages (`FLEET_NAME`); an input naming another fleet is refused. */
  readonly fleetName: string;
  /** The secret holding the fleet config (`FLEET_CONFIG_SECRET_ID`). */
  readonly fleetConfigSecretId: string;
  readonly store: SecretStore;
  readonly authority: CertificateAuthority;
  readonly fleet: Fleet;
  readonly taskClient: TaskClient;
  readonly notifier: Notifier;
  /**
   * Where allowlists too large for a secret value are kept (`ALLOWLIST_BUCKET`, the fleet's
   * `ALLOWLIST_PREFIX`); absent: only lists whose document fits the secret can be staged.
   */
  readonly allowlistObjects?: { readonly store: ObjectStore; readonly prefix: string };
  /** Clock, for tests. Default: `new Date()`. */
  readonly now?: () => Date;
}
