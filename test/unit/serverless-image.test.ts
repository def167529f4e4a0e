/**
 * The sidecar image and the deploy walkthrough kept in step with serverless.yml: the
 * Dockerfile's entrypoint, command, user and volumes match the task definition, and
 * docs/deploy.md documents every parameter with its default.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CONTAINER_ROOT } from '../../proxy/haproxy/process.ts';
import { REPO } from '../deploy/package.ts';

interface Instruction {
  keyword: string;
  args: string;
}

/** Dockerfile instructions (comments dropped, continuation lines joined), grouped by stage. */
function stages(dockerfile: string): Instruction[][] {
  const joined = dockerfile
    .split('\n')
    .filter((line) => !line.trimStart().startsWith('#'))
    .join('\n')
    .replace(/\\\n/g, ' ');
  const result: Instruction[][] = [];
  for (const line of joined.split('\n')) {
    const match = /^\s*([A-Z]+)\s+(.*)$/.exec(line);
    if (match === null) continue;
    const instruction = { keyword: match[1]!, args: match[2]!.trim() };
    if (instruction.keyword === 'FROM') result.push([]);
    result.at(-1)?.push(instruction);
  }
  return result;
}

const json = (instruction: Instruction | undefined) => JSON.parse(instruction?.args ?? 'null') as unknown;

describe('proxy/sidecar/Dockerfile', () => {
  let build: Instruction[];
  let runtime: Instruction[];
  let fleet: { Resources: Record<string, { Properties: Record<string, unknown> }> };
  let params: Record<string, unknown>;

  beforeAll(async () => {
    const all = stages(await readFile(join(REPO, 'proxy/sidecar/Dockerfile'), 'utf8'));
    expect(all.length).toBeGreaterThanOrEqual(2);
    build = all[0]!;
    runtime = all.at(-1)!;
    fleet = parse(await readFile(join(REPO, 'serverless/fleet.yml'), 'utf8'));
    params = (
      parse(await readFile(join(REPO, 'serverless.yml'), 'utf8')) as {
        params: { default: Record<string, unknown> };
      }
    ).params.default;
  });

  const container = (name: string) =>
    (
      fleet.Resources.GatewayTaskDefinition!.Properties.ContainerDefinitions as Record<string, unknown>[]
    ).find((c) => c.Name === name)!;
  const last = (keyword: string) => runtime.filter((i) => i.keyword === keyword).at(-1);

  it('builds the bundle with npm run build in a Node 24 stage and ships only dist/ on a distroless Node 24 base', () => {
    expect(build[0]!.args).toMatch(/node:\$\{NODE_VERSION\}-bookworm-slim AS build$/);
    expect(build.some((i) => i.keyword === 'RUN' && i.args.startsWith('npm ci'))).toBe(true);
    expect(build.some((i) => i.keyword === 'RUN' && i.args.startsWith('npm run build'))).toBe(true);
    expect(runtime[0]!.args).toMatch(/^gcr\.io\/distroless\/nodejs\$\{NODE_VERSION\}-debian12:nonroot$/);
    const copies = runtime.filter((i) => i.keyword === 'COPY').map((i) => i.args);
    expect(copies[0]).toBe('--from=build /src/dist/portcullis.mjs /src/dist/portcullis.mjs.map /app/');
  });

  it('runs the bundled CLI as `sidecar --config …` by default', () => {
    expect(json(last('ENTRYPOINT'))).toEqual([
      '/nodejs/bin/node',
      '--enable-source-maps',
      '/app/portcullis.mjs',
    ]);
    expect(json(last('CMD'))).toEqual(['sidecar', '--config', '/etc/portcullis/sidecar.json']);
  });

  it('runs as a non-root user, the same one the task definition sets for both containers', () => {
    const user = last('USER')?.args;
    expect(user).toMatch(/^[1-9]\d*:[1-9]\d*$/);
    expect(params.runAsUser).toBe(user);
    const fromParam = ['$', '{param:runAsUser}'].join('');
    expect(container('sidecar').User).toBe(fromParam);
    expect(container('gateway').User).toBe(fromParam);
  });

  it('declares the shared gateway directory and the config directory as volumes owned by that user', () => {
    expect(json(last('VOLUME'))).toEqual([CONTAINER_ROOT, '/etc/portcullis']);
    const user = last('USER')!.args;
    for (const path of [CONTAINER_ROOT, '/etc/portcullis']) {
      expect(
        runtime.some(
          (i) =>
            i.keyword === 'COPY' &&
            i.args.startsWith(`--from=build --chown=${user} `) &&
            i.args.endsWith(` ${path}`),
        ),
      ).toBe(true);
    }
  });

  it('matches the task definition: its command is the image CMD and its health check uses the image node', () => {
    expect(container('sidecar').Command).toEqual(json(last('CMD')));
    const node = (json(last('ENTRYPOINT')) as string[])[0];
    expect((container('sidecar').HealthCheck as { Command: string[] }).Command[1]).toBe(node);
    expect(container('sidecar-config').EntryPoint).toEqual([node]);
    expect(last('EXPOSE')?.args).toBe(params.sidecarAdminPort);
  });

  it('keeps the build context free of dependencies, build output and key material', async () => {
    const ignored = (await readFile(join(REPO, '.dockerignore'), 'utf8')).split('\n').map((l) => l.trim());
    expect(ignored).toEqual(expect.arrayContaining(['.git', 'node_modules', 'dist', '*.pem', '*.key']));
  });
});

describe('docs/deploy.md', () => {
  it('documents every serverless.yml parameter with its default', async () => {
    const doc = await readFile(join(REPO, 'docs/deploy.md'), 'utf8');
    const config = parse(await readFile(join(REPO, 'serverless.yml'), 'utf8')) as {
      params: { default: Record<string, unknown> };
    };
    const rows = new Map(
      doc
        .split('\n')
        .map((line) => /^\|\s*`([A-Za-z0-9]+)`\s*\|\s*(.*?)\s*\|.*\|$/.exec(line))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => [m[1]!, m[2]!]),
    );
    const names = Object.keys(config.params.default);
    expect(names.length).toBeGreaterThan(30);
    expect([...rows.keys()].sort()).toEqual([...names].sort());
    for (const [name, value] of Object.entries(config.params.default)) {
      const text = String(value);
      // Defaults built from other parameters or placeholders are described, not copied.
      if (text.includes('${') || text === '') continue;
      expect(rows.get(name), name).toBe(`\`${text}\``);
    }
  });

  it('walks through deploy, init, the first request, manual rotation, allowlist change and teardown', async () => {
    const doc = await readFile(join(REPO, 'docs/deploy.md'), 'utf8');
    for (const step of [
      'npx sls deploy',
      'portcullis init --fleet',
      'curl ',
      'aws stepfunctions start-execution',
      'portcullis rotate',
      'UpdateAllowlistStateMachineArn',
      'npx sls remove',
    ]) {
      expect(doc, step).toContain(step);
    }
  });
});
