/**
 * `portcullis init --fleet F` — creates a fleet's secrets, idempotently: the fleet config, the
 * trust bundle (the CA's certificates), the HMAC nudge key, the initial allowlist and a first
 * certificate for every entry of `certificates`. Written over the `SecretStore` and
 * `CertificateAuthority` ports, so it runs against AWS (Secrets Manager + Private CA) and a local
 * directory (`--local DIR`) alike; the demo bootstraps its fleet through {@link initFleet}.
 *
 * Re-running it changes nothing that exists: each secret is created only when missing, and a
 * certificate is issued only while its secret has no certificate as `AWSCURRENT` (missing, or
 * the placeholder a first rotation leaves). Later certificates come from `rotate`.
 *
 * The first allowlist is stored the way the update-allowlist workflow stores one
 * (lib/secrets/allowlist-storage.ts): inline when its document fits a secret value, otherwise
 * as an object in the fleet's allowlist object store, pinned by the manifest the secret holds.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { normaliseAllowlist } from '../../lib/allowlist/index.ts';
import { unlessNotFound, ValidationError } from '../../lib/errors.ts';
import { createCsr, generateKey } from '../../lib/pki/index.ts';
import { type CertificateAuthority, type SecretStore, Stage } from '../../lib/ports.ts';
import { checkedIssuedBundle } from '../../lib/rotation/certificate-bundle.ts';
import type { CertificateSpec } from '../../lib/rotation/certificate-spec.ts';
import { deriveToken, TokenStep } from '../../lib/rotation/tokens.ts';
import {
  chooseStorage,
  inlineDocument,
  type ObjectStore,
  storeAllowlist,
} from '../../lib/secrets/allowlist-storage.ts';
import type { CertificateSecret, NudgeKeySecret, TrustSecret } from '../../lib/secrets/formats.ts';
import { allowlistSecretId, parseControlPlaneFleet } from '../../lib/workflows/fleet-config.ts';
import { readCurrentCertificate } from '../../lib/workflows/rotation-steps.ts';
import { readCidrFile } from '../allowlist-input.ts';
import { ExitCode, parseCommandArgs, reportError, usageError } from '../command.ts';
import { checkFleetName, fleetSecretIds, waitIssued } from '../demo/secrets.ts';
import { type ControlPlaneTarget, commonOptions, openTarget, targetHelp } from '../demo/target.ts';

export const summary = "Create a fleet's secrets (config, trust, nudge key, allowlist, first certificates)";

/** What `initFleet` did to one secret. */
export interface InitStep {
  secretId: string;
  kind: 'fleet-config' | 'trust' | 'nudge-key' | 'allowlist' | 'certificate';
  action: 'created' | 'kept' | 'issued';
  /** For certificates: the serial now current. Never secret material. */
  serial?: string;
  note?: string;
}

export interface InitFleetOptions {
  store: SecretStore;
  authority: CertificateAuthority;
  fleet: string;
  /** Default `portcullis/<fleet>/fleet-config`. */
  fleetConfigSecretId?: string;
  /** The fleet config document (YAML or JSON text); needed when its secret does not exist yet. */
  fleetConfigText?: string;
  /** The allowlist written when its secret does not exist yet. Default: empty (nobody allowed). */
  allowlist?: readonly string[];
  /**
   * The fleet's allowlist object store, where a first allowlist too large for a secret value
   * goes (under `<prefix>lists/`). Without it such a list is refused (`AllowlistTooLarge`)
   * before anything is written.
   */
  allowlistObjects?: { store: ObjectStore; prefix: string } | undefined;
  /** Why (kept in the allowlist document). */
  reason?: string;
  /** Called after each secret, for progress. */
  onStep?: (step: InitStep) => void;
  /**
   * How long to wait for the CA to issue each certificate (polling with backoff while it says
   * "not ready yet"). Default 60 000 ms.
   */
  issueTimeoutMs?: number;
}

export interface InitFleetResult {
  fleet: string;
  fleetConfigSecretId: string;
  steps: InitStep[];
}

async function exists(store: SecretStore, secretId: string): Promise<boolean> {
  return (await unlessNotFound(store.describe(secretId))) !== undefined;
}

