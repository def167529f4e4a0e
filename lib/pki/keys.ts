import {
  createPrivateKey,
  createPublicKey,
  generateKeyPair as generateKeyPairCallback,
  type KeyObject,
  type webcrypto,
} from 'node:crypto';
import { CertificateValidationError } from './errors.ts';

/** Key algorithms the project issues and accepts. */
export type KeySpec = { kind: 'ec'; curve: 'P-256' | 'P-384' } | { kind: 'rsa'; bits: 2048 | 3072 | 4096 };

/** A key pair as PEM text. `privateKeyPem` is secret material: never log it, store it 0600. */
export interface KeyPair {
  /** PKCS#8 (`BEGIN PRIVATE KEY`). */
  privateKeyPem: string;
  /** SPKI (`BEGIN PUBLIC KEY`). */
  publicKeyPem: string;
}

/** The default key for new certificates and CAs: ECDSA P-256. */
export const defaultKeySpec: KeySpec = { kind: 'ec', curve: 'P-256' };

/**
 * Generates a key pair (default ECDSA P-256).
 * @example const key = await generateKey({ kind: 'rsa', bits: 3072 });
 */
export async function generateKey(spec: KeySpec = defaultKeySpec): Promise<KeyPair> {
  const encoding = {
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  } as const;
  return new Promise((resolve, reject) => {
    const done = (error: Error | null, publicKeyPem: string, privateKeyPem: string) =>
      error ? reject(error) : resolve({ privateKeyPem, publicKeyPem });
    if (spec.kind === 'ec') generateKeyPairCallback('ec', { namedCurve: spec.curve, ...encoding }, done);
    else generateKeyPairCallback('rsa', { modulusLength: spec.bits, ...encoding }, done);
  });
}

/** What a key is, independent of its encoding. */
export type KeyDescription =
  | { kind: 'ec'; curve: string }
  | { kind: 'rsa'; bits: number }
  | { kind: 'rsa-pss'; bits: number }
  | { kind: 'other'; type: string };

const curveNames: Record<string, string> = {
  prime256v1: 'P-256',
  secp256r1: 'P-256',
  secp384r1: 'P-384',
  secp521r1: 'P-521',
};

/** Describes a public or private key object. */
export function describeKey(key: KeyObject): KeyDescription {
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curve = details.namedCurve ?? 'unknown';
      return { kind: 'ec', curve: curveNames[curve] ?? curve };
    }
    case 'rsa':
      return { kind: 'rsa', bits: details.modulusLength ?? 0 };
    case 'rsa-pss':
      return { kind: 'rsa-pss', bits: details.modulusLength ?? 0 };
    default:
      return { kind: 'other', type: key.asymmetricKeyType ?? 'unknown' };
  }
}

/** A short, stable label for a key: `ec-P-256`, `rsa-2048`, `ed25519`. */
export function keyLabel(description: KeyDescription): string {
  switch (description.kind) {
    case 'ec':
      return `ec-${description.curve}`;
    case 'rsa':
    case 'rsa-pss':
      return `${description.kind}-${description.bits}`;
    default:
      return description.type;
  }
}

/** A private key ready for WebCrypto signing, with the signature algorithm that goes with it. */
export interface SigningKey {
  cryptoKey: webcrypto.CryptoKey;
  algorithm: webcrypto.Algorithm | webcrypto.EcdsaParams;
  description: KeyDescription;
}

/**
 * Imports a PEM private key (PKCS#8, SEC1 or PKCS#1) for signing certificates, CSRs and CRLs.
 * ECDSA keys sign with the hash that matches their curve; RSA keys with PKCS#1 v1.5 SHA-256.
 * Never includes key text in an error.
 */
export async function importSigningKey(privateKeyPem: string): Promise<SigningKey> {
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey(privateKeyPem);
  } catch (cause) {
    throw new CertificateValidationError('pem-invalid', 'the signing key is not a readable private key', {
      cause: cause instanceof Error ? new Error(cause.message.split('\n')[0]) : undefined,
    });
  }
  const description = describeKey(keyObject);
  if (description.kind === 'ec' && (description.curve === 'P-256' || description.curve === 'P-384')) {
    const cryptoKey = await keyObject.toCryptoKey({ name: 'ECDSA', namedCurve: description.curve }, false, [
      'sign',
    ]);
    return {
      cryptoKey,
      algorithm: {
        name: 'ECDSA',
        hash: description.curve === 'P-384' ? 'SHA-384' : 'SHA-256',
      } as webcrypto.EcdsaParams,
      description,
    };
  }
  if (description.kind === 'rsa') {
    const algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    const cryptoKey = await keyObject.toCryptoKey(algorithm, false, ['sign']);
    return { cryptoKey, algorithm, description };
  }
  throw new CertificateValidationError(
    'weak-key',
    `signing keys must be ECDSA P-256/P-384 or RSA; got ${keyLabel(description)}`,
  );
}

/** The key pair for a private key (derives the SPKI public key). */
export function keyPairFromPrivateKey(privateKeyPem: string): KeyPair {
  const privateKey = createPrivateKey(privateKeyPem);
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString(),
  };
}
