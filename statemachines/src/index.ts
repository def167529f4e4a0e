/** Every state machine of the stack, by the name of its `statemachines/<name>.asl.json`. */
import type { StateMachine } from './asl.ts';
import { convergeTask } from './converge-task.ts';
import { rotateCertificate } from './rotate-certificate.ts';
import { rotateCertificates } from './rotate-certificates.ts';
import { updateAllowlist } from './update-allowlist.ts';

export const STATE_MACHINES: Readonly<Record<string, StateMachine>> = {
  'converge-task': convergeTask,
  'rotate-certificate': rotateCertificate,
  'rotate-certificates': rotateCertificates,
  'update-allowlist': updateAllowlist,
};

/** The committed JSON text of a machine: what `npm run asl` writes. */
export function aslText(machine: StateMachine): string {
  return `${JSON.stringify(machine, null, 2)}\n`;
}
