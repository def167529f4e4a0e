/**
 * The embedded mode's `CertificateAuthority`: a file-backed CA that signs real X.509
 * certificates, standing in for AWS Private CA with the same contract (asynchronous issue with
 * an idempotency token, polling `get`, idempotent `revoke`, a CRL).
 *
 * Layout under the directory given to {@link LocalAuthority.open}:
 *
 * ```
 * ca/certificate.pem            the issuing CA certificate
 * ca/key.pem                    its private key, mode 0600
 * ca/chain.pem                  intermediates above the issuing CA ('' when it is the root)
 * ca/root.pem                   the trust anchor (the issuing CA itself unless `intermediate`)
 * ca/root-key.pem               the root's key, mode 0600, only with `intermediate` (it signs the root's CRL)
 * issued/<uuid>.json            one record per certificate (no private keys: the CA never sees them)
 * tokens/<sha256(token)>.json   idempotency index: token → certificate id and request digest
 * crl.pem                       the current CRLs (`X509 CRL`): the issuing CA's, then the root's
 *                               with `intermediate`; regenerated when revocations change
 * .lock                         held around every read-modify-write (see `files.ts`)
 * ```
 *
 * Every file is written to a temporary name, fsynced and renamed, so readers and a crash see
 * either the old or the new content. The CA is created on first open, under the lock, so two
 * processes opening the same empty directory end up with one CA.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CertificateNotReady, ConflictError, NotFoundError, ValidationError } from '../errors.ts';
import {
  type CertificateAuthorityMaterial,
  certificateInfo,
  checkKeyPolicy,
  createCertificateAuthority,
  createCrl,
  generateKey,
  issueCertificate,
  type KeySpec,
  normaliseHostname,
  normaliseSerial,
  parsePemBundle,
  readCsr,
} from '../pki/index.ts';
import { x509 } from '../pki/x509.ts';
import {
  type CertificateAuthority,
  type IssuedCertificate,
  type IssueRequest,
  RevocationReason,
} from '../ports.ts';
import { type FileLockOptions, fsyncDirectory, isCode, withFileLock, writeFileAtomic } from './files.ts';

export interface LocalAuthorityOptions {
  /** `get()` throws `CertificateNotReady` this many times per certificate before answering (default 0). */
  readyAfterPolls?: number;
  /** Subject CN of a CA created on first open (default `Portcullis Local CA`). */
  commonName?: string;
  /** Key of a CA created on first open (default ECDSA P-256). */
  keySpec?: KeySpec;
  /** Create a root plus an issuing intermediate instead of a lone root, like a PCA subordinate CA. */
  intermediate?: boolean;
  /** Lifetime of a CA created on first open, in days (default 3650). */
  caValidityDays?: number;
  /** Upper bound for `IssueRequest.validityDays` (default 825, the old CA/B Forum ceiling). */
  maxValidityDays?: number;
  /** Lifetime of each CRL, in days (default 7); `crlPem()` renews it past half of that. */
  crlValidityDays?: number;
  lock?: FileLockOptions;
  /** Clock, for tests. */
  now?: () => Date;
}

/** One issued certificate as stored in `issued/<uuid>.json`. Public material only. */
export interface LocalCertificateRecord {
  format: 1;
  certificateId: string;
  /** Lowercase hex without separators. */
  serial: string;
  requestDigest: string;
  commonName: string;
  dns: string[];
  uri: string[];
  usage: 'server' | 'client';
  issuedAt: string;
  notAfter: string;
  certificatePem: string;
  chainPem: string;
  revocation?: { revokedAt: string; reason: RevocationReason };
}

interface TokenRecord {
  certificateId: string;
  requestDigest: string;
}

const day = 86_400_000;
const certificateIdPattern = /^local:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;
// AWS Private CA accepts 1–36 characters; refusing longer tokens here catches the mistake locally.
const maxTokenLength = 36;
const revocationReasons = new Set<string>(Object.values(RevocationReason));

/** A file-backed CA implementing the `CertificateAuthority` port. */
export class LocalAuthority implements CertificateAuthority {
  readonly #dir: string;
  readonly #ca: CertificateAuthorityMaterial;
  readonly #rootPem: string;
  /** The root's material when it is not the issuing CA; it only signs (empty) CRLs. */
  readonly #root: CertificateAuthorityMaterial | undefined;
  readonly #options: LocalAuthorityOptions;
  readonly #polls = new Map<string, number>();