/** A deterministic token for an init write: the same fleet, secret and content give the same token. */
function initToken(fleet: string, secretId: string, content: string): string {
  const digest = createHash('sha256').update(content).digest('hex');
  return deriveToken(`init:${fleet}`, `${secretId}:${digest}`, TokenStep.Bundle);
}

/** Normalises a fleet config document to JSON text (what every reader parses). */
function fleetConfigJson(text: string): string {
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (error) {
    throw new ValidationError(`fleet config is neither JSON nor YAML: ${(error as Error).message}`);
  }
  return JSON.stringify(document, null, 2);
}

/**
 * Issues a first certificate for `spec`: a fresh key and CSR, the CA, a wait until issued, the
 * checks of {@link checkedIssuedBundle}. The token derives from the public key, so a re-run after a crash issues a
 * new certificate for a new key rather than colliding with the half-finished one.
 */
async function issueFirst(
  authority: CertificateAuthority,
  fleet: string,
  spec: CertificateSpec,
  timeoutMs: number | undefined,
): Promise<CertificateSecret> {
  const key = await generateKey(spec.key);
  const sans = { dns: spec.dns, ...(spec.uri === undefined ? {} : { uri: spec.uri }) };
  const csrPem = await createCsr(key, { commonName: spec.commonName, ...sans });
  const { certificateId } = await authority.issue({
    csrPem,
    commonName: spec.commonName,
    sans,
    validityDays: spec.validityDays,
    idempotencyToken: deriveToken(`init:${fleet}`, `${spec.name}:${key.publicKeyPem}`, TokenStep.Issue),
    usage: spec.usage,
  });
  const issued = await waitIssued(authority, certificateId, timeoutMs);
  // The checks StageCertificate makes: key, chain to the CA's certificates (the trust bundle
  // init writes), names.
  return checkedIssuedBundle({
    certificateId,
    issued,
    privateKeyPem: key.privateKeyPem,
    trustBundlePem: await authority.caCertificates(),
    dns: spec.dns,
    at: new Date(),
  });
}

/**
 * Creates whatever of the fleet's secrets is missing (see the module comment).
 * @throws ValidationError for an invalid fleet config or allowlist, or a missing fleet config.
 */
