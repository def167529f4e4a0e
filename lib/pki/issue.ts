/**
 * Issuing side of the PKI core: CAs, leaf certificates, CSRs and CRLs, signed in-process with
 * WebCrypto through `@peculiar/x509`. Pure in the sense that matters here: no files, no
 * network, no OpenSSL; the only input from the world is the clock (overridable) and randomness.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { isIP } from 'node:net';
import { CertificateValidationError } from './errors.ts';
import { describeKey, generateKey, importSigningKey, type KeyPair } from './keys.ts';
import { toPem } from './pem.ts';
import { normaliseSerial, randomSerial } from './serial.ts';
import { isSelfSigned } from './validate.ts';
import { x509 } from './x509.ts';

/** A CA's certificate and key, as PEM. `privateKeyPem` is secret: never log it, store it 0600. */
export interface CertificateAuthorityMaterial {
  certificatePem: string;
  privateKeyPem: string;
  /** Intermediates above this CA up to (not including) the root; `''` for a root or a CA directly under it. */
  chainPem: string;
}

/** What a leaf certificate may be used for (extended key usage). */
export type CertificateUsage = 'server' | 'client' | 'both';

const day = 86_400_000;
/**
 * Certificates start a little in the past so a gateway whose clock lags the issuer's does not
 * reject a certificate issued a moment ago.
 */
const backdateMs = 5 * 60_000;

/** Default lifetime of a leaf certificate, in days. */
export const defaultLeafValidityDays = 30;
/** Default lifetime of a root CA, in days. */
export const defaultRootValidityDays = 3650;
/** Default lifetime of an intermediate CA, in days. */
export const defaultIntermediateValidityDays = 1825;

export interface CreateCertificateAuthorityOptions {
  commonName: string;
  /** Default: a fresh ECDSA P-256 key. */
  key?: KeyPair;
  /** Default: 3650 for a root, 1825 for an intermediate. */
  validityDays?: number;
  notBefore?: Date;
  notAfter?: Date;
  /** Sign with this CA (an intermediate); default self-signed (a root). */
  issuer?: CertificateAuthorityMaterial;
  /** Basic constraints path length; default unlimited for a root, 0 for an intermediate. */
  pathLength?: number;
  /** CRL distribution point URLs written into the CA certificate. */
  crlDistribution?: string[];
  serial?: string;
}

/**
 * Creates a root CA (self-signed) or, with `issuer`, an intermediate CA.
 * @example
 * const root = await createCertificateAuthority({ commonName: 'Portcullis Test Root' });
 * const sub = await createCertificateAuthority({ commonName: 'Portcullis Issuing CA', issuer: root });
 */
export async function createCertificateAuthority(
  options: CreateCertificateAuthorityOptions,
): Promise<CertificateAuthorityMaterial> {
  requireCommonName(options.commonName);
  const key = options.key ?? (await generateKey());
  const issuer = options.issuer;
  const signer = await importSigningKey(issuer ? issuer.privateKeyPem : key.privateKeyPem);
  const spki = spkiDer(key.publicKeyPem);
  const issuerCert = issuer ? parseIssuerCertificate(issuer.certificatePem) : undefined;
  const { notBefore, notAfter } = validityWindow(
    options,
    issuer ? defaultIntermediateValidityDays : defaultRootValidityDays,
  );
  const pathLength = options.pathLength ?? (issuer ? 0 : undefined);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, pathLength, true),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
      true,
    ),
    new x509.SubjectKeyIdentifierExtension(await keyIdentifier(spki)),
  ];
  if (issuerCert) extensions.push(await authorityKeyIdentifier(issuerCert));
  if (options.crlDistribution?.length) {
    extensions.push(new x509.CRLDistributionPointsExtension(options.crlDistribution));
  }
  const subject = new x509.Name([{ CN: [options.commonName] }]);
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serialFor(options.serial),
    subject,
    issuer: issuerCert ? issuerCert.subjectName : subject,
    notBefore,
    notAfter,
    publicKey: spki,
    signingKey: signer.cryptoKey,
    signingAlgorithm: signer.algorithm,
    extensions,
  });
  return {
    certificatePem: pemOf(certificate),
    privateKeyPem: key.privateKeyPem,
    chainPem: issuer ? chainBelowRoot(issuer) : '',
  };
}