  /** Use {@link LocalAuthority.open}; this takes an already loaded CA. */
  constructor(dir: string, loaded: LoadedCa, options: LocalAuthorityOptions = {}) {
    this.#dir = dir;
    this.#ca = loaded.ca;
    this.#rootPem = loaded.rootPem;
    this.#root = loaded.root;
    this.#options = options;
  }

  /**
   * Opens the CA in `dir`, creating the directory and the CA on first use. Safe to call from
   * several processes at once: they all load the same CA.
   * @example const ca = await LocalAuthority.open('/var/lib/portcullis/ca', { readyAfterPolls: 1 });
   */
  static async open(dir: string, options: LocalAuthorityOptions = {}): Promise<LocalAuthority> {
    await mkdir(join(dir, 'issued'), { recursive: true });
    await mkdir(join(dir, 'tokens'), { recursive: true });
    const loaded =
      (await loadCa(dir)) ??
      (await withFileLock(
        join(dir, '.lock'),
        async () => (await loadCa(dir)) ?? (await createCa(dir, options)),
        options.lock,
      ));
    const authority = new LocalAuthority(dir, loaded, options);
    await authority.crlPem();
    return authority;
  }

  /** The directory this CA lives in. */
  get directory(): string {
    return this.#dir;
  }

  /**
   * Signs the CSR's public key with the requested names, validity and usage. Idempotent on
   * `idempotencyToken`: the same token with the same request returns the same certificate id;
   * with a different request it throws `ConflictError`.
   *
   * Errors: `ValidationError` (bad CSR, weak key, bad names or validity), `ConflictError`,
   * `Throttled` (the directory lock is busy).
   */
  async issue(request: IssueRequest): Promise<{ certificateId: string }> {
    const checked = await this.#checkRequest(request);
    const tokenPath = join(this.#dir, 'tokens', `${sha256(request.idempotencyToken)}.json`);
    return withFileLock(
      join(this.#dir, '.lock'),
      async (lock) => {
        const existing = await readJson<TokenRecord>(tokenPath);
        if (existing) {
          if (existing.requestDigest !== checked.requestDigest) {
            throw new ConflictError('idempotency token already used for a different certificate request');
          }
          return { certificateId: existing.certificateId };
        }
        const certificateId = `local:${randomUUID()}`;
        const issued = await issueCertificate(this.#ca, {
          publicKeyPem: checked.publicKeyPem,
          commonName: request.commonName,
          dns: checked.dns,
          uri: checked.uri,
          usage: request.usage,
          validityDays: request.validityDays,
        });
        const record: LocalCertificateRecord = {
          format: 1,
          certificateId,
          serial: issued.serial,
          requestDigest: checked.requestDigest,
          commonName: request.commonName,
          dns: checked.dns,
          uri: checked.uri,
          usage: request.usage,
          issuedAt: this.#now().toISOString(),
          notAfter: certificateInfo(issued.certificatePem).notAfter.toISOString(),
          certificatePem: issued.certificatePem,
          chainPem: issued.chainPem,
        };
        await lock.assertHeld();
        // Record first, token second: a crash in between leaves an unreferenced record, never a
        // token that points nowhere.
        await writeFileAtomic(this.#recordPath(certificateId), `${JSON.stringify(record, null, 2)}\n`, {
          mode: 0o644,
        });
        const token: TokenRecord = { certificateId, requestDigest: checked.requestDigest };
        await writeFileAtomic(tokenPath, `${JSON.stringify(token)}\n`, { mode: 0o600 });
        return { certificateId };
      },
      this.#options.lock,
    );
  }

