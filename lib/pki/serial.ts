import { randomBytes } from 'node:crypto';

/**
 * A fresh certificate serial: 16 random bytes, positive, as lowercase hex without separators
 * (the project's one serial format).
 *
 * The first byte is kept in 0x10–0x7f: below 0x80 so DER needs no sign byte, and at or above
 * 0x10 so the hex has no leading zero — a generated serial is therefore already in the form
 * {@link normaliseSerial} returns, and compares equal as a plain string.
 */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = 0x10 + (bytes[0]! % 0x70);
  return bytes.toString('hex');
}

/**
 * Brings a serial from any presentation to the project's form: lowercase hex, no separators,
 * no leading zeros (`'0'` for zero). Accepts what node's `X509Certificate.serialNumber`, PCA,
 * OpenSSL and HAProxy print: `AB:CD:…`, `ab cd`, uppercase, a `0x` prefix, a DER sign byte.
 *
 * @returns the normalised serial, or `undefined` when the input is not a hexadecimal serial.
 * @example normaliseSerial('00:1F:A0') // '1fa0'
 */
export function normaliseSerial(serial: string): string | undefined {
  if (typeof serial !== 'string') return undefined;
  let hex = serial.trim().toLowerCase();
  if (hex.startsWith('0x')) hex = hex.slice(2);
  hex = hex.replace(/[:\s-]/g, '');
  if (hex.length === 0 || hex.length > 128 || !/^[0-9a-f]+$/.test(hex)) return undefined;
  hex = hex.replace(/^0+/, '');
  return hex === '' ? '0' : hex;
}

/** Whether two serials are the same number in any presentation; false when either is not a serial. */
export function sameSerial(a: string, b: string): boolean {
  const left = normaliseSerial(a);
  return left !== undefined && left === normaliseSerial(b);
}
