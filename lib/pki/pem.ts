/**
 * PEM reading and writing. The parser is the sidecar's first line of defence against whatever
 * a secret holds, so it is total: every input, however broken, yields a tagged result, and no
 * reason it gives ever quotes the input (which may hold key material).
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';

/** PEM armour with the labels OpenSSL (and so HAProxy) expects. */
export function toPem(label: string, der: ArrayBuffer | Uint8Array): string {
  const base64 = Buffer.from(der instanceof Uint8Array ? der : new Uint8Array(der)).toString('base64');
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** A certificate from a bundle, re-armoured canonically. */
export interface ParsedCertificate {
  pem: string;
  x509: X509Certificate;
}

/** A private key from a bundle. Secret material: never log `pem` or export `key`. */
export interface ParsedPrivateKey {
  /** Re-encoded as PKCS#8. */
  pem: string;
  key: KeyObject;
}

/** A CRL from a bundle (DER and canonical `X509 CRL` PEM); {@link validateCrl} reads it. */
export interface ParsedCrl {
  pem: string;
  der: Buffer;
}

export type PemBundle =
  | { kind: 'ok'; certificates: ParsedCertificate[]; privateKey?: ParsedPrivateKey; crls: ParsedCrl[] }
  | { kind: 'invalid'; reason: string };

export interface ParsePemBundleOptions {
  /** Refuse larger input outright (default 1 MiB). */
  maxBytes?: number;
  /** Refuse bundles with more certificates (default 500, a public-CA trust store fits). */
  maxCertificates?: number;
}

const keyTypes: Record<string, 'pkcs8' | 'sec1' | 'pkcs1'> = {
  'PRIVATE KEY': 'pkcs8',
  'EC PRIVATE KEY': 'sec1',
  'RSA PRIVATE KEY': 'pkcs1',
};
const beginLine = /^-----BEGIN ([A-Z0-9 ]{1,40})-----$/;
const endLine = /^-----END ([A-Z0-9 ]{1,40})-----$/;
const base64Line = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Parses a PEM bundle: certificates (in order), at most one private key (PKCS#8, SEC1 or
 * PKCS#1), and `X509 CRL` blocks. Text between blocks is ignored, as OpenSSL does (CA bundles
 * carry comments); `EC PARAMETERS` blocks are skipped. Refused: no blocks, a block without its
 * END (truncated), mismatched labels, bad base64, unreadable DER, encrypted or several keys,
 * any other label.
 *
 * Never throws.
 * @example
 * const bundle = parsePemBundle(secret.value);
 * if (bundle.kind === 'invalid') return reject(bundle.reason);
 */
export function parsePemBundle(input: string | Uint8Array, options: ParsePemBundleOptions = {}): PemBundle {
  try {
    return parse(input, options);
  } catch {
    // Defensive: every known failure is handled below; an unknown one must not escape.
    return { kind: 'invalid', reason: 'unreadable PEM bundle' };
  }
}

function parse(input: string | Uint8Array, options: ParsePemBundleOptions): PemBundle {
  const maxBytes = options.maxBytes ?? 1024 * 1024;
  const maxCertificates = options.maxCertificates ?? 500;
  if (typeof input !== 'string' && !(input instanceof Uint8Array)) {
    return { kind: 'invalid', reason: 'input is not text' };
  }
  const size = typeof input === 'string' ? input.length : input.byteLength;
  if (size > maxBytes) return { kind: 'invalid', reason: `bundle larger than ${maxBytes} bytes` };
  const text = typeof input === 'string' ? input : Buffer.from(input).toString('utf8');

  const certificates: ParsedCertificate[] = [];
  const crls: ParsedCrl[] = [];
  let privateKey: ParsedPrivateKey | undefined;
  let blocks = 0;
  let open: { label: string; body: string[] } | undefined;

  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (open === undefined) {
      const begin = beginLine.exec(line);
      if (begin) {
        open = { label: begin[1]!, body: [] };
        continue;
      }
      if (line.startsWith('-----END')) return { kind: 'invalid', reason: 'END line without a BEGIN line' };
      if (line.includes('-----BEGIN')) return { kind: 'invalid', reason: 'malformed BEGIN line' };
      continue;
    }
    const end = endLine.exec(line);
    if (end) {
      if (end[1] !== open.label)
        return { kind: 'invalid', reason: `block ${open.label} ends with a different label` };
      blocks += 1;
      const block = addBlock(open.label, open.body.join(''), blocks);
      if (typeof block === 'string') return { kind: 'invalid', reason: block };
      if (block.kind === 'certificate') {
        certificates.push(block.value);
        if (certificates.length > maxCertificates) {
          return { kind: 'invalid', reason: `more than ${maxCertificates} certificates` };
        }
      } else if (block.kind === 'key') {
        if (privateKey !== undefined) return { kind: 'invalid', reason: 'more than one private key' };
        privateKey = block.value;
      } else if (block.kind === 'crl') {
        crls.push(block.value);
      }
      open = undefined;
      continue;
    }
    if (line.startsWith('-----')) return { kind: 'invalid', reason: `block ${open.label} is truncated` };
    if (line.startsWith('Proc-Type:') || line.startsWith('DEK-Info:')) {
      return { kind: 'invalid', reason: 'encrypted private keys are not supported' };
    }
    if (!base64Line.test(line))
      return { kind: 'invalid', reason: `block ${open.label} holds invalid base64` };
    open.body.push(line);
  }
  if (open !== undefined)
    return { kind: 'invalid', reason: `block ${open.label} is truncated (no END line)` };
  if (blocks === 0) return { kind: 'invalid', reason: 'no PEM blocks found' };
  if (certificates.length === 0 && privateKey === undefined && crls.length === 0) {
    return { kind: 'invalid', reason: 'no certificate, private key or CRL found' };
  }
  return privateKey ? { kind: 'ok', certificates, privateKey, crls } : { kind: 'ok', certificates, crls };
}