  /**
   * The issued certificate and its chain. Throws `CertificateNotReady` for the first
   * `readyAfterPolls` calls per certificate (counted in this instance), `NotFoundError` for an
   * unknown id.
   */
  async get(certificateId: string): Promise<IssuedCertificate> {
    const record = await this.record(certificateId);
    const polls = this.#polls.get(certificateId) ?? 0;
    if (polls < (this.#options.readyAfterPolls ?? 0)) {
      this.#polls.set(certificateId, polls + 1);
      throw new CertificateNotReady(`certificate ${certificateId} is not issued yet`);
    }
    return { certificatePem: record.certificatePem, chainPem: record.chainPem };
  }

  /**
   * Revokes a certificate and regenerates the CRL. Idempotent: revoking again succeeds and
   * keeps the first revocation's time and reason. Errors: `NotFoundError`, `ValidationError`
   * (serial does not belong to the certificate, unknown reason), `Throttled`.
   */
  async revoke(certificateId: string, serial: string, reason: RevocationReason): Promise<void> {
    if (!revocationReasons.has(reason))
      throw new ValidationError(`unknown revocation reason: ${String(reason)}`);
    const given = normaliseSerial(serial);
    const known = await this.record(certificateId);
    if (given === undefined || given !== known.serial) {
      throw new ValidationError(`serial ${serial} does not belong to certificate ${certificateId}`, {
        path: 'serial',
      });
    }
    await withFileLock(
      join(this.#dir, '.lock'),
      async (lock) => {
        const record = await this.record(certificateId);
        if (!record.revocation) {
          record.revocation = { revokedAt: this.#now().toISOString(), reason };
          await lock.assertHeld();
          await writeFileAtomic(this.#recordPath(certificateId), `${JSON.stringify(record, null, 2)}\n`, {
            mode: 0o644,
          });
        }
        await this.#refreshCrl();
      },
      this.#options.lock,
    );
  }

  /** The issuing CA's certificate chain, trust anchor last (PEM). */
  async caCertificates(): Promise<string> {
    const parts = [this.#ca.certificatePem, this.#ca.chainPem];
    if (this.#rootPem.trim() !== this.#ca.certificatePem.trim()) parts.push(this.#rootPem);
    return parts
      .map((pem) => pem.trim())
      .filter((pem) => pem !== '')
      .map((pem) => `${pem}\n`)
      .join('');
  }

  /** The trust anchor alone (PEM): what gateways and clients should trust. */
  async trustAnchorPem(): Promise<string> {
    return this.#rootPem;
  }

  /**
   * The current CRLs (`X509 CRL` PEM): the issuing CA's, listing every revoked certificate,
   * followed with `intermediate` by the root's (empty). HAProxy checks revocation for every CA
   * in a client's chain once a `crl-file` is set, so serve all of them together. Regenerated
   * when it misses a revocation (another process revoked) or is past half its lifetime.
   */
  async crlPem(): Promise<string> {
    const current = await readText(join(this.#dir, 'crl.pem'));
    if (current !== undefined && !(await this.#crlNeedsRefresh(current))) return current;
    return withFileLock(join(this.#dir, '.lock'), () => this.#refreshCrl(), this.#options.lock);
  }

  /**
   * The stored record of one certificate.
   * @throws NotFoundError for an unknown or malformed id.
   */
  async record(certificateId: string): Promise<LocalCertificateRecord> {
    if (typeof certificateId !== 'string' || !certificateIdPattern.test(certificateId)) {
      throw new NotFoundError(`no such certificate: ${String(certificateId)}`);
    }
    const record = await readJson<LocalCertificateRecord>(this.#recordPath(certificateId));
    if (!record) throw new NotFoundError(`no such certificate: ${certificateId}`);
    return record;
  }

  /** Every issued certificate's record, oldest first. */
  async list(): Promise<LocalCertificateRecord[]> {
    const names = (await readdir(join(this.#dir, 'issued'))).filter((name) => name.endsWith('.json'));
    const records: LocalCertificateRecord[] = [];
    for (const name of names) {
      const record = await readJson<LocalCertificateRecord>(join(this.#dir, 'issued', name));
      if (record) records.push(record);
    }
    return records.sort((a, b) => a.issuedAt.localeCompare(b.issuedAt));
  }

  #recordPath(certificateId: string): string {
    const uuid = certificateIdPattern.exec(certificateId)?.[1];
    if (uuid === undefined) throw new NotFoundError(`no such certificate: ${certificateId}`);
    return join(this.#dir, 'issued', `${uuid}.json`);
  }

  #now(): Date {
    return this.#options.now?.() ?? new Date();
  }

  async #checkRequest(
    request: IssueRequest,
  ): Promise<{ publicKeyPem: string; dns: string[]; uri: string[]; requestDigest: string }> {
    const token = request.idempotencyToken;
    if (typeof token !== 'string' || token.length === 0 || token.length > maxTokenLength) {
      throw new ValidationError(`idempotencyToken must be 1–${maxTokenLength} characters`, {
        path: 'idempotencyToken',
      });
    }
    if (request.usage !== 'server' && request.usage !== 'client') {
      throw new ValidationError('usage must be server or client', { path: 'usage' });
    }
    const maxDays = this.#options.maxValidityDays ?? 825;
    if (
      !Number.isInteger(request.validityDays) ||
      request.validityDays < 1 ||
      request.validityDays > maxDays
    ) {
      throw new ValidationError(`validityDays must be an integer from 1 to ${maxDays}`, {
        path: 'validityDays',
      });
    }
    const caNotAfter = certificateInfo(this.#ca.certificatePem).notAfter.getTime();
    if (this.#now().getTime() + request.validityDays * day > caNotAfter) {
      throw new ValidationError('the requested validity outlasts the CA certificate', {
        path: 'validityDays',
      });
    }
    if (
      typeof request.commonName !== 'string' ||
      request.commonName.length < 1 ||
      request.commonName.length > 64
    ) {
      throw new ValidationError('commonName must be 1–64 characters', { path: 'commonName' });
    }
    const dns: string[] = [];
    for (const [index, name] of (request.sans?.dns ?? []).entries()) {
      const normalised = normaliseHostname(name, { allowWildcard: true });
      if (normalised === undefined)
        throw new ValidationError(`not a DNS name: ${name}`, { path: `sans.dns.${index}` });
      dns.push(normalised);
    }
    const uri: string[] = [];
    for (const [index, value] of (request.sans?.uri ?? []).entries()) {
      if (!URL.canParse(value))
        throw new ValidationError(`not a URI: ${value}`, { path: `sans.uri.${index}` });
      uri.push(value);
    }
    if (dns.length === 0 && uri.length === 0) {
      throw new ValidationError('a certificate needs at least one DNS or URI subjectAltName', {
        path: 'sans',
      });
    }
    const csr = await readCsr(request.csrPem).catch((error: unknown) => {
      // The port promises `ValidationError` by name (Step Functions match on it), not the PKI
      // core's more specific subclass.
      throw new ValidationError(error instanceof Error ? error.message : 'unreadable CSR', {
        path: 'csrPem',
        cause: error,
      });
    });
    const policy = checkKeyPolicy(csr.publicKeyPem);
    if (policy.kind === 'invalid') throw new ValidationError(policy.reason, { path: 'csrPem' });
    // The key, not the CSR bytes: ECDSA signatures are randomised, so re-creating the request
    // for the same key must count as the same request.
    const requestDigest = sha256(
      JSON.stringify([csr.publicKeyPem, request.commonName, dns, uri, request.usage, request.validityDays]),
    );
    return { publicKeyPem: csr.publicKeyPem, dns, uri, requestDigest };
  }

  async #revokedEntries(): Promise<{ serial: string; revokedAt: Date; reason: string }[]> {
    return (await this.list())
      .filter((record) => record.revocation !== undefined)
      .map((record) => ({
        serial: record.serial,
        revokedAt: new Date(record.revocation!.revokedAt),
        reason: record.revocation!.reason,
      }));
  }

  async #crlNeedsRefresh(pem: string): Promise<boolean> {
    const bundle = parsePemBundle(pem);
    if (bundle.kind !== 'ok' || bundle.crls.length !== (this.#root ? 2 : 1)) return true;
    const now = this.#now().getTime();
    const crls: x509.X509Crl[] = [];
    for (const parsed of bundle.crls) {
      try {
        crls.push(new x509.X509Crl(new Uint8Array(parsed.der)));
      } catch {
        return true;
      }
    }
    for (const crl of crls) {
      const next = crl.nextUpdate?.getTime() ?? 0;
      if (now >= crl.thisUpdate.getTime() + (next - crl.thisUpdate.getTime()) / 2) return true;
    }
    const listed = new Set(crls[0]!.entries.map((entry) => normaliseSerial(entry.serialNumber)));
    const revoked = await this.#revokedEntries();
    return revoked.length !== listed.size || revoked.some((entry) => !listed.has(entry.serial));
  }

  /** Call with the lock held. */
  async #refreshCrl(): Promise<string> {
    const path = join(this.#dir, 'crl.pem');
    const current = await readText(path);
    if (current !== undefined && !(await this.#crlNeedsRefresh(current))) return current;
    const thisUpdate = this.#now();
    const previousNumber = current === undefined ? 0n : crlNumber(current);
    const secondsNumber = BigInt(Math.floor(thisUpdate.getTime() / 1000));
    const crlOptions = {
      thisUpdate,
      nextUpdate: new Date(thisUpdate.getTime() + (this.#options.crlValidityDays ?? 7) * day),
      // Strictly increasing even when two CRLs are made within one second.
      crlNumber: secondsNumber > previousNumber ? secondsNumber : previousNumber + 1n,
    };
    let pem = await createCrl(this.#ca, await this.#revokedEntries(), crlOptions);
    // The issuing CA is never revoked here, so the root's CRL lists nothing.
    if (this.#root) pem += await createCrl(this.#root, [], crlOptions);
    await writeFileAtomic(path, pem, { mode: 0o644 });
    return pem;
  }
}

// ——— CA creation and loading ———

/** A CA as read from (or just written to) its directory. */
export interface LoadedCa {
  ca: CertificateAuthorityMaterial;
  rootPem: string;
  root?: CertificateAuthorityMaterial;
}

async function loadCa(dir: string): Promise<LoadedCa | undefined> {
  const caDir = join(dir, 'ca');
  const certificatePem = await readText(join(caDir, 'certificate.pem'));
  if (certificatePem === undefined) return undefined;
  const privateKeyPem = await readText(join(caDir, 'key.pem'));
  const rootPem = await readText(join(caDir, 'root.pem'));
  if (privateKeyPem === undefined || rootPem === undefined) {
    throw new ValidationError(`${caDir} is incomplete: certificate.pem without key.pem or root.pem`);
  }
  const mode = (await stat(join(caDir, 'key.pem'))).mode & 0o777;
  if ((mode & 0o077) !== 0)
    throw new ValidationError(`${join(caDir, 'key.pem')} must not be readable by others`);
  const chainPem = (await readText(join(caDir, 'chain.pem'))) ?? '';
  const rootKeyPem = await readText(join(caDir, 'root-key.pem'));
  const root =
    rootKeyPem === undefined
      ? undefined
      : { certificatePem: rootPem, privateKeyPem: rootKeyPem, chainPem: '' };
  return { ca: { certificatePem, privateKeyPem, chainPem }, rootPem, root };
}

/** Call with the lock held. Builds the CA in a scratch directory and renames it into place. */
async function createCa(dir: string, options: LocalAuthorityOptions): Promise<LoadedCa> {
  const commonName = options.commonName ?? 'Portcullis Local CA';
  const validityDays = options.caValidityDays ?? 3650;
  const root = await createCertificateAuthority({
    commonName: options.intermediate ? `${commonName} Root`.slice(0, 64) : commonName,
    key: await generateKey(options.keySpec),
    validityDays,
  });
  const ca = options.intermediate
    ? await createCertificateAuthority({
        commonName,
        key: await generateKey(options.keySpec),
        issuer: root,
        validityDays,
      })
    : root;
  const scratch = join(dir, `.ca-${process.pid}-${randomBytes(6).toString('hex')}`);
  await mkdir(scratch, { mode: 0o700 });
  try {
    await writeFileAtomic(join(scratch, 'key.pem'), ca.privateKeyPem, { mode: 0o600 });
    await writeFileAtomic(join(scratch, 'certificate.pem'), ca.certificatePem, { mode: 0o644 });
    await writeFileAtomic(join(scratch, 'chain.pem'), ca.chainPem, { mode: 0o644 });
    await writeFileAtomic(join(scratch, 'root.pem'), root.certificatePem, { mode: 0o644 });
    if (options.intermediate)
      await writeFileAtomic(join(scratch, 'root-key.pem'), root.privateKeyPem, { mode: 0o600 });
    await rename(scratch, join(dir, 'ca'));
    await fsyncDirectory(dir);
  } catch (error) {
    await rm(scratch, { recursive: true, force: true });
    throw error;
  }
  return { ca, rootPem: root.certificatePem, root: options.intermediate ? root : undefined };
}

// ——— small file helpers ———

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function crlNumber(pem: string): bigint {
  const bundle = parsePemBundle(pem);
  const der = bundle.kind === 'ok' ? bundle.crls[0]?.der : undefined;
  if (der === undefined) return 0n;
  try {
    const extension = new x509.X509Crl(new Uint8Array(der)).getExtension('2.5.29.20');
    if (!extension) return 0n;
    // The value is a DER INTEGER: tag, one length byte (CRL numbers are short), content.
    const value = Buffer.from(extension.value);
    return BigInt(`0x${value.subarray(2).toString('hex') || '0'}`);
  } catch {
    return 0n;
  }
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if (isCode(error, 'ENOENT')) return undefined;
    throw error;
  }
}

async function readJson<T>(path: string): Promise<T | undefined> {
  const text = await readText(path);
  return text === undefined ? undefined : (JSON.parse(text) as T);
}
