import type { CertificateAuthority, Fleet, Notifier, SecretStore, TaskClient } from '../ports.ts';

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
  /** Clock, for tests. Default: `new Date()`. */
  readonly now?: () => Date;
}