export interface IssueCertificateOptions {
  /** The subject's public key (SPKI PEM). Give this or `csrPem`. */
  publicKeyPem?: string;
  /** A PKCS#10 request: its signature is checked and only its public key is used. */
  csrPem?: string;
  commonName: string;
  dns?: string[];
  uri?: string[];
  ip?: string[];
  usage: CertificateUsage;
  /** Default: five minutes ago (clock skew between issuer and gateways). */
  notBefore?: Date;
  /** Default: `validityDays` after now. */
  notAfter?: Date;
  /** Default 30. Ignored when `notAfter` is given. */
  validityDays?: number;
  /** Hex serial in any presentation; default {@link randomSerial}. */
  serial?: string;
  /** CRL distribution point URLs. */
  crlDistribution?: string[];
}

export interface IssuedCertificateMaterial {
  certificatePem: string;
  /** Intermediates up to (not including) the root, PEM; `''` when the issuer is the root. */
  chainPem: string;
  /** Lowercase hex without separators. */
  serial: string;
}

/**
 * Issues a leaf certificate. It does not judge the subject key (tests craft weak or odd
 * certificates with it); callers that take keys from outside check {@link checkKeyPolicy} first.
 * @example
 * const key = await generateKey();
 * const leaf = await issueCertificate(ca, { publicKeyPem: key.publicKeyPem, commonName: 'a.example', dns: ['a.example'], usage: 'server' });
 */
export async function issueCertificate(
  ca: CertificateAuthorityMaterial,
  options: IssueCertificateOptions,
): Promise<IssuedCertificateMaterial> {
  requireCommonName(options.commonName);
  const spki = await subjectPublicKey(options);
  const signer = await importSigningKey(ca.privateKeyPem);
  const caCert = parseIssuerCertificate(ca.certificatePem);
  const { notBefore, notAfter } = validityWindow(options, defaultLeafValidityDays);
  const serial = serialFor(options.serial);

  const names: x509.JsonGeneralName[] = [];
  for (const dns of options.dns ?? []) names.push({ type: 'dns', value: dns });
  for (const ip of options.ip ?? []) {
    if (isIP(ip) === 0) throw new CertificateValidationError('name-invalid', `not an IP address: ${ip}`);
    names.push({ type: 'ip', value: ip });
  }
  for (const uri of options.uri ?? []) names.push({ type: 'url', value: uri });

  const isRsa = describeKey(createPublicKey({ key: spki, format: 'der', type: 'spki' })).kind === 'rsa';
  const usages: string[] = [];
  if (options.usage === 'server' || options.usage === 'both') usages.push(x509.ExtendedKeyUsage.serverAuth);
  if (options.usage === 'client' || options.usage === 'both') usages.push(x509.ExtendedKeyUsage.clientAuth);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(
      // keyEncipherment only matters for TLS 1.2 RSA key exchange; it is meaningless for EC keys.
      x509.KeyUsageFlags.digitalSignature | (isRsa ? x509.KeyUsageFlags.keyEncipherment : 0),
      true,
    ),
    new x509.ExtendedKeyUsageExtension(usages, false),
    new x509.SubjectKeyIdentifierExtension(await keyIdentifier(spki)),
    await authorityKeyIdentifier(caCert),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  if (options.crlDistribution?.length) {
    extensions.push(new x509.CRLDistributionPointsExtension(options.crlDistribution));
  }

  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: new x509.Name([{ CN: [options.commonName] }]),
    issuer: caCert.subjectName,
    notBefore,
    notAfter,
    publicKey: spki,
    signingKey: signer.cryptoKey,
    signingAlgorithm: signer.algorithm,
    extensions,
  });
  return {
    certificatePem: pemOf(certificate),
    chainPem: chainBelowRoot(ca),
    serial: normaliseSerial(serial)!,
  };
}

/**
 * Creates a PKCS#10 certificate request signed by `key`. Names go into the subject and an
 * extension request; a CA that follows the ports' contract takes only the public key.
 */
export async function createCsr(
  key: KeyPair,
  options: { commonName: string; dns?: string[]; uri?: string[] },
): Promise<string> {
  requireCommonName(options.commonName);
  const signer = await importSigningKey(key.privateKeyPem);
  const publicKey = await createPublicKey(createPrivateKey(key.privateKeyPem)).toCryptoKey(
    signer.cryptoKey.algorithm,
    true,
    ['verify'],
  );
  const names: x509.JsonGeneralName[] = [
    ...(options.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(options.uri ?? []).map((value) => ({ type: 'url' as const, value })),
  ];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: new x509.Name([{ CN: [options.commonName] }]),
    keys: { privateKey: signer.cryptoKey, publicKey },
    signingAlgorithm: signer.algorithm,
    extensions: names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names, false)] : [],
  });
  return csr.toString('pem');
}

/**
 * Reads a PKCS#10 request and checks its signature.
 * @throws CertificateValidationError `csr-invalid`
 */