export async function initFleet(options: InitFleetOptions): Promise<InitFleetResult> {
  const { store, authority } = options;
  const fleet = checkFleetName(options.fleet);
  const ids = fleetSecretIds(fleet);
  const fleetConfigSecretId = options.fleetConfigSecretId ?? ids.fleetConfig;
  const steps: InitStep[] = [];
  const step = (s: InitStep) => {
    steps.push(s);
    options.onStep?.(s);
  };

  // Everything is validated before the first write, so bad input leaves no half-made fleet.
  const configExists = await exists(store, fleetConfigSecretId);
  let configText: string;
  let differs = false;
  if (configExists) {
    configText = (await store.get(fleetConfigSecretId, { stage: Stage.Current })).value;
    differs =
      options.fleetConfigText !== undefined &&
      fleetConfigJson(options.fleetConfigText) !== fleetConfigJson(configText);
  } else {
    if (options.fleetConfigText === undefined) {
      throw new ValidationError(
        `fleet config secret ${fleetConfigSecretId} does not exist: give the document (--config FILE)`,
        {
          path: 'config',
        },
      );
    }
    configText = fleetConfigJson(options.fleetConfigText);
  }
  const config = parseControlPlaneFleet(
    configText,
    configExists ? `secret ${fleetConfigSecretId}` : 'fleet config',
  );
  if (config.fleet !== fleet) {
    throw new ValidationError(`the fleet config is for fleet '${config.fleet}', not '${fleet}'`, {
      path: 'fleet',
    });
  }
  const allowlist = normaliseAllowlist(options.allowlist ?? [], {
    allowAll0: config.allowlist.allowAll0,
    maxEntries: config.allowlist.maxEntries,
  });
  if (allowlist.kind === 'invalid') {
    throw new ValidationError(`invalid allowlist: ${allowlist.issues.join('; ')}`, { path: 'allowlist' });
  }
  const allowlistId = allowlistSecretId(config);
  const allowlistDocument = {
    cidrs: allowlist.cidrs.map((c) => c.text),
    reason: options.reason ?? 'portcullis init',
    updatedBy: 'portcullis init',
  };
  const objects = options.allowlistObjects;
  // The storage limits (entries, object bytes, the secret value without an object store), for
  // a list that will be written: an existing allowlist secret is kept and nothing is uploaded.
  const writeAllowlist = allowlistId !== undefined && !(await exists(store, allowlistId));
  if (writeAllowlist) chooseStorage(allowlistDocument, { objectStore: objects !== undefined });

  if (configExists) {
    step({
      secretId: fleetConfigSecretId,
      kind: 'fleet-config',
      action: 'kept',
      ...(differs ? { note: 'differs from the given file; not overwritten' } : {}),
    });
  } else {
    await store.create(fleetConfigSecretId, configText, {
      clientRequestToken: initToken(fleet, fleetConfigSecretId, configText),
      description: `Portcullis fleet config (${fleet})`,
    });
    step({ secretId: fleetConfigSecretId, kind: 'fleet-config', action: 'created' });
  }

  const createOnce = async (
    secretId: string,
    kind: InitStep['kind'],
    make: () => Promise<string | { value: string; token: string; note?: string }>,
    description: string,
    keptNote?: string,
  ) => {
    if (await exists(store, secretId)) {
      step({ secretId, kind, action: 'kept', ...(keptNote === undefined ? {} : { note: keptNote }) });
      return;
    }
    const made = await make();
    const { value, token, note } =
      typeof made === 'string'
        ? { value: made, token: initToken(fleet, secretId, made), note: undefined }
        : made;
    await store.create(secretId, value, { clientRequestToken: token, description });
    step({ secretId, kind, action: 'created', ...(note === undefined ? {} : { note }) });
  };

  if (config.trust !== undefined) {
    await createOnce(
      config.trust.secretId,
      'trust',
      async () => JSON.stringify({ caBundlePem: await authority.caCertificates() } satisfies TrustSecret),
      `Portcullis trust bundle (${fleet})`,
    );
  }
  if (config.nudgeKey !== undefined) {
    await createOnce(
      config.nudgeKey.secretId,
      'nudge-key',
      async () => JSON.stringify({ key: randomBytes(32).toString('base64') } satisfies NudgeKeySecret),
      `Portcullis nudge signing key (${fleet})`,
    );
  }
  if (allowlistId !== undefined) {
    await createOnce(
      allowlistId,
      'allowlist',
      async () => {
        // The token derives from the list, not the stored value (a manifest names an object
        // version that differs on every upload); like a staged version, the object is keyed by it.
        const token = initToken(fleet, allowlistId, inlineDocument(allowlistDocument));
        const { value, manifest } = await storeAllowlist(
          allowlistDocument,
          objects === undefined
            ? undefined
            : { store: objects.store, key: `${objects.prefix}lists/${token}.cidrs` },
        );
        const n = allowlistDocument.cidrs.length;
        const count = `${n} entr${n === 1 ? 'y' : 'ies'}`;
        return {
          value,
          token,
          note:
            manifest === undefined
              ? `${count} inline`
              : `${count} in object ${manifest.object.bucket}/${manifest.object.key} version ${manifest.object.versionId}`,
        };
      },
      `Portcullis source allowlist (${fleet})`,
      (options.allowlist ?? []).length === 0
        ? undefined
        : 'exists; the given allowlist is not written (portcullis allowlist set changes it)',
    );
  }

  for (const spec of config.certificates) {
    const current = await readCurrentCertificate(store, spec.secretId);
    if (current === 'unreadable') {
      throw new ValidationError(
        `secret ${spec.secretId} holds something that is not a certificate bundle as AWSCURRENT; fix it or rotate with --force`,
        { path: `certificates.${spec.name}` },
      );
    }
    if (current !== undefined) {
      step({ secretId: spec.secretId, kind: 'certificate', action: 'kept', serial: current.serial });
      continue;
    }
    const bundle = await issueFirst(authority, fleet, spec, options.issueTimeoutMs);
    const value = JSON.stringify(bundle);
    const token = initToken(fleet, spec.secretId, value);
    if (await exists(store, spec.secretId)) {
      // The placeholder of an interrupted first rotation: the bundle becomes current over it.
      await store.put(spec.secretId, value, { clientRequestToken: token, stages: [Stage.Current] });
    } else {
      await store.create(spec.secretId, value, {
        clientRequestToken: token,
        description: `Portcullis certificate ${spec.name} (${fleet})`,
      });
    }
    step({ secretId: spec.secretId, kind: 'certificate', action: 'issued', serial: bundle.serial });
  }
  return { fleet, fleetConfigSecretId, steps };
}

