/**
 * `portcullis init` and `portcullis status` on their AWS path: the real command functions and
 * `openTarget`, with Secrets Manager, Private CA and ECS answered by `aws-sdk-client-mock`
 * (class mocks, so the module-scope clients the CLI builds are caught too). The mocks keep just
 * enough state to behave like the services: secrets with versions and staging labels, a CA
 * that signs the CSR it receives with a test CA generated at run time, an ECS service whose
 * tasks have ENI addresses on loopback, where real HTTP servers stand in for the sidecars.
 */

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ACMPCAClient,
  ACMPCAServiceException,
  GetCertificateAuthorityCertificateCommand,
  type GetCertificateAuthorityCertificateCommandOutput,
  GetCertificateCommand,
  type GetCertificateCommandInput,
  type GetCertificateCommandOutput,
  IssueCertificateCommand,
  type IssueCertificateCommandInput,
  type IssueCertificateCommandOutput,
  ResourceNotFoundException as PcaResourceNotFoundException,
  RequestInProgressException,
} from '@aws-sdk/client-acm-pca';
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { DescribeTasksCommand, ECSClient, ListTasksCommand, type Task } from '@aws-sdk/client-ecs';
import {
  CreateSecretCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
  SecretsManagerServiceException,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { run as initCommand, initFleet } from '../../cli/commands/init.ts';
import { type CurrentState, run as statusCommand, type TaskRow } from '../../cli/commands/status.ts';
import { openTarget } from '../../cli/demo/target.ts';
import { defaultAcmPcaClient, pcaIdempotencyToken } from '../../lib/aws/acm-pca-authority.ts';
import { defaultEcsClient } from '../../lib/aws/ecs-fleet.ts';
import { defaultSecretsManagerClient } from '../../lib/aws/secrets-manager-store.ts';
import { CertificateNotReady } from '../../lib/errors.ts';
import {
  type CertificateAuthorityMaterial,
  certificateInfo,
  createCertificateAuthority,
  issueCertificate,
  keyMatchesCertificate,
  keyPairFromPrivateKey,
} from '../../lib/pki/index.ts';
import type { TaskStatus } from '../../lib/ports.ts';
import { deriveToken, TokenStep } from '../../lib/rotation/tokens.ts';
import type { AwsClientMock, CommandStub } from '../support/aws-mock.ts';
import { mockAwsClient, sdkError } from '../support/aws-mock.ts';
import { FakeSecretsManager, serviceError } from '../support/fake-secrets-manager.ts';

const FLEET = 'edge';
const PREFIX = `portcullis/${FLEET}`;
const CA_ARN =
  'arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/12345678-1234-1234-1234-123456789012';
const TEMPLATE_ARN = 'arn:aws:acm-pca:::template/BlankEndEntityCertificate_APIPassthrough/V1';
const CLUSTER = 'portcullis';
const SERVICE = 'gateway';

const fleetConfig = {
  fleet: FLEET,
  routes: [],
  certificates: [
    {
      name: 'api',
      secretId: `${PREFIX}/cert/api`,
      commonName: 'api.edge.test',
      dns: ['api.edge.test', 'www.edge.test'],
      usage: 'server',
      validityDays: 30,
    },
    {
      name: 'gateway-client',
      secretId: `${PREFIX}/cert/gateway-client`,
      commonName: 'portcullis-edge-gateway',
      uri: ['spiffe://edge/gateway'],
      usage: 'client',
      validityDays: 7,
    },
  ],
  trust: { secretId: `${PREFIX}/trust` },
  nudgeKey: { secretId: `${PREFIX}/nudge-key` },
  allowlist: { source: { secretId: `${PREFIX}/allowlist` } },
};

const sm = mockAwsClient(SecretsManagerClient);
const pca = mockAwsClient(ACMPCAClient);
const ecs = mockAwsClient(ECSClient);
const cfn = mockAwsClient(CloudFormationClient);

/** `callsFake` with an async fake: the library awaits what the fake returns. */
function callsAsync<I, O>(stub: CommandStub<O>, fake: (input: I) => Promise<Partial<O>>): void {
  stub.callsFake(fake as unknown as (input: never) => Partial<O>);
}

/**
 * Private CA as far as the authority adapter uses it: `IssueCertificate` signs the CSR it gets
 * with the test issuing CA (names and usage from `ApiPassthrough`, as the APIPassthrough
 * templates do), `GetCertificate` answers `RequestInProgressException` a configurable number
 * of times first, an idempotency token gives back the same certificate.
 */
class FakePrivateCa {
  readonly issued = new Map<string, { certificatePem: string; pendingAnswers: number }>();
  readonly #tokens = new Map<string, string>();
  readonly refusals: { operation: string; error: Error }[] = [];
  /** How many `GetCertificate` calls answer "in progress" before each certificate is ready. */
  inProgressAnswers = 0;
  readonly #root: CertificateAuthorityMaterial;
  readonly #issuing: CertificateAuthorityMaterial;

  constructor(root: CertificateAuthorityMaterial, issuing: CertificateAuthorityMaterial) {
    this.#root = root;
    this.#issuing = issuing;
  }

  install(mock: AwsClientMock): void {
    callsAsync(mock.on(IssueCertificateCommand), (input: IssueCertificateCommandInput) => this.issue(input));
    mock.on(GetCertificateCommand).callsFake((input: GetCertificateCommandInput) => this.get(input));
    mock
      .on(GetCertificateAuthorityCertificateCommand)
      .callsFake(() => this.caCertificate() as Partial<GetCertificateAuthorityCertificateCommandOutput>);
  }

  #check(operation: string): void {
    const refusal = this.refusals.find((r) => r.operation === operation);
    if (refusal) throw refusal.error;
  }

  async issue(input: IssueCertificateCommandInput): Promise<Partial<IssueCertificateCommandOutput>> {
    this.#check('IssueCertificate');
    if (input.CertificateAuthorityArn !== CA_ARN) {
      throw sdkError(PcaResourceNotFoundException, `no CA ${input.CertificateAuthorityArn}`);
    }
    const known = input.IdempotencyToken === undefined ? undefined : this.#tokens.get(input.IdempotencyToken);
    if (known !== undefined) return { CertificateArn: known };
    const extensions = input.ApiPassthrough?.Extensions;
    const names = extensions?.SubjectAlternativeNames ?? [];
    const eku = extensions?.ExtendedKeyUsage?.map((e) => e.ExtendedKeyUsageType) ?? [];
    const leaf = await issueCertificate(this.#issuing, {
      csrPem: Buffer.from(input.Csr!).toString('utf8'),
      commonName: input.ApiPassthrough?.Subject?.CommonName ?? 'unnamed',
      dns: names.flatMap((n) => (n.DnsName ? [n.DnsName] : [])),
      uri: names.flatMap((n) => (n.UniformResourceIdentifier ? [n.UniformResourceIdentifier] : [])),
      usage: eku.includes('CLIENT_AUTH') ? 'client' : 'server',
      validityDays: input.Validity?.Value ?? 30,
    });
    const arn = `${CA_ARN}/certificate/${leaf.serial}`;
    this.issued.set(arn, { certificatePem: leaf.certificatePem, pendingAnswers: this.inProgressAnswers });
    if (input.IdempotencyToken !== undefined) this.#tokens.set(input.IdempotencyToken, arn);
    return { CertificateArn: arn };
  }

  get(input: GetCertificateCommandInput): Partial<GetCertificateCommandOutput> {
    this.#check('GetCertificate');
    const certificate = this.issued.get(input.CertificateArn ?? '');
    if (input.CertificateAuthorityArn !== CA_ARN || !certificate) {
      throw sdkError(PcaResourceNotFoundException, `no certificate ${input.CertificateArn}`);
    }
    if (certificate.pendingAnswers > 0) {
      certificate.pendingAnswers -= 1;
      throw sdkError(RequestInProgressException, 'The request is still in progress.');
    }
    // PCA's chain runs from the issuing CA up to and including the root.
    return {
      Certificate: certificate.certificatePem.trim(),
      CertificateChain: `${this.#issuing.certificatePem.trim()}\n${this.#root.certificatePem.trim()}`,
    };
  }

  caCertificate() {
    this.#check('GetCertificateAuthorityCertificate');
    return {
      Certificate: this.#issuing.certificatePem.trim(),
      CertificateChain: this.#root.certificatePem.trim(),
    };
  }
}