export async function readCsr(
  csrPem: string,
): Promise<{ publicKeyPem: string; subject: string; dns: string[]; uri: string[] }> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch {
    throw new CertificateValidationError(
      'csr-invalid',
      'the certificate request is not a readable PKCS#10 request',
    );
  }
  let signatureOk = false;
  try {
    signatureOk = await csr.verify();
  } catch {
    signatureOk = false;
  }
  if (!signatureOk) {
    throw new CertificateValidationError('csr-invalid', 'the certificate request signature does not verify');
  }
  const san = csr.getExtension(sanOid);
  const sanItems = san ? new x509.SubjectAlternativeNameExtension(san.rawData).names.items : [];
  const publicKeyPem = createPublicKey({
    key: Buffer.from(csr.publicKey.rawData),
    format: 'der',
    type: 'spki',
  })
    .export({ type: 'spki', format: 'pem' })
    .toString();
  return {
    publicKeyPem,
    subject: csr.subject,
    dns: sanItems.filter((n) => n.type === 'dns').map((n) => n.value),
    uri: sanItems.filter((n) => n.type === 'url').map((n) => n.value),
  };
}

/** One revoked certificate for {@link createCrl}. */
export interface RevokedEntry {
  /** Hex serial in any presentation. */
  serial: string;
  revokedAt: Date;
  /** `SUPERSEDED`, `KEY_COMPROMISE`, … (the ports' `RevocationReason`, or RFC 5280 names). */
  reason?: string;
}

export interface CreateCrlOptions {
  /** Default now. */
  thisUpdate?: Date;
  /** Default seven days after `thisUpdate`. */
  nextUpdate?: Date;
  /** CRL number; default `thisUpdate` in seconds, so successive CRLs number upwards without state. */
  crlNumber?: bigint;
}

/** Default CRL lifetime, in days. */
export const defaultCrlValidityDays = 7;

/**
 * Creates a CRL (v2, with authority key identifier and CRL number) signed by `ca`.
 * @throws CertificateValidationError `name-invalid` for an unreadable serial or unknown reason.
 */
export async function createCrl(
  ca: CertificateAuthorityMaterial,
  revoked: RevokedEntry[],
  options: CreateCrlOptions = {},
): Promise<string> {
  const signer = await importSigningKey(ca.privateKeyPem);
  const caCert = parseIssuerCertificate(ca.certificatePem);
  const thisUpdate = options.thisUpdate ?? new Date();
  const nextUpdate = options.nextUpdate ?? new Date(thisUpdate.getTime() + defaultCrlValidityDays * day);
  const crlNumber = options.crlNumber ?? BigInt(Math.floor(thisUpdate.getTime() / 1000));
  const seen = new Set<string>();
  const entries: x509.X509CrlEntryParams[] = [];
  for (const entry of revoked) {
    const serial = normaliseSerial(entry.serial);
    if (serial === undefined)
      throw new CertificateValidationError('name-invalid', 'a revoked serial is not hexadecimal');
    // A CRL must not list a serial twice; the first (earliest given) revocation wins.
    if (seen.has(serial)) continue;
    seen.add(serial);
    entries.push({
      serialNumber: serial,
      revocationDate: entry.revokedAt,
      reason: crlReason(entry.reason),
      // The generator writes an empty (non-DER-conformant) crlEntryExtensions when an entry has
      // none, which happens for reason `unspecified` (RFC 5280 wants that reason omitted). An
      // invalidity date is true for every entry and keeps the list non-empty.
      invalidity: new Date(Math.floor(entry.revokedAt.getTime() / 1000) * 1000),
    });
  }
  const crl = await x509.X509CrlGenerator.create({
    issuer: caCert.subjectName,
    thisUpdate,
    nextUpdate,
    signingKey: signer.cryptoKey,
    signingAlgorithm: signer.algorithm,
    entries,
    extensions: [
      await authorityKeyIdentifier(caCert),
      new x509.Extension('2.5.29.20', false, derInteger(crlNumber)),
    ],
  });
  // @peculiar/x509 labels CRLs `BEGIN CRL`; OpenSSL and HAProxy only read `BEGIN X509 CRL`.
  return toPem('X509 CRL', crl.rawData);
}

const crlReasons: Record<string, x509.X509CrlReason> = {
  unspecified: x509.X509CrlReason.unspecified,
  keycompromise: x509.X509CrlReason.keyCompromise,
  cacompromise: x509.X509CrlReason.cACompromise,
  affiliationchanged: x509.X509CrlReason.affiliationChanged,
  superseded: x509.X509CrlReason.superseded,
  cessationofoperation: x509.X509CrlReason.cessationOfOperation,
  certificatehold: x509.X509CrlReason.certificateHold,
  privilegewithdrawn: x509.X509CrlReason.privilegeWithdrawn,
  aacompromise: x509.X509CrlReason.aACompromise,
};

