/**
 * Runs `sls package` on the repository's serverless.yml in a throw-away copy of the service
 * directory, offline and without AWS credentials, and returns the generated template.
 *
 * The copy links the real sources (lib/, functions/, statemachines/, node_modules/ …), so osls
 * writes its `.serverless/` and bundles there, never in the repository, and two runs can happen
 * at once. A handler or ASL file the configuration names but that does not exist fails packaging.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface PackagedService {
  /** The temporary root (service copy and package output); removed by `cleanup`. */
  root: string;
  /** The `--package` directory. */
  out: string;
  template: CfnTemplate;
  /** osls's `serverless-state.json` (resolved configuration). */
  state: { service: { functions: Record<string, { handler: string; name: string }> } };
  bundleReport: {
    function: string;
    files: string[];
    bundleBytes: number;
    zipBytes: number;
    artifact: string;
  }[];
  cleanup(): Promise<void>;
}

export interface CfnResource {
  Type: string;
  Condition?: string;
  DependsOn?: string | string[];
  Properties?: Record<string, unknown>;
  Metadata?: Record<string, unknown>;
}

export interface CfnTemplate {
  Conditions?: Record<string, unknown>;
  Resources: Record<string, CfnResource>;
  Outputs?: Record<string, unknown>;
}

export interface PackageOptions {
  stage?: string;
  /** `--param key=value` overrides. */
  params?: Record<string, string>;
  /** Kill osls after this long. Default 120 s. */
  timeoutMs?: number;
}

/** Packages the service and parses the output. Always call `cleanup()` (also on failure). */
export async function packageService(options: PackageOptions = {}): Promise<PackagedService> {
  const root = await mkdtemp(join(tmpdir(), 'portcullis-sls-'));
  const cleanup = () => rm(root, { recursive: true, force: true });
  try {
    const service = join(root, 'service');
    const out = join(root, 'package');
    await mkdir(service);
    for (const entry of [
      'lib',
      'proxy',
      'cli',
      'functions',
      'statemachines',
      'node_modules',
      'package.json',
      'tsconfig.json',
      'serverless',
    ]) {
      if (existsSync(join(REPO, entry))) await symlink(join(REPO, entry), join(service, entry));
    }
    await copyFile(join(REPO, 'serverless.yml'), join(service, 'serverless.yml'));

    const args = [join(REPO, 'node_modules/osls/bin/serverless.js'), 'package', '--package', out];
    if (options.stage !== undefined) args.push('--stage', options.stage);
    for (const [key, value] of Object.entries(options.params ?? {})) args.push('--param', `${key}=${value}`);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      AWS_EC2_METADATA_DISABLED: 'true',
      SLS_NOTIFICATIONS_MODE: 'off',
    };
    for (const key of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE'])
      delete env[key];
    await run(process.execPath, args, service, env, options.timeoutMs ?? 120_000);

    const json = async <T>(name: string) => JSON.parse(await readFile(join(out, name), 'utf8')) as T;
    return {
      root,
      out,
      template: await json<CfnTemplate>('cloudformation-template-update-stack.json'),
      state: await json<PackagedService['state']>('serverless-state.json'),
      bundleReport: await json<PackagedService['bundleReport']>('bundle-report.json'),
      cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

function run(
  command: string,
  args: string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-20_000);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`sls package did not finish within ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolvePromise();
      else reject(new Error(`sls package exited with ${code}:\n${output}`));
    });
  });
}