interface Captured {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command function in-process, catching what it prints. */
async function capture(command: () => Promise<number>): Promise<Captured> {
  const out: string[] = [];
  const err: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => {
    out.push(args.map(String).join(' '));
  });
  const error = vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => {
    err.push(`${args.map(String).join(' ')}\n`);
  });
  const write = vi.spyOn(process.stderr, 'write').mockImplementation(((chunk: string | Uint8Array) => {
    err.push(String(chunk));
    return true;
  }) as typeof process.stderr.write);
  try {
    const code = await command();
    return { code, stdout: out.join('\n'), stderr: err.join('') };
  } finally {
    log.mockRestore();
    error.mockRestore();
    write.mockRestore();
  }
}

/** Whether `text` carries a PEM private key (a boolean, so a failing assertion does not print the key). */
function printsKey(text: string): boolean {
  return /PRIVATE KEY/.test(text);
}

function lastJson<T>(text: string): T {
  const lines = text.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as T;
}

/** Settings the CLI reads from the environment; cleared so the flags under test decide. */
const TARGET_ENV = [
  'FLEET_CONFIG_SECRET_ID',
  'CA_ARN',
  'CA_TEMPLATE_ARN',
  'ECS_CLUSTER',
  'ECS_SERVICE',
  'SIDECAR_ADMIN_PORT',
  'VERIFY_PORT',
];
const savedEnv = new Map<string, string | undefined>();
let dir: string;
let configFile: string;
let root: CertificateAuthorityMaterial;
let issuing: CertificateAuthorityMaterial;
let secrets: FakeSecretsManager;
let ca: FakePrivateCa;

beforeAll(async () => {
  for (const name of TARGET_ENV) {
    savedEnv.set(name, process.env[name]);
    delete process.env[name];
  }
  dir = await mkdtemp(join(tmpdir(), 'portcullis-cli-aws-'));
  configFile = join(dir, 'fleet.yaml');
  await writeFile(configFile, JSON.stringify(fleetConfig));
  root = await createCertificateAuthority({ commonName: 'Portcullis Test Root' });
  issuing = await createCertificateAuthority({ commonName: 'Portcullis Test Issuing CA', issuer: root });
});

afterAll(async () => {
  for (const [name, value] of savedEnv) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  sm.reset();
  pca.reset();
  ecs.reset();
  secrets = new FakeSecretsManager();
  ca = new FakePrivateCa(root, issuing);
  secrets.install(sm);
  ca.install(pca);
});

afterEach(() => {
  sm.reset();
  pca.reset();
  ecs.reset();
});

const initArgs = [
  '--fleet',
  FLEET,
  '--config',
  '<config>',
  '--allowlist',
  '203.0.113.0/24',
  '--ca-arn',
  CA_ARN,
  '--template-arn',
  TEMPLATE_ARN,
];

function init(...extra: string[]): Promise<Captured> {
  return capture(() => initCommand([...initArgs.map((a) => (a === '<config>' ? configFile : a)), ...extra]));
}