type Block =
  | { kind: 'certificate'; value: ParsedCertificate }
  | { kind: 'key'; value: ParsedPrivateKey }
  | { kind: 'crl'; value: ParsedCrl }
  | { kind: 'skipped' };

function addBlock(label: string, base64: string, index: number): Block | string {
  if (label === 'EC PARAMETERS') return { kind: 'skipped' };
  if (label === 'ENCRYPTED PRIVATE KEY') return 'encrypted private keys are not supported';
  const der = decodeBase64(base64);
  if (der === undefined) return `block ${index} (${label}) holds invalid base64`;
  if (label === 'CERTIFICATE') {
    try {
      return {
        kind: 'certificate',
        value: { pem: toPem('CERTIFICATE', der), x509: new X509Certificate(der) },
      };
    } catch {
      return `block ${index} is not a valid X.509 certificate`;
    }
  }
  const keyType = keyTypes[label];
  if (keyType !== undefined) {
    try {
      const key = createPrivateKey({ key: der, format: 'der', type: keyType });
      return {
        kind: 'key',
        value: { key, pem: key.export({ type: 'pkcs8', format: 'pem' }).toString() },
      };
    } catch {
      // Deliberately generic: a parser message could echo key bytes.
      return `block ${index} is not a readable private key`;
    }
  }
  if (label === 'X509 CRL') return { kind: 'crl', value: { der, pem: toPem('X509 CRL', der) } };
  return `unexpected PEM block ${label}`;
}

function decodeBase64(body: string): Buffer | undefined {
  if (body.length === 0 || body.length % 4 !== 0) return undefined;
  // `=` may only pad the very end.
  if (/=[^=]/.test(body)) return undefined;
  const der = Buffer.from(body, 'base64');
  return der.length === 0 ? undefined : der;
}
