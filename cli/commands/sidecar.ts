/**
 * `portcullis sidecar --config FILE` — runs the gateway task's sidecar in the foreground until
 * SIGTERM/SIGINT: renders HAProxy's files into the shared directory, then keeps certificates,
 * trust bundle and allowlist in step with the secret store (nudges, poll, HAProxy restarts).
 */
import { ValidationError } from '../../lib/errors.ts';
import { loadSidecarConfig, type SidecarConfig } from '../../proxy/sidecar/config.ts';
import { startSidecar } from '../../proxy/sidecar/main.ts';
import { ExitCode, parseCommandArgs, usageError } from '../command.ts';

export const summary = 'Run the gateway sidecar (certificates, trust, allowlist → HAProxy)';

const HELP = `Usage: portcullis sidecar --config FILE [options]

Runs the sidecar of one gateway task in the foreground (structured JSON logs on stdout).

Options:
  --config FILE      sidecar configuration (YAML or JSON): store, fleetConfig, gatewayDir, admin, …
  --admin-host HOST  overrides admin.host (0.0.0.0 in the container)
  --admin-port PORT  overrides admin.port (9901 by default)
  --check            validate the configuration file and exit
  -h, --help         show this help

Example (file-backed store):
  portcullis sidecar --config examples/sidecar-local.yaml

Exit status: 0 stopped by a signal (or --check passed), 1 invalid configuration, 2 usage error.`;

/** The command's options (shell completion reads them too). */
export const options = {
  config: { type: 'string' },
  'admin-host': { type: 'string' },
  'admin-port': { type: 'string' },
  check: { type: 'boolean' },
} as const;

export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs(argv, options, HELP);
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  if (values.config === undefined) return usageError(`--config is required\n\n${HELP}`);
  let config: SidecarConfig;
  try {
    config = await loadSidecarConfig(values.config);
  } catch (error) {
    if (error instanceof ValidationError) {
      console.error(`portcullis: ${error.message}`);
      return ExitCode.Failure;
    }
    throw error;
  }
  if (values['admin-host'] !== undefined)
    config = { ...config, admin: { ...config.admin, host: values['admin-host'] } };
  if (values['admin-port'] !== undefined) {
    const port = Number(values['admin-port']);
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      return usageError('--admin-port must be a port number');
    config = { ...config, admin: { ...config.admin, port } };
  }
  if (values.check) {
    console.log(`sidecar config ${values.config} is valid`);
    return ExitCode.Ok;
  }
  const sidecar = await startSidecar(config);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await sidecar.close();
  return ExitCode.Ok;
}