const expectedSecrets = [
  `${PREFIX}/allowlist`,
  `${PREFIX}/cert/api`,
  `${PREFIX}/cert/gateway-client`,
  `${PREFIX}/fleet-config`,
  `${PREFIX}/nudge-key`,
  `${PREFIX}/trust`,
];

function writes() {
  return {
    created: sm.commandCalls(CreateSecretCommand).length,
    put: sm.commandCalls(PutSecretValueCommand).length,
    staged: sm.commandCalls(UpdateSecretVersionStageCommand).length,
    issued: pca.commandCalls(IssueCertificateCommand).length,
  };
}

describe('portcullis init against AWS', () => {
  it('creates exactly the fleet secrets under portcullis/<fleet>/ and issues one certificate per fleet-config certificate', async () => {
    const run = await init();

    expect(run.code, run.stderr).toBe(0);
    // The next deploy step: a stack deployed before its secrets runs no task until deployed again.
    expect(run.stdout).toContain('deploy again with the same parameters');
    const created = sm.commandCalls(CreateSecretCommand).map((c) => c.args[0].input.Name);
    expect([...created].sort()).toEqual(expectedSecrets);
    expect(created[0]).toBe(`${PREFIX}/fleet-config`);
    for (const call of sm.commandCalls(CreateSecretCommand)) {
      expect(call.args[0].input.ClientRequestToken).toMatch(/^[0-9a-f-]{36}$/);
    }
    expect(sm.commandCalls(PutSecretValueCommand)).toHaveLength(0);

    const issues = pca.commandCalls(IssueCertificateCommand).map((c) => c.args[0].input);
    expect(issues).toHaveLength(fleetConfig.certificates.length);
    expect(issues.map((i) => i.ApiPassthrough?.Subject?.CommonName)).toEqual([
      'api.edge.test',
      'portcullis-edge-gateway',
    ]);
    for (const input of issues) {
      expect(input.CertificateAuthorityArn).toBe(CA_ARN);
      expect(input.TemplateArn).toBe(TEMPLATE_ARN);
      expect(input.IdempotencyToken).toMatch(/^[0-9a-f]{36}$/);
    }
    expect(new Set(issues.map((i) => i.IdempotencyToken)).size).toBe(issues.length);
    expect(issues.map((i) => i.Validity)).toEqual([
      { Type: 'DAYS', Value: 30 },
      { Type: 'DAYS', Value: 7 },
    ]);

    fleetConfig.certificates.forEach((spec, index) => {
      const bundle = JSON.parse(secrets.current(spec.secretId).value) as Record<string, string>;
      // The PCA token is bound to this certificate's key: a retry of the same request reuses it.
      const { publicKeyPem } = keyPairFromPrivateKey(bundle.privateKeyPem!);
      expect(issues[index]!.IdempotencyToken).toBe(
        pcaIdempotencyToken(deriveToken(`init:${FLEET}`, `${spec.name}:${publicKeyPem}`, TokenStep.Issue)),
      );
      const issued = ca.issued.get(bundle.certificateId!);
      expect(issued, spec.name).toBeDefined();
      expect(bundle.certificatePem!.trim()).toBe(issued!.certificatePem.trim());
      expect(keyMatchesCertificate(bundle.privateKeyPem!, bundle.certificatePem!), spec.name).toBe(true);
      expect(bundle.serial).toBe(certificateInfo(bundle.certificatePem!).serial);
      // The chain stops below the root PCA sends along.
      expect(bundle.chainPem!.trim()).toBe(issuing.certificatePem.trim());
      expect(run.stdout).toMatch(new RegExp(`issued +certificate +${spec.secretId} serial ${bundle.serial}`));
    });
    const trust = JSON.parse(secrets.current(`${PREFIX}/trust`).value) as { caBundlePem: string };
    expect(trust.caBundlePem).toBe(`${issuing.certificatePem.trim()}\n${root.certificatePem.trim()}\n`);
    const allowlist = JSON.parse(secrets.current(`${PREFIX}/allowlist`).value) as { cidrs: string[] };
    expect(allowlist.cidrs).toEqual(['203.0.113.0/24']);
    const nudge = JSON.parse(secrets.current(`${PREFIX}/nudge-key`).value) as { key: string };
    expect(Buffer.from(nudge.key, 'base64').length).toBe(32);
    expect(JSON.parse(secrets.current(`${PREFIX}/fleet-config`).value)).toEqual(fleetConfig);

    // Nothing secret reaches the terminal (asserted as booleans so a failure does not print it either).
    const printed = run.stdout + run.stderr;
    expect(printsKey(printed), 'a private key was printed').toBe(false);
    expect(printed.includes(nudge.key), 'the nudge key was printed').toBe(false);
  });

  it('changes nothing on a second run, with or without the config file', async () => {
    const first = await init();
    expect(first.code, first.stderr).toBe(0);
    const before = writes();
    const serials = fleetConfig.certificates.map(
      (spec) => (JSON.parse(secrets.current(spec.secretId).value) as { serial: string }).serial,
    );

    const second = await init('--json');
    const bare = await capture(() =>
      initCommand(['--fleet', FLEET, '--ca-arn', CA_ARN, '--template-arn', TEMPLATE_ARN, '--json']),
    );

    for (const run of [second, bare]) {
      expect(run.code, run.stderr).toBe(0);
      const steps = lastJson<{ steps: { action: string; kind: string; serial?: string }[] }>(
        run.stdout,
      ).steps;
      expect(steps.map((s) => s.action)).toEqual(Array(6).fill('kept'));
      expect(steps.filter((s) => s.kind === 'certificate').map((s) => s.serial)).toEqual(serials);
    }
    expect(writes()).toEqual(before);
  });

  it('completes a first run that failed part-way, keeping what it had created', async () => {
    secrets.refusals.push({
      operation: 'CreateSecret',
      secretId: `${PREFIX}/allowlist`,
      error: serviceError(SecretsManagerServiceException, 'ThrottlingException', 'Rate exceeded'),
    });
    const failed = await init();
    expect(failed.code).toBe(1);
    const partial = [...secrets.secrets.keys()].sort();
    expect(partial).toEqual([`${PREFIX}/fleet-config`, `${PREFIX}/nudge-key`, `${PREFIX}/trust`]);
    const nudgeKey = secrets.current(`${PREFIX}/nudge-key`);
    const nudgeKeyVersions = [...secrets.secrets.get(`${PREFIX}/nudge-key`)!.keys()];
    expect(pca.commandCalls(IssueCertificateCommand)).toHaveLength(0);

    secrets.refusals.length = 0;
    const again = await init('--json');

    expect(again.code, again.stderr).toBe(0);
    const steps = lastJson<{ steps: { secretId: string; action: string }[] }>(again.stdout).steps;
    expect(Object.fromEntries(steps.map((s) => [s.secretId, s.action]))).toEqual({
      [`${PREFIX}/fleet-config`]: 'kept',
      [`${PREFIX}/trust`]: 'kept',
      [`${PREFIX}/nudge-key`]: 'kept',
      [`${PREFIX}/allowlist`]: 'created',
      [`${PREFIX}/cert/api`]: 'issued',
      [`${PREFIX}/cert/gateway-client`]: 'issued',
    });
    expect([...secrets.secrets.get(`${PREFIX}/nudge-key`)!.keys()]).toEqual(nudgeKeyVersions);
    expect(secrets.current(`${PREFIX}/nudge-key`).value === nudgeKey.value, 'the nudge key changed').toBe(
      true,
    );
    expect([...secrets.secrets.keys()].sort()).toEqual(expectedSecrets);
    expect(pca.commandCalls(IssueCertificateCommand)).toHaveLength(2);
  });

  it('issues over the placeholder an interrupted first rotation left as AWSCURRENT', async () => {
    const secretId = `${PREFIX}/cert/api`;
    secrets.secrets.set(
      secretId,
      new Map([
        [
          'placeholder-0000-4000-8000-000000000000',
          {
            value: JSON.stringify({ kind: 'portcullis/placeholder' }),
            stages: ['AWSCURRENT'],
            created: new Date(),
          },
        ],
      ]),
    );

    const run = await init();

    expect(run.code, run.stderr).toBe(0);
    expect(sm.commandCalls(CreateSecretCommand).map((c) => c.args[0].input.Name)).not.toContain(secretId);
    const puts = sm.commandCalls(PutSecretValueCommand).map((c) => c.args[0].input);
    expect(puts.map((p) => [p.SecretId, p.VersionStages])).toEqual([[secretId, ['AWSCURRENT']]]);
    const bundle = JSON.parse(secrets.current(secretId).value) as Record<string, string>;
    expect(keyMatchesCertificate(bundle.privateKeyPem!, bundle.certificatePem!)).toBe(true);
    expect(secrets.secrets.get(secretId)!.get('placeholder-0000-4000-8000-000000000000')!.stages).toEqual([
      'AWSPREVIOUS',
    ]);
  });

  it('polls again when Private CA answers RequestInProgressException, without issuing twice', async () => {
    ca.inProgressAnswers = 2;

    const run = await init();

    expect(run.code, run.stderr).toBe(0);
    const arns = [...ca.issued.keys()];
    expect(arns).toHaveLength(2);
    const polls = pca.commandCalls(GetCertificateCommand).map((c) => c.args[0].input.CertificateArn);
    for (const arn of arns) expect(polls.filter((p) => p === arn)).toHaveLength(3);
    expect(pca.commandCalls(IssueCertificateCommand)).toHaveLength(2);
    for (const spec of fleetConfig.certificates) {
      const bundle = JSON.parse(secrets.current(spec.secretId).value) as { certificateId: string };
      expect(arns).toContain(bundle.certificateId);
    }
  });

  it('gives up with CertificateNotReady once its bounded wait for the CA is over, writing no certificate', async () => {
    ca.inProgressAnswers = Number.MAX_SAFE_INTEGER;
    const target = await openTarget({ fleet: FLEET, 'ca-arn': CA_ARN }, { needAuthority: true });

    const attempt = initFleet({
      store: target.store,
      authority: target.authority(),
      fleet: FLEET,
      fleetConfigText: JSON.stringify(fleetConfig),
      issueTimeoutMs: 500,
    });

    await expect(attempt).rejects.toThrow(CertificateNotReady);
    await expect(attempt).rejects.toThrow(/GetCertificate on 'arn:aws:acm-pca:.*\/certificate\//);
    const polls = pca.commandCalls(GetCertificateCommand).length;
    expect(polls).toBeGreaterThan(1);
    expect(polls).toBeLessThan(10);
    expect(secrets.secrets.has(`${PREFIX}/cert/api`)).toBe(false);
    expect(pca.commandCalls(IssueCertificateCommand)[0]!.args[0].input.IdempotencyToken).toMatch(
      /^[0-9a-f]{36}$/,
    );
  });

  const accessDenied = (what: string) =>
    `User: arn:aws:iam::111122223333:user/ops is not authorized to perform: ${what}`;

  it.each([
    {
      what: 'Secrets Manager denying DescribeSecret on the fleet config',
      refuse: () =>
        secrets.refusals.push({
          operation: 'DescribeSecret',
          secretId: `${PREFIX}/fleet-config`,
          error: serviceError(
            SecretsManagerServiceException,
            'AccessDeniedException',
            accessDenied('secretsmanager:DescribeSecret'),
          ),
        }),
      message: `AccessDenied: SecretsManager DescribeSecret on '${PREFIX}/fleet-config' failed: AccessDeniedException`,
    },
    {
      what: 'Secrets Manager denying CreateSecret on a certificate secret',
      refuse: () =>
        secrets.refusals.push({
          operation: 'CreateSecret',
          secretId: `${PREFIX}/cert/api`,
          error: serviceError(
            SecretsManagerServiceException,
            'AccessDeniedException',
            accessDenied('secretsmanager:CreateSecret'),
          ),
        }),
      message: `AccessDenied: SecretsManager CreateSecret on '${PREFIX}/cert/api' failed: AccessDeniedException`,
    },
    {
      what: 'Secrets Manager throttling CreateSecret',
      refuse: () =>
        secrets.refusals.push({
          operation: 'CreateSecret',
          secretId: `${PREFIX}/nudge-key`,
          error: serviceError(SecretsManagerServiceException, 'ThrottlingException', 'Rate exceeded'),
        }),
      message: `Throttled: SecretsManager CreateSecret on '${PREFIX}/nudge-key' failed: ThrottlingException`,
    },
    {
      what: 'Private CA denying GetCertificateAuthorityCertificate',
      refuse: () =>
        ca.refusals.push({
          operation: 'GetCertificateAuthorityCertificate',
          error: serviceError(
            ACMPCAServiceException,
            'AccessDeniedException',
            accessDenied('acm-pca:GetCertificateAuthorityCertificate'),
          ),
        }),
      message: `AccessDenied: ACMPCA GetCertificateAuthorityCertificate on '${CA_ARN}' failed: AccessDeniedException`,
    },
    {
      what: 'Private CA throttling IssueCertificate',
      refuse: () =>
        ca.refusals.push({
          operation: 'IssueCertificate',
          error: serviceError(ACMPCAServiceException, 'ThrottlingException', 'Rate exceeded'),
        }),
      message: `Throttled: ACMPCA IssueCertificate on '${CA_ARN}' failed: ThrottlingException`,
    },
  ])('exits 1 with one line naming the secret or the CA on $what', async ({ refuse, message }) => {
    refuse();

    const run = await init();

    expect(run.code).toBe(1);
    expect(printsKey(run.stdout), 'a private key was printed').toBe(false);
    const lines = run.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toBe(lines[0]!.trim());
    expect(lines[0]!.startsWith(`portcullis init: ${message}`), lines[0]).toBe(true);
    expect(run.stderr).not.toMatch(/^\s+at /m);
    expect(printsKey(run.stderr), 'a private key was printed').toBe(false);
  });

  it("goes through the adapters' module-scope SDK clients, which the class mocks catch", async () => {
    const run = await init();

    expect(run.code, run.stderr).toBe(0);
    const clients = (mock: AwsClientMock) =>
      new Set(mock.calls().map((c) => (c as { thisValue: unknown }).thisValue));
    expect(clients(sm)).toEqual(new Set([defaultSecretsManagerClient()]));
    expect(clients(pca)).toEqual(new Set([defaultAcmPcaClient()]));
  });

  it('init --stack takes the fleet and the Private CA from the stack’s outputs', async () => {
    cfn.on(DescribeStacksCommand).resolves({
      Stacks: [
        {
          StackName: 'portcullis-prod-edge',
          StackStatus: 'CREATE_COMPLETE',
          CreationTime: new Date(),
          Outputs: [
            { OutputKey: 'RotateCertificatesStateMachineArn', OutputValue: 'arn:aws:states:x' },
            { OutputKey: 'FleetName', OutputValue: FLEET },
            { OutputKey: 'CertificateAuthorityArn', OutputValue: CA_ARN },
          ],
        },
      ],
    });
    try {
      const run = await capture(() =>
        initCommand([
          '--stack',
          'portcullis-prod-edge',
          '--config',
          configFile,
          '--region',
          'eu-west-1',
          '--template-arn',
          TEMPLATE_ARN,
        ]),
      );
      expect(run.code, run.stderr).toBe(0);
      expect([...sm.commandCalls(CreateSecretCommand).map((c) => c.args[0].input.Name)].sort()).toEqual(
        expectedSecrets,
      );
      for (const call of pca.commandCalls(IssueCertificateCommand))
        expect(call.args[0].input.CertificateAuthorityArn).toBe(CA_ARN);
    } finally {
      cfn.reset();
    }
  });

  it('refuses a missing --ca-arn before calling AWS', async () => {
    const run = await capture(() => initCommand(['--fleet', FLEET, '--config', configFile]));

    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^portcullis init: ValidationError: --ca-arn \(or CA_ARN\) is required\n$/);
    expect(sm.calls()).toHaveLength(0);
    expect(pca.calls()).toHaveLength(0);
  });
});