const HELP = `Usage: portcullis init --fleet NAME|--stack NAME [--config FILE] [--allowlist CIDR]… [--allowlist-file FILE] [options]

Creates the fleet's secrets where they are missing: the fleet config (from --config), the trust
bundle (the CA's certificates), the nudge signing key, the allowlist (from --allowlist and
--allowlist-file) and a first certificate for every entry of the fleet config's certificates.
Existing secrets are kept; re-running is safe (an existing allowlist is neither changed nor
uploaded again: portcullis allowlist set changes it).

The allowlist is checked before anything is written: every CIDR, the fleet config's
allowlist.maxEntries and the store's limits (200 000 entries, 10 MiB). A list whose document fits
a secret value (64 KiB, about 3 500 entries) is kept inline; a larger one goes to the allowlist
bucket (--allowlist-bucket, $ALLOWLIST_BUCKET or the --stack output; locally the directory's own
object store) under <prefix>lists/, pinned by the manifest the secret holds. Without a bucket such
a list is refused (AllowlistTooLarge) and nothing is written. On AWS the caller needs
s3:PutObject on that prefix (and the bucket's KMS key through S3).

Options:
  --fleet NAME          fleet name (secrets live under portcullis/NAME/)
  --config FILE         fleet config document (YAML or JSON), for a fleet without one yet
  --allowlist CIDR      initial allowlist entry (repeatable); default: nobody allowed
  --allowlist-file FILE initial allowlist entries from FILE, as allowlist set --file reads them:
                        one CIDR a line, '#' starts a comment, '-' reads standard input;
                        combined with --allowlist
  --reason TEXT         why, kept in the allowlist document (default "portcullis init")
  --json                print the result as JSON
${targetHelp}
  -h, --help            show this help

Exit status: 0 done, 1 failed (invalid input, AWS error), 2 usage error.`;

/** The command's options (shell completion reads them too). */
export const options = {
  ...commonOptions,
  config: { type: 'string' },
  allowlist: { type: 'string', multiple: true },
  'allowlist-file': { type: 'string' },
  reason: { type: 'string' },
  json: { type: 'boolean' },
} as const;

/** Entry point of `portcullis init`. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs(argv, options, HELP);
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  if (typeof values.fleet !== 'string' && typeof values.stack !== 'string')
    return usageError(`init needs --fleet (or --stack)\n\n${HELP}`);
  let target: ControlPlaneTarget | undefined;
  try {
    const fleetConfigText = typeof values.config === 'string' ? await readConfig(values.config) : undefined;
    const file = values['allowlist-file'];
    const fromFile = typeof file === 'string' ? await readCidrFile(file) : [];
    target = await openTarget(values, { needAuthority: true });
    const result = await initFleet({
      store: target.store,
      authority: target.authority(),
      fleet: target.fleet,
      fleetConfigSecretId: target.fleetConfigSecretId,
      ...(fleetConfigText === undefined ? {} : { fleetConfigText }),
      allowlist: [...((values.allowlist as string[] | undefined) ?? []), ...fromFile],
      allowlistObjects: target.allowlistObjects(),
      ...(typeof values.reason === 'string' ? { reason: values.reason } : {}),
      onStep: (s) => {
        if (values.json !== true) {
          const serial = s.serial === undefined ? '' : ` serial ${s.serial}`;
          console.log(
            `${s.action.padEnd(7)} ${s.kind.padEnd(12)} ${s.secretId}${serial}${s.note ? ` (${s.note})` : ''}`,
          );
        }
      },
    });
    if (values.json === true) console.log(JSON.stringify(result));
    else if (target.kind === 'aws') {
      // The stack runs no task until its secrets exist (docs/deploy.md, "Deploy order").
      console.log(
        `\nThe fleet's secrets are in place. If the stack was deployed before them, its service runs no task yet:\n` +
          `deploy again with the same parameters (npx sls deploy …) and the tasks start.`,
      );
    }
    return ExitCode.Ok;
  } catch (error) {
    return reportError('init', error);
  } finally {
    await target?.close();
  }
}

async function readConfig(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw new ValidationError(`cannot read fleet config ${path}: ${(error as Error).message}`);
  }
}