/** Maps `KEY_COMPROMISE`, `keyCompromise`, `key-compromise` … to the RFC 5280 reason code. */
export function crlReason(reason: string | undefined): x509.X509CrlReason {
  if (reason === undefined) return x509.X509CrlReason.unspecified;
  const code = crlReasons[reason.toLowerCase().replace(/[_\-\s]/g, '')];
  if (code === undefined)
    throw new CertificateValidationError('name-invalid', `unknown revocation reason: ${reason}`);
  return code;
}

// ——— helpers ———

function requireCommonName(commonName: string): void {
  if (typeof commonName !== 'string' || commonName.length === 0 || commonName.length > 64) {
    // RFC 5280 upper bound ub-common-name is 64 characters.
    throw new CertificateValidationError('name-invalid', 'commonName must be 1–64 characters');
  }
}

function serialFor(serial: string | undefined): string {
  if (serial === undefined) return randomSerial();
  const normalised = normaliseSerial(serial);
  if (normalised === undefined || normalised === '0') {
    throw new CertificateValidationError('name-invalid', 'serial must be positive hexadecimal');
  }
  // RFC 5280: at most 20 octets.
  if (normalised.length > 40)
    throw new CertificateValidationError('name-invalid', 'serial longer than 20 octets');
  return normalised.length % 2 === 1 ? `0${normalised}` : normalised;
}

function validityWindow(
  options: { notBefore?: Date; notAfter?: Date; validityDays?: number },
  defaultDays: number,
): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  const notBefore = options.notBefore ?? new Date(now - backdateMs);
  const days = options.validityDays ?? defaultDays;
  if (options.notAfter === undefined && !(Number.isFinite(days) && days > 0)) {
    throw new CertificateValidationError('name-invalid', 'validityDays must be a positive number');
  }
  const notAfter = options.notAfter ?? new Date(now + days * day);
  if (notAfter.getTime() <= notBefore.getTime()) {
    throw new CertificateValidationError('name-invalid', 'notAfter must be after notBefore');
  }
  return { notBefore, notAfter };
}

async function subjectPublicKey(options: IssueCertificateOptions): Promise<Buffer> {
  if (options.csrPem !== undefined) return spkiDer((await readCsr(options.csrPem)).publicKeyPem);
  if (options.publicKeyPem !== undefined) return spkiDer(options.publicKeyPem);
  throw new CertificateValidationError('csr-invalid', 'issueCertificate needs publicKeyPem or csrPem');
}

function spkiDer(publicKeyPem: string): Buffer {
  try {
    // Accepts a private key too (derives its public half), which is convenient and harmless.
    return createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' });
  } catch {
    throw new CertificateValidationError('pem-invalid', 'the public key is not a readable PEM key');
  }
}

function parseIssuerCertificate(pem: string): x509.X509Certificate {
  try {
    return new x509.X509Certificate(pem);
  } catch {
    throw new CertificateValidationError('pem-invalid', 'the CA certificate is not a readable certificate');
  }
}

async function keyIdentifier(spki: Buffer): Promise<string> {
  const id = await new x509.PublicKey(spki).getKeyIdentifier();
  return Buffer.from(id).toString('hex');
}

async function authorityKeyIdentifier(
  issuer: x509.X509Certificate,
): Promise<x509.AuthorityKeyIdentifierExtension> {
  const ski = issuer.getExtension(x509.SubjectKeyIdentifierExtension);
  const keyId = ski ? ski.keyId : Buffer.from(await issuer.publicKey.getKeyIdentifier()).toString('hex');
  return new x509.AuthorityKeyIdentifierExtension(keyId, false);
}

const sanOid = '2.5.29.17';

function pemOf(certificate: x509.X509Certificate): string {
  return toPem('CERTIFICATE', certificate.rawData);
}

/** The intermediates a leaf issued by `ca` should be served with (never the root). */
function chainBelowRoot(ca: CertificateAuthorityMaterial): string {
  if (isSelfSigned(ca.certificatePem)) return '';
  return `${ca.certificatePem.trim()}\n${ca.chainPem.trim() ? `${ca.chainPem.trim()}\n` : ''}`;
}

function derInteger(value: bigint): ArrayBuffer {
  let hex = value.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  let body = Buffer.from(hex, 'hex');
  if (body.length === 0 || (body[0]! & 0x80) !== 0) body = Buffer.concat([Buffer.from([0]), body]);
  const der = Buffer.concat([Buffer.from([0x02, body.length]), body]);
  return der.buffer.slice(der.byteOffset, der.byteOffset + der.byteLength) as ArrayBuffer;
}