/** Binds one HTTP server per address, all on the same (ephemeral) port, as ECS tasks share theirs. */
async function listenAll(
  addresses: readonly string[],
  handler: (address: string, request: IncomingMessage) => { status: number; body: unknown },
): Promise<{ servers: Server[]; port: number }> {
  const listen = (server: Server, host: string, port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
    });
  for (let attempt = 1; ; attempt++) {
    const servers: Server[] = [];
    try {
      let port = 0;
      for (const address of addresses) {
        const server = createServer((request, response) => {
          const answer = handler(address, request);
          response.writeHead(answer.status, { 'content-type': 'application/json' });
          response.end(JSON.stringify(answer.body));
        });
        servers.push(server);
        port = await listen(server, address, port);
      }
      return { servers, port };
    } catch (error) {
      await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
      if (attempt >= 5) throw error;
    }
  }
}

function ecsTask(id: string, ip: string | undefined, lastStatus = 'RUNNING'): Task {
  return {
    taskArn: `arn:aws:ecs:eu-west-1:111122223333:task/${CLUSTER}/${id}`,
    lastStatus,
    attachments: [
      {
        type: 'ElasticNetworkInterface',
        status: ip ? 'ATTACHED' : 'PRECREATED',
        details: [
          { name: 'networkInterfaceId', value: `eni-${id}` },
          ...(ip ? [{ name: 'privateIPv4Address', value: ip }] : []),
        ],
      },
    ],
  };
}

