import type { TaskStatus } from '../ports.ts';

/** A fleet secret and the version every task should serve (its `AWSCURRENT`). */
export type DesiredSecret =
  | { kind: 'certificate'; name: string; secretId: string; versionId: string }
  | { kind: 'allowlist'; secretId: string; versionId: string }
  | { kind: 'trust'; secretId: string; versionId: string };

/** The version a task reports for `secret`, if it reports one. */
export function servedVersion(status: TaskStatus, secret: DesiredSecret): string | undefined {
  switch (secret.kind) {
    case 'certificate':
      return status.certificates[secret.name]?.versionId;
    case 'allowlist':
      return status.allowlist?.versionId;
    case 'trust':
      return status.trust?.versionId;
  }
}

/** The secrets a task serves in another version than desired (or not at all). */
export function staleSecrets(status: TaskStatus, desired: readonly DesiredSecret[]): DesiredSecret[] {
  return desired.filter((secret) => servedVersion(status, secret) !== secret.versionId);
}
