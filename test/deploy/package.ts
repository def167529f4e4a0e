/**
 * Runs `sls package` on the repository's serverless.yml in a throw-away copy of the service
 * directory, offline and without AWS credentials, and returns the generated template.
 *
 * The copy links the real sources (lib/, proxy/, node_modules/ …). A handler or ASL file the
 * configuration names but that does not exist yet is replaced by a stand-in inside the copy
 * (never in the repository) and listed in `standIns`, so the tests can say so.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Which functions a stand-in state machine invokes (only used while the real ASL is missing). */
const STAND_IN_MACHINES: Record<string, string[]> = {
  'rotate-certificates': [
    'PlanRotation',
    'IssueCertificate',
    'GetCertificate',
    'StageCertificate',
    'ListTasks',
    'NudgeTask',
    'VerifyTask',
    'PromoteSecret',
    'RollService',
    'CheckRollout',
    'RevokeCertificate',
    'RollbackRotation',
    'Notify',
  ],
  'update-allowlist': [
    'ValidateAllowlist',
    'StageAllowlist',
    'ListTasks',
    'NudgeTask',
    'VerifyTask',
    'PromoteSecret',
    'RollbackAllowlist',
    'Notify',
  ],
  'converge-task': ['ConvergeTask'],
};

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
  /** Repository-relative paths that did not exist and were packaged as stand-ins. */
  standIns: string[];
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

function standInHandler(name: string): string {
  return `// Stand-in for ${name}: the real handler did not exist when this package was built.\nexport const handler = async (event: unknown) => event;\n`;
}

function standInMachine(machine: string): string {
  const functions = STAND_IN_MACHINES[machine] ?? [];
  const names = functions.map((fn) => `${fn}Step`);
  const states = Object.fromEntries(
    functions.map((fn, index) => [
      names[index],
      {
        Type: 'Task',
        Resource: 'arn:aws:states:::lambda:invoke',
        Parameters: { FunctionName: { 'Fn::GetAtt': [`${fn}LambdaFunction`, 'Arn'] }, 'Payload.$': '$' },
        ResultSelector: { 'result.$': '$.Payload' },
        TimeoutSeconds: 30,
        ...(index + 1 < names.length ? { Next: names[index + 1] } : { End: true }),
      },
    ]),
  );
  return `${JSON.stringify({ Comment: `stand-in for ${machine}`, StartAt: names[0], States: states }, null, 2)}\n`;
}

/** Packages the service and parses the output. Always call `cleanup()` (also on failure). */
export async function packageService(options: PackageOptions = {}): Promise<PackagedService> {
  const root = await mkdtemp(join(tmpdir(), 'portcullis-sls-'));
  const cleanup = () => rm(root, { recursive: true, force: true });
  try {
    const service = join(root, 'service');
    const out = join(root, 'package');
    await mkdir(join(service, 'functions'), { recursive: true });
    await mkdir(join(service, 'statemachines'), { recursive: true });
    for (const entry of [
      'lib',
      'proxy',
      'cli',
      'node_modules',
      'package.json',
      'tsconfig.json',
      'serverless',
    ]) {
      if (existsSync(join(REPO, entry))) await symlink(join(REPO, entry), join(service, entry));
    }
    await copyFile(join(REPO, 'serverless.yml'), join(service, 'serverless.yml'));

    const config = parse(await readFile(join(REPO, 'serverless.yml'), 'utf8')) as {
      functions: Record<string, { handler: string }>;
      stepFunctions: { stateMachines: Record<string, { definition: string }> };
    };
    const standIns: string[] = [];
    for (const fn of Object.values(config.functions)) {
      const module = fn.handler.slice(0, fn.handler.lastIndexOf('.'));
      const source = `${module}.ts`;
      if (existsSync(join(REPO, source))) {
        await symlink(join(REPO, source), join(service, source));
      } else {
        await writeFile(join(service, source), standInHandler(module));
        standIns.push(source);
      }
    }
    for (const machine of Object.values(config.stepFunctions.stateMachines)) {
      const file = /\$\{file\(\.\/(.+)\)\}/.exec(machine.definition)?.[1];
      if (file === undefined) continue;
      if (existsSync(join(REPO, file))) {
        await symlink(join(REPO, file), join(service, file));
      } else {
        await writeFile(
          join(service, file),
          standInMachine(file.replace(/^statemachines\//, '').replace(/\.asl\.json$/, '')),
        );
        standIns.push(file);
      }
    }

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
      standIns,
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