describe('portcullis status against AWS', () => {
  const ready = '127.0.0.41';
  const stale = '127.0.0.42';
  const statuses = new Map<string, TaskStatus>();
  const requests: { address: string; method: string; url: string }[] = [];
  let servers: Server[] = [];
  let port: number;

  beforeAll(async () => {
    ({ servers, port } = await listenAll([ready, stale], (address, request) => {
      requests.push({ address, method: request.method ?? '', url: request.url ?? '' });
      const status = statuses.get(address);
      return request.method === 'GET' && request.url === '/v1/status' && status
        ? { status: 200, body: status }
        : { status: 404, body: { error: { message: 'no such thing' } } };
    }));
    process.env.SIDECAR_ADMIN_PORT = String(port);
  });

  afterAll(async () => {
    delete process.env.SIDECAR_ADMIN_PORT;
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  });

  /** Initialises the fleet in the mocked store and returns what a sidecar in sync would report. */
  async function initialised(): Promise<{
    inSync: TaskStatus;
    serials: Record<string, string>;
    allowlist: string;
  }> {
    const run = await init();
    expect(run.code, run.stderr).toBe(0);
    const certificates: TaskStatus['certificates'] = {};
    const serials: Record<string, string> = {};
    for (const spec of fleetConfig.certificates) {
      const current = secrets.current(spec.secretId);
      const bundle = JSON.parse(current.value) as { serial: string; notAfter: string };
      certificates[spec.name] = {
        versionId: current.versionId,
        serial: bundle.serial,
        notAfter: bundle.notAfter,
      };
      serials[spec.name] = bundle.serial;
    }
    const allowlist = secrets.current(`${PREFIX}/allowlist`).versionId;
    const inSync: TaskStatus = {
      ready: true,
      certificates,
      trust: { versionId: secrets.current(`${PREFIX}/trust`).versionId },
      allowlist: { versionId: allowlist, size: 1 },
      fleetConfig: { versionId: secrets.current(`${PREFIX}/fleet-config`).versionId },
      lastApply: { at: '2026-11-23T17:00:00.000Z', ok: true },
    };
    return { inSync, serials, allowlist };
  }

  function status(...flags: string[]): Promise<Captured> {
    return capture(() =>
      statusCommand([
        '--fleet',
        FLEET,
        '--cluster',
        CLUSTER,
        '--service',
        SERVICE,
        ...(flags.length ? flags : ['--json']),
      ]),
    );
  }

  /** ECS lists t1 (on `ready`) and t2 (on `stale`), each answering with `statuses`. */
  function twoTasks(): void {
    ecs.on(ListTasksCommand).resolves({
      taskArns: ['t1', 't2'].map((id) => `arn:aws:ecs:eu-west-1:111122223333:task/${CLUSTER}/${id}`),
    });
    ecs.on(DescribeTasksCommand).resolves({ tasks: [ecsTask('t1', ready), ecsTask('t2', stale)] });
  }

  it("prints every task's serials, allowlist version and readiness from its sidecar and exits 0 when all are in sync", async () => {
    const { inSync, serials, allowlist } = await initialised();
    statuses.set(ready, inSync);
    statuses.set(stale, inSync);
    ecs.on(ListTasksCommand).resolves({
      taskArns: [
        `arn:aws:ecs:eu-west-1:111122223333:task/${CLUSTER}/t1`,
        `arn:aws:ecs:eu-west-1:111122223333:task/${CLUSTER}/t2`,
      ],
    });
    ecs.on(DescribeTasksCommand).resolves({ tasks: [ecsTask('t1', ready), ecsTask('t2', stale)] });
    requests.length = 0;

    const run = await status();

    expect(run.code, run.stderr).toBe(0);
    const report = lastJson<{ fleet: string; current: unknown; tasks: TaskRow[] }>(run.stdout);
    expect(report.fleet).toBe(FLEET);
    expect(report.current).toEqual({
      certificates: serials,
      certificateVersions: Object.fromEntries(
        fleetConfig.certificates.map((spec) => [spec.name, secrets.current(spec.secretId).versionId]),
      ),
      // No rotation holds an AWSPENDING: nothing else counts as in sync.
      certificateRotatingTo: {},
      allowlistVersionId: allowlist,
      trustVersionId: secrets.current(`${PREFIX}/trust`).versionId,
      fleetConfigVersionId: secrets.current(`${PREFIX}/fleet-config`).versionId,
      missing: [],
    });
    expect(report.tasks.map((t) => [t.taskId, t.address, t.health, t.inSync])).toEqual([
      ['t1', `${ready}:${port}`, 'ready', true],
      ['t2', `${stale}:${port}`, 'ready', true],
    ]);
    for (const task of report.tasks) {
      expect(task.certificates.api?.serial).toBe(serials.api);
      expect(task.certificates['gateway-client']?.serial).toBe(serials['gateway-client']);
      expect(task.allowlist).toEqual({ versionId: allowlist, size: 1 });
    }
    expect(ecs.commandCalls(ListTasksCommand)[0]!.args[0].input).toEqual({
      cluster: CLUSTER,
      serviceName: SERVICE,
      desiredStatus: 'RUNNING',
    });
    expect(requests.map((r) => `${r.method} ${r.address}${r.url}`).sort()).toEqual([
      `GET ${ready}/v1/status`,
      `GET ${stale}/v1/status`,
    ]);
    expect(printsKey(run.stdout), 'a private key was printed').toBe(false);
  });

  it('shows a stale, a not-ready and an unreachable task as such, none in sync, and exits 1', async () => {
    const { inSync, serials } = await initialised();
    statuses.set(ready, { ...inSync, ready: false });
    statuses.set(stale, {
      ...inSync,
      certificates: {
        ...inSync.certificates,
        api: { ...inSync.certificates.api!, versionId: 'an-older-version', serial: 'abc123' },
      },
    });
    // 127.0.0.43 has no sidecar on the port; t4 has no ENI address yet and is left out.
    ecs.on(ListTasksCommand).resolves({
      taskArns: ['t1', 't2', 't3', 't4'].map(
        (id) => `arn:aws:ecs:eu-west-1:111122223333:task/${CLUSTER}/${id}`,
      ),
    });
    ecs.on(DescribeTasksCommand).resolves({
      tasks: [
        ecsTask('t1', ready),
        ecsTask('t2', stale),
        ecsTask('t3', '127.0.0.43'),
        ecsTask('t4', undefined, 'PROVISIONING'),
      ],
    });

    const run = await status();

    expect(run.code).toBe(1);
    const rows = lastJson<{ tasks: TaskRow[] }>(run.stdout).tasks;
    expect(rows.map((t) => [t.taskId, t.health, t.inSync])).toEqual([
      ['t1', 'not-ready', false],
      ['t2', 'ready', false],
      ['t3', 'unreachable', false],
    ]);
    expect(rows[1]!.certificates.api?.serial).toBe('abc123');
    expect(rows[1]!.certificates['gateway-client']?.serial).toBe(serials['gateway-client']);
    expect(rows[2]!.error).toMatch(
      new RegExp(`^TaskUnreachable: GET /v1/status to 127\\.0\\.0\\.43:${port} `),
    );
  });

  it('exits 1 naming SIDECAR_ADMIN_PORT when it is not a port, before asking ECS', async () => {
    await initialised();
    process.env.SIDECAR_ADMIN_PORT = 'admin';
    try {
      const run = await status();

      expect(run.code).toBe(1);
      expect(run.stderr).toBe(
        'portcullis status: ValidationError: SIDECAR_ADMIN_PORT must be a TCP port (1-65535), got "admin"\n',
      );
      expect(ecs.calls()).toHaveLength(0);
    } finally {
      process.env.SIDECAR_ADMIN_PORT = String(port);
    }
  });

  it('exits 1 naming the fleet config secret when Secrets Manager denies reading it', async () => {
    secrets.refusals.push({
      operation: 'GetSecretValue',
      secretId: `${PREFIX}/fleet-config`,
      error: serviceError(SecretsManagerServiceException, 'AccessDeniedException', 'not authorized'),
    });

    const run = await status();

    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(
      new RegExp(
        `^portcullis status: AccessDenied: SecretsManager GetSecretValue on '${PREFIX}/fleet-config' failed: AccessDeniedException: not authorized \\(request req-7\\)\\n$`,
      ),
    );
    expect(ecs.calls()).toHaveLength(0);
  });

  it('counts a task serving another trust version as out of sync', async () => {
    const { inSync } = await initialised();
    statuses.set(ready, inSync);
    statuses.set(stale, { ...inSync, trust: { versionId: 'trust-before-the-last-update' } });
    twoTasks();

    const run = await status();

    expect(run.code, run.stderr).toBe(1);
    const rows = lastJson<{ tasks: TaskRow[] }>(run.stdout).tasks;
    expect(rows.map((t) => [t.taskId, t.health, t.inSync, t.trust?.versionId])).toEqual([
      ['t1', 'ready', true, inSync.trust!.versionId],
      ['t2', 'ready', false, 'trust-before-the-last-update'],
    ]);
  });

  describe('with part of the fleet missing from the store', () => {
    it('still lists every task with what it serves when the allowlist secret is gone, reports the secret once and exits 1', async () => {
      const { inSync, serials, allowlist } = await initialised();
      statuses.set(ready, inSync);
      statuses.set(stale, inSync);
      twoTasks();
      secrets.secrets.delete(`${PREFIX}/allowlist`);

      const run = await status();

      expect(run.code).toBe(1);
      expect(run.stderr).toBe('');
      const report = lastJson<{ current: CurrentState; tasks: TaskRow[] }>(run.stdout);
      expect(report.current).toEqual({
        certificates: serials,
        certificateVersions: Object.fromEntries(
          Object.entries(inSync.certificates).map(([name, c]) => [name, c.versionId]),
        ),
        certificateRotatingTo: {},
        allowlistVersionId: null,
        trustVersionId: inSync.trust!.versionId,
        fleetConfigVersionId: inSync.fleetConfig!.versionId,
        missing: [
          { role: 'allowlist', secretId: `${PREFIX}/allowlist`, state: 'missing', error: 'NotFoundError' },
        ],
      });
      expect(report.tasks.map((t) => [t.taskId, t.health, t.inSync])).toEqual([
        ['t1', 'ready', false],
        ['t2', 'ready', false],
      ]);
      for (const task of report.tasks) {
        expect(task.allowlist).toEqual({ versionId: allowlist, size: 1 });
        expect(task.certificates.api?.serial).toBe(serials.api);
      }
    });

    it('prints one "expected:" line per missing or unreadable secret above the task table, with error names only', async () => {
      const { inSync, serials } = await initialised();
      statuses.set(ready, inSync);
      statuses.set(stale, { ...inSync, ready: false });
      twoTasks();
      secrets.secrets.delete(`${PREFIX}/trust`);
      secrets.refusals.push({
        operation: 'GetSecretValue',
        secretId: `${PREFIX}/cert/api`,
        error: serviceError(SecretsManagerServiceException, 'AccessDeniedException', 'not authorized'),
      });

      const run = await status('--region', 'eu-west-1');

      expect(run.code).toBe(1);
      expect(run.stderr).toBe('');
      const lines = run.stdout.split('\n');
      expect(lines.filter((l) => l.includes('expected:'))).toEqual([
        expect.stringMatching(
          /^certificate api {2}portcullis\/edge\/cert\/api {2}expected: unreadable \(AccessDenied\)$/,
        ),
        expect.stringMatching(/^trust {12}portcullis\/edge\/trust {5}expected: missing \(NotFoundError\)$/),
      ]);
      const header = lines.findIndex((l) => l.startsWith('TASK'));
      expect(header).toBe(2);
      expect(lines.slice(header + 1)).toEqual([
        expect.stringMatching(
          new RegExp(`^t1 +ready +.*gateway-client=${serials['gateway-client']!.slice(0, 12)}.* no$`),
        ),
        expect.stringMatching(/^t2 +not-ready +.* no$/),
      ]);
      expect(run.stdout).not.toMatch(/not authorized/);
      expect(printsKey(run.stdout), 'a private key was printed').toBe(false);
    });

    it('reports the certificate an interrupted first init never wrote as missing, next to the tasks that came up without it', async () => {
      secrets.refusals.push({
        operation: 'CreateSecret',
        secretId: `${PREFIX}/cert/gateway-client`,
        error: serviceError(SecretsManagerServiceException, 'AccessDeniedException', 'not authorized'),
      });
      expect((await init()).code).toBe(1);
      secrets.refusals.length = 0;
      statuses.set(ready, {
        ready: false,
        certificates: {},
        lastApply: { at: '2026-11-23T17:00:00.000Z', ok: false, error: 'NotFoundError' },
      });
      statuses.set(stale, { ready: false, certificates: {} });
      twoTasks();

      const run = await status();

      expect(run.code).toBe(1);
      const report = lastJson<{ current: Required<CurrentState>; tasks: TaskRow[] }>(run.stdout);
      expect(report.current.missing).toContainEqual({
        role: 'certificate gateway-client',
        secretId: `${PREFIX}/cert/gateway-client`,
        state: 'missing',
        error: 'NotFoundError',
      });
      // Exactly the served secrets the store lacks, each once.
      const served = [
        `${PREFIX}/cert/api`,
        `${PREFIX}/cert/gateway-client`,
        `${PREFIX}/allowlist`,
        `${PREFIX}/trust`,
      ];
      expect(report.current.missing.map((m) => m.secretId).sort()).toEqual(
        served.filter((id) => !secrets.secrets.has(id)).sort(),
      );
      expect(report.tasks.map((t) => [t.taskId, t.health, t.inSync])).toEqual([
        ['t1', 'not-ready', false],
        ['t2', 'not-ready', false],
      ]);
      expect(report.tasks[0]!.lastApply).toEqual({
        at: '2026-11-23T17:00:00.000Z',
        ok: false,
        error: 'NotFoundError',
      });
    });
  });
});

