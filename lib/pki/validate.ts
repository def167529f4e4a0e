/**
 * The validation core: pure checks over certificates, keys, chains, trust bundles and CRLs.
 * No I/O; time is an argument. The sidecar runs {@link validateServingBundle} before it
 * applies anything, so every function here answers with a tagged result instead of throwing
 * on bad input, and no reason ever quotes key material.
 */
import { createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import { CertificateValidationError, type ValidationCode } from './errors.ts';
import { describeKey, type KeyDescription, keyLabel } from './keys.ts';
import { canonicalIp, type PresentedNames, uncoveredNames } from './names.ts';
import { type ParsedCertificate, type ParsedCrl, parsePemBundle } from './pem.ts';
import { normaliseSerial } from './serial.ts';
import { x509 } from './x509.ts';

/** A certificate as PEM text (the first certificate in it is used) or a parsed node certificate. */
export type CertificateLike = string | X509Certificate;

/** Default tolerance for clock differences between issuer and gateway, in seconds. */
export const defaultSkewSeconds = 60;

export type Invalid<C extends ValidationCode = ValidationCode> = { kind: 'invalid'; code: C; reason: string };

/** What the rest of the project needs to know about a certificate. */
export interface CertificateInfo {
  /** Lowercase hex without separators. */
  serial: string;
  /** SHA-256 of the DER, as node and `tls` print it (`AB:CD:…`). */
  fingerprint256: string;
  notBefore: Date;
  notAfter: Date;
  subject: string;
  issuer: string;
  dns: string[];
  uri: string[];
  ip: string[];
  /** `ec-P-256`, `ec-P-384`, `rsa-2048`, … */
  keyType: string;
  isCa: boolean;
}

/**
 * Reads a certificate.
 * @throws CertificateValidationError `pem-invalid` when it is not one.
 */
export function toCertificate(input: CertificateLike): X509Certificate {
  if (input instanceof X509Certificate) return input;
  const bundle = parsePemBundle(input);
  if (bundle.kind === 'invalid') throw new CertificateValidationError('pem-invalid', bundle.reason);
  const first = bundle.certificates[0];
  if (!first) throw new CertificateValidationError('pem-invalid', 'no certificate found');
  return first.x509;
}

/** Whether a certificate is self-issued and verifies with its own key (a root CA); false for text that is not a certificate. */
export function isSelfSigned(input: CertificateLike): boolean {
  try {
    const certificate = input instanceof X509Certificate ? input : new X509Certificate(input);
    return certificate.checkIssued(certificate) && certificate.verify(certificate.publicKey);
  } catch {
    return false;
  }
}

/** Facts about a certificate. @throws CertificateValidationError `pem-invalid`. */
export function certificateInfo(input: CertificateLike): CertificateInfo {
  const cert = toCertificate(input);
  const names = subjectAltNames(cert);
  return {
    serial: normaliseSerial(cert.serialNumber) ?? cert.serialNumber.toLowerCase(),
    fingerprint256: cert.fingerprint256,
    notBefore: cert.validFromDate,
    notAfter: cert.validToDate,
    subject: cert.subject,
    issuer: cert.issuer,
    dns: names.dns,
    uri: names.uri,
    ip: names.ip,
    keyType: keyLabel(describeKey(cert.publicKey)),
    isCa: cert.ca,
  };
}

/** DNS, URI and IP subjectAltNames; empty lists when the extension is absent or unreadable. */
export function subjectAltNames(input: CertificateLike): PresentedNames & { uri: string[] } {
  const cert = toCertificate(input);
  const names: PresentedNames & { uri: string[] } = { dns: [], uri: [], ip: [] };
  try {
    const san = new x509.X509Certificate(cert.raw).getExtension(x509.SubjectAlternativeNameExtension);
    for (const item of san?.names.items ?? []) {
      if (item.type === 'dns') names.dns.push(item.value);
      else if (item.type === 'url') names.uri.push(item.value);
      else if (item.type === 'ip') names.ip.push(canonicalIp(item.value) ?? item.value);
    }
  } catch {
    // An extension this library cannot read (X.400 names…) presents nothing we could match.
    return { dns: [], uri: [], ip: [] };
  }
  return names;
}

/**
 * Whether the certificate's DNS/IP subjectAltNames cover every name (RFC 6125 rules, see
 * `names.ts`); `missing` lists those not covered.
 */
export function coversHostnames(
  input: CertificateLike,
  names: string[],
): { covered: boolean; missing: string[] } {
  const missing = uncoveredNames(subjectAltNames(input), names);
  return { covered: missing.length === 0, missing };
}

/** Whether `key` (PEM or key object, private or public) is the key of the certificate. Never throws. */
export function keyMatchesCertificate(key: string | KeyObject, certificate: CertificateLike): boolean {
  try {
    const cert = toCertificate(certificate);
    const publicKey = createPublicKey(key);
    const expected = cert.publicKey.export({ type: 'spki', format: 'der' });
    return publicKey.export({ type: 'spki', format: 'der' }).equals(expected);
  } catch {
    return false;
  }
}

/**
 * Whether `at` lies inside the certificate's validity, allowing `skewSeconds` (default 60)
 * either side for clocks that disagree.
 */
export function checkValidity(
  input: CertificateLike,
  options: { at?: Date; skewSeconds?: number } = {},
): { kind: 'ok' } | Invalid<'expired' | 'not-yet-valid'> {
  const cert = toCertificate(input);
  const at = (options.at ?? new Date()).getTime();
  const skew = (options.skewSeconds ?? defaultSkewSeconds) * 1000;
  const name = describeCertificate(cert);
  if (at + skew < cert.validFromDate.getTime()) {
    return {
      kind: 'invalid',
      code: 'not-yet-valid',
      reason: `${name} is not valid before ${cert.validFromDate.toISOString()}`,
    };
  }
  if (at - skew > cert.validToDate.getTime()) {
    return {
      kind: 'invalid',
      code: 'expired',
      reason: `${name} expired at ${cert.validToDate.toISOString()}`,
    };
  }
  return { kind: 'ok' };
}

/**
 * The key policy: ECDSA P-256 or P-384, or RSA with at least 2048 bits. Takes a certificate,
 * a key (PEM, private or public) or a key object.
 */
export function checkKeyPolicy(
  input: CertificateLike | KeyObject,
): { kind: 'ok'; key: KeyDescription; keyType: string } | Invalid<'weak-key' | 'pem-invalid'> {
  let key: KeyObject;
  try {
    if (input instanceof X509Certificate) key = input.publicKey;
    else if (typeof input === 'string' && input.includes('CERTIFICATE-----'))
      key = toCertificate(input).publicKey;
    else key = createPublicKey(input);
  } catch {
    return { kind: 'invalid', code: 'pem-invalid', reason: 'not a readable certificate or key' };
  }
  const description = describeKey(key);
  const keyType = keyLabel(description);
  const ok =
    (description.kind === 'ec' && (description.curve === 'P-256' || description.curve === 'P-384')) ||
    (description.kind === 'rsa' && description.bits >= 2048);
  if (ok) return { kind: 'ok', key: description, keyType };
  return {
    kind: 'invalid',
    code: 'weak-key',
    reason: `key ${keyType} is not allowed (ECDSA P-256/P-384 or RSA ≥ 2048 only)`,
  };
}

/** Input for {@link verifyChain}: one PEM text (may hold several certificates) or a list. */
export type CertificateSet = string | readonly CertificateLike[];

export interface VerifyChainOptions {
  at?: Date;
  skewSeconds?: number;
  /** Longest path, anchor included (default 8). */
  maxDepth?: number;
}

export type ChainResult =
  | { kind: 'ok'; path: X509Certificate[] }
  | Invalid<'untrusted-chain' | 'expired' | 'not-yet-valid' | 'pem-invalid'>;

/**
 * Builds a path from `leaf` through the certificates in `chain` to any certificate in `trust`
 * and checks it: each signature, each certificate's validity at `at`, and that every issuer is
 * a CA (basicConstraints CA, keyCertSign when keyUsage is present, path length). The anchor
 * may be a root or an intermediate; the order of `chain` does not matter, and extra
 * certificates in it are ignored. When several paths exist the first that passes wins; when
 * none passes, the reason is the first problem on the first complete path.
 */
export function verifyChain(
  leafInput: CertificateLike,
  chainInput: CertificateSet,
  trustInput: CertificateSet,
  options: VerifyChainOptions = {},
): ChainResult {
  let leaf: X509Certificate;
  let chain: X509Certificate[];
  let anchors: X509Certificate[];
  try {
    leaf = toCertificate(leafInput);
    chain = certificateList(chainInput);
    anchors = certificateList(trustInput);
  } catch (error) {
    return {
      kind: 'invalid',
      code: 'pem-invalid',
      reason: error instanceof Error ? error.message : 'unreadable',
    };
  }
  if (anchors.length === 0)
    return { kind: 'invalid', code: 'untrusted-chain', reason: 'the trust bundle is empty' };
  const maxDepth = options.maxDepth ?? 8;
  // Bounds the search even for adversarial bundles full of same-named certificates.
  let budget = 256;
  let firstFailure: Invalid<'untrusted-chain' | 'expired' | 'not-yet-valid'> | undefined;

  const search = (path: X509Certificate[]): X509Certificate[] | undefined => {
    const current = path[path.length - 1]!;
    // A path ends at the first trust anchor it reaches — whether the anchor came from the trust
    // bundle or, identically, from the chain — and is only accepted once every check passed.
    if (anchors.some((anchor) => sameCertificate(anchor, current))) {
      const failure = checkPath(path, options);
      if (failure === undefined) return path;
      firstFailure ??= failure;
      return undefined;
    }
    if (path.length >= maxDepth) return undefined;
    for (const candidate of [...anchors, ...chain]) {
      if (budget <= 0) return undefined;
      if (path.some((seen) => sameCertificate(seen, candidate))) continue;
      if (!issuedBy(current, candidate)) continue;
      budget -= 1;
      const found = search([...path, candidate]);
      if (found) return found;
    }
    return undefined;
  };

  const path = search([leaf]);
  if (path) return { kind: 'ok', path };
  return (
    firstFailure ?? {
      kind: 'invalid',
      code: 'untrusted-chain',
      reason: `no path from ${describeCertificate(leaf)} to a trusted CA`,
    }
  );
}

function checkPath(
  path: X509Certificate[],
  options: VerifyChainOptions,
): Invalid<'untrusted-chain' | 'expired' | 'not-yet-valid'> | undefined {
  for (const [index, cert] of path.entries()) {
    const validity = checkValidity(cert, { at: options.at, skewSeconds: options.skewSeconds });
    if (validity.kind === 'invalid') return validity;
    if (index === 0) continue;
    const name = describeCertificate(cert);
    if (!cert.ca)
      return {
        kind: 'invalid',
        code: 'untrusted-chain',
        reason: `${name} is not a CA but issued ${describeCertificate(path[index - 1]!)}`,
      };
    const constraints = caConstraints(cert);
    if (!constraints.keyCertSign) {
      return {
        kind: 'invalid',
        code: 'untrusted-chain',
        reason: `${name} may not sign certificates (keyUsage)`,
      };
    }
    // Intermediates between this issuer and the leaf (self-issued ones count too; fine for us).
    const below = index - 1;
    if (constraints.pathLength !== undefined && below > constraints.pathLength) {
      return {
        kind: 'invalid',
        code: 'untrusted-chain',
        reason: `${name} allows ${constraints.pathLength} intermediate CA(s) below it, the chain has ${below}`,
      };
    }
  }
  return undefined;
}

function caConstraints(cert: X509Certificate): { keyCertSign: boolean; pathLength: number | undefined } {
  try {
    const parsed = new x509.X509Certificate(cert.raw);
    const keyUsage = parsed.getExtension(x509.KeyUsagesExtension);
    const basic = parsed.getExtension(x509.BasicConstraintsExtension);
    return {
      keyCertSign: keyUsage === null || (keyUsage.usages & x509.KeyUsageFlags.keyCertSign) !== 0,
      pathLength: basic?.pathLength,
    };
  } catch {
    return { keyCertSign: false, pathLength: undefined };
  }
}

function issuedBy(child: X509Certificate, issuer: X509Certificate): boolean {
  if (child.issuer !== issuer.subject) return false;
  try {
    return child.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

function sameCertificate(a: X509Certificate, b: X509Certificate): boolean {
  return a.raw.equals(b.raw);
}

function certificateList(input: CertificateSet): X509Certificate[] {
  if (typeof input === 'string') {
    if (input.trim() === '') return [];
    const bundle = parsePemBundle(input);
    if (bundle.kind === 'invalid') throw new CertificateValidationError('pem-invalid', bundle.reason);
    return bundle.certificates.map((c) => c.x509);
  }
  return input.map(toCertificate);
}

function describeCertificate(cert: X509Certificate): string {
  const serial = normaliseSerial(cert.serialNumber) ?? cert.serialNumber;
  return `certificate "${cert.subject.replace(/\n/g, ', ')}" (serial ${serial})`;
}

// ——— bundles ———

export interface ServingBundleInput {
  /** Leaf first, then intermediates (HAProxy's crt file); may also hold the key. */
  chainPem: string;
  /** The private key; default: the key inside `chainPem`. */
  keyPem?: string;
  /** CA certificates the chain must lead to. */
  trustBundlePem: string;
  /** Names the certificate must cover (the route's server names). */
  hostnames: string[];
  /**
   * What the leaf is for: `server` (a terminate route's certificate) or `client` (origination's
   * client certificate). When given, the leaf's extendedKeyUsage and keyUsage must allow it, as
   * the TLS peer checks ("unsuitable certificate purpose"). Default: not checked.
   */
  usage?: 'server' | 'client';
  at?: Date;
  skewSeconds?: number;
}

/** The codes {@link validateServingBundle} answers with. */
export type ServingBundleCode =
  | 'pem-invalid'
  | 'key-mismatch'
  | 'expired'
  | 'not-yet-valid'
  | 'untrusted-chain'
  | 'san-mismatch'
  | 'weak-key'
  | 'wrong-usage';

export type ServingBundleResult =
  | {
      kind: 'ok';
      info: CertificateInfo;
      /** Leaf then intermediates, canonical PEM. Pair it with `keyPem` for HAProxy. */
      certificatesPem: string;
      /** The key re-encoded as PKCS#8. Secret: never log it. */
      keyPem: string;
    }
  | Invalid<ServingBundleCode>;

/**
 * The sidecar's pre-apply check for a certificate it is about to serve: PEM parses, the key
 * matches the leaf, the key meets the policy, the leaf is for `usage` (when given), the leaf is inside its validity, the chain leads
 * to the trust bundle, and the leaf covers every hostname. Checks run in that order and the
 * first failure is reported.
 */
export function validateServingBundle(input: ServingBundleInput): ServingBundleResult {
  const chain = parsePemBundle(input.chainPem);
  if (chain.kind === 'invalid') return invalid('pem-invalid', `certificate chain: ${chain.reason}`);
  const leaf = chain.certificates[0];
  if (!leaf) return invalid('pem-invalid', 'certificate chain: no certificate found');

  let key = chain.privateKey;
  if (input.keyPem !== undefined) {
    const keyBundle = parsePemBundle(input.keyPem);
    if (keyBundle.kind === 'invalid') return invalid('pem-invalid', `private key: ${keyBundle.reason}`);
    if (!keyBundle.privateKey) return invalid('pem-invalid', 'private key: no private key found');
    if (keyBundle.certificates.length > 0)
      return invalid('pem-invalid', 'private key: the key file also holds certificates');
    if (chain.privateKey)
      return invalid('pem-invalid', 'a private key was given both in the chain and separately');
    key = keyBundle.privateKey;
  }
  if (!key) return invalid('pem-invalid', 'private key: no private key found');

  const trust = parsePemBundle(input.trustBundlePem);
  if (trust.kind === 'invalid') return invalid('pem-invalid', `trust bundle: ${trust.reason}`);
  if (trust.certificates.length === 0) return invalid('pem-invalid', 'trust bundle: no certificate found');
  if (trust.privateKey) return invalid('pem-invalid', 'trust bundle: holds a private key');

  if (!keyMatchesCertificate(key.key, leaf.x509)) {
    return invalid('key-mismatch', `the private key does not belong to ${describeCertificate(leaf.x509)}`);
  }
  const policy = checkKeyPolicy(leaf.x509);
  if (policy.kind === 'invalid') return invalid(policy.code, policy.reason);
  if (input.usage !== undefined) {
    const purpose = checkLeafUsage(leaf.x509, input.usage);
    if (purpose !== undefined) return invalid('wrong-usage', purpose);
  }
  const validity = checkValidity(leaf.x509, { at: input.at, skewSeconds: input.skewSeconds });
  if (validity.kind === 'invalid') return validity;
  const verified = verifyChain(
    leaf.x509,
    chain.certificates.slice(1).map((c) => c.x509),
    trust.certificates.map((c) => c.x509),
    { at: input.at, skewSeconds: input.skewSeconds },
  );
  if (verified.kind === 'invalid') return verified;
  const coverage = coversHostnames(leaf.x509, input.hostnames);
  if (!coverage.covered) {
    return invalid(
      'san-mismatch',
      `${describeCertificate(leaf.x509)} does not cover ${coverage.missing.join(', ')}`,
    );
  }
  return {
    kind: 'ok',
    info: certificateInfo(leaf.x509),
    certificatesPem: chain.certificates.map((c: ParsedCertificate) => c.pem).join(''),
    keyPem: key.pem,
  };
}

const EKU_ANY = '2.5.29.37.0';
const EKU_FOR = { server: '1.3.6.1.5.5.7.3.1', client: '1.3.6.1.5.5.7.3.2' } as const;

/**
 * Why the leaf may not be used as a TLS `usage` certificate, or `undefined` when it may. Mirrors
 * OpenSSL's purpose check: an extendedKeyUsage must list the purpose (or anyExtendedKeyUsage),
 * and a keyUsage must allow a TLS key (digitalSignature, keyEncipherment or keyAgreement).
 */
function checkLeafUsage(cert: X509Certificate, usage: 'server' | 'client'): string | undefined {
  let parsed: x509.X509Certificate;
  try {
    parsed = new x509.X509Certificate(cert.raw);
  } catch {
    return `${describeCertificate(cert)} has unreadable extensions`;
  }
  const eku = parsed.getExtension(x509.ExtendedKeyUsageExtension);
  if (eku !== null) {
    const oids = eku.usages.map(String);
    if (!oids.includes(EKU_FOR[usage]) && !oids.includes(EKU_ANY)) {
      return `${describeCertificate(cert)} is not for TLS ${usage} authentication (extendedKeyUsage)`;
    }
  }
  const keyUsage = parsed.getExtension(x509.KeyUsagesExtension);
  const tlsKey =
    x509.KeyUsageFlags.digitalSignature |
    x509.KeyUsageFlags.keyEncipherment |
    x509.KeyUsageFlags.keyAgreement;
  if (keyUsage !== null && (keyUsage.usages & tlsKey) === 0) {
    return `${describeCertificate(cert)} has no keyUsage a TLS key needs`;
  }
  return undefined;
}

function invalid<C extends ValidationCode>(code: C, reason: string): Invalid<C> {
  return { kind: 'invalid', code, reason };
}

export type TrustBundleResult =
  | { kind: 'ok'; certificates: CertificateInfo[]; pem: string; crls: ParsedCrl[] }
  | Invalid<'pem-invalid' | 'private-key-present' | 'not-ca' | 'expired' | 'not-yet-valid'>;

/**
 * Checks a trust bundle (CA certificates, optionally CRLs as well): it parses, holds at least
 * one certificate and no private key, every certificate is a CA, and — when `at` is given —
 * every certificate is inside its validity.
 */
export function validateTrustBundle(
  pem: string,
  options: { at?: Date; skewSeconds?: number } = {},
): TrustBundleResult {
  const bundle = parsePemBundle(pem);
  if (bundle.kind === 'invalid') return invalid('pem-invalid', bundle.reason);
  if (bundle.privateKey) return invalid('private-key-present', 'a trust bundle must not hold a private key');
  if (bundle.certificates.length === 0) return invalid('pem-invalid', 'no certificate found');
  for (const cert of bundle.certificates) {
    if (!cert.x509.ca) return invalid('not-ca', `${describeCertificate(cert.x509)} is not a CA certificate`);
    if (options.at !== undefined) {
      const validity = checkValidity(cert.x509, options);
      if (validity.kind === 'invalid') return validity;
    }
  }
  return {
    kind: 'ok',
    certificates: bundle.certificates.map((c) => certificateInfo(c.x509)),
    pem: bundle.certificates.map((c) => c.pem).join(''),
    crls: bundle.crls,
  };
}

/** What a verified CRL says. */
export interface CrlInfo {
  issuer: string;
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  /** Lowercase hex without separators. */
  revokedSerials: string[];
}

export type CrlResult =
  | { kind: 'ok'; crls: CrlInfo[]; pem: string }
  | Invalid<'pem-invalid' | 'untrusted-crl' | 'stale-crl' | 'not-yet-valid' | 'crl-missing'>;

/**
 * Checks one or more CRLs (`X509 CRL` blocks): each is signed by one of `caPems`, has been
 * issued (`thisUpdate` not in the future beyond the skew) and is not past its `nextUpdate`.
 * With `requireEveryCa`, every CA in `caPems` must have a CRL (`crl-missing` otherwise):
 * HAProxy checks revocation for the whole chain once a `crl-file` is set, and refuses every
 * client certificate whose chain has a CA without a CRL.
 * Asynchronous only because CRL signatures are checked with WebCrypto.
 */
export async function validateCrl(
  crlPem: string,
  caPems: CertificateSet,
  options: { at?: Date; skewSeconds?: number; requireEveryCa?: boolean } = {},
): Promise<CrlResult> {
  const bundle = parsePemBundle(crlPem);
  if (bundle.kind === 'invalid') return invalid('pem-invalid', bundle.reason);
  if (bundle.privateKey || bundle.certificates.length > 0) {
    return invalid('pem-invalid', 'a CRL file must hold only CRLs');
  }
  if (bundle.crls.length === 0) return invalid('pem-invalid', 'no CRL found');
  let cas: X509Certificate[];
  try {
    cas = certificateList(caPems);
  } catch (error) {
    return invalid(
      'pem-invalid',
      `CA certificates: ${error instanceof Error ? error.message : 'unreadable'}`,
    );
  }
  const at = (options.at ?? new Date()).getTime();
  const skew = (options.skewSeconds ?? defaultSkewSeconds) * 1000;
  const infos: CrlInfo[] = [];
  const covered = new Set<X509Certificate>();
  for (const [index, parsed] of bundle.crls.entries()) {
    let crl: x509.X509Crl;
    try {
      crl = new x509.X509Crl(new Uint8Array(parsed.der));
    } catch {
      return invalid('pem-invalid', `CRL ${index + 1} is not a readable CRL`);
    }
    let issuer: X509Certificate | undefined;
    for (const ca of cas) {
      if (await crlSignedBy(crl, ca)) {
        issuer = ca;
        break;
      }
    }
    if (!issuer)
      return invalid('untrusted-crl', `CRL ${index + 1} (${crl.issuer}) is not signed by a trusted CA`);
    if (crl.thisUpdate.getTime() - skew > at) {
      return invalid('not-yet-valid', `CRL ${index + 1} is not valid before ${crl.thisUpdate.toISOString()}`);
    }
    if (crl.nextUpdate && crl.nextUpdate.getTime() + skew < at) {
      return invalid(
        'stale-crl',
        `CRL ${index + 1} was due for replacement at ${crl.nextUpdate.toISOString()}`,
      );
    }
    covered.add(issuer);
    infos.push({
      issuer: issuer.subject,
      thisUpdate: crl.thisUpdate,
      nextUpdate: crl.nextUpdate,
      revokedSerials: crl.entries.map((entry) => normaliseSerial(entry.serialNumber) ?? entry.serialNumber),
    });
  }
  if (options.requireEveryCa) {
    const missing = cas.filter((ca) => !covered.has(ca));
    if (missing.length > 0) {
      return invalid('crl-missing', `no CRL for ${missing.map((ca) => describeCertificate(ca)).join(', ')}`);
    }
  }
  return { kind: 'ok', crls: infos, pem: bundle.crls.map((c) => c.pem).join('') };
}

async function crlSignedBy(crl: x509.X509Crl, ca: X509Certificate): Promise<boolean> {
  try {
    const caCert = new x509.X509Certificate(ca.raw);
    if (
      !Buffer.from(crl.issuerName.toArrayBuffer()).equals(Buffer.from(caCert.subjectName.toArrayBuffer()))
    ) {
      return false;
    }
    return await crl.verify({ publicKey: caCert });
  } catch {
    return false;
  }
}