describe('openTarget on AWS', () => {
  let savedRegion: string | undefined;

  beforeEach(() => {
    savedRegion = process.env.AWS_REGION;
  });

  afterEach(() => {
    if (savedRegion === undefined) delete process.env.AWS_REGION;
    else process.env.AWS_REGION = savedRegion;
  });

  /** Calls each adapter once and returns the SDK client instances the calls went through. */
  async function clientsUsed(values: Record<string, string>) {
    ecs.on(ListTasksCommand).resolves({ taskArns: [] });
    const target = await openTarget(
      { fleet: FLEET, 'ca-arn': CA_ARN, cluster: CLUSTER, service: SERVICE, ...values },
      { needAuthority: true },
    );
    try {
      await expect(target.store.describe(`${PREFIX}/fleet-config`)).rejects.toThrow(/fleet-config/);
      await target.authority().caCertificates();
      await expect(target.fleetPort().listTasks()).resolves.toEqual([]);
    } finally {
      await target.close();
    }
    const used = (mock: AwsClientMock) => [
      ...new Set(
        mock.calls().map((c) => (c as { thisValue: { config: { region(): Promise<string> } } }).thisValue),
      ),
    ];
    return { sm: used(sm), pca: used(pca), ecs: used(ecs) };
  }

  it.each([{ before: undefined }, { before: 'eu-west-1' }])(
    'gives --region to its own clients and leaves AWS_REGION as it was ($before)',
    async ({ before }) => {
      if (before === undefined) delete process.env.AWS_REGION;
      else process.env.AWS_REGION = before;

      const used = await clientsUsed({ region: 'ap-southeast-2' });

      expect(process.env.AWS_REGION).toBe(before);
      for (const [service, clients] of Object.entries(used)) {
        expect(clients, service).toHaveLength(1);
        expect(await clients[0]!.config.region(), service).toBe('ap-southeast-2');
      }
      expect(used.sm[0]).not.toBe(defaultSecretsManagerClient());
      expect(used.pca[0]).not.toBe(defaultAcmPcaClient());
      expect(used.ecs[0]).not.toBe(defaultEcsClient());
    },
  );

  it('uses the module-scope clients without --region', async () => {
    process.env.AWS_REGION = 'eu-west-1';

    const used = await clientsUsed({});

    expect(used).toEqual({
      sm: [defaultSecretsManagerClient()],
      pca: [defaultAcmPcaClient()],
      ecs: [defaultEcsClient()],
    });
    expect(process.env.AWS_REGION).toBe('eu-west-1');
  });
});
