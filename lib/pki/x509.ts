/**
 * The one place that loads `@peculiar/x509`: it needs `reflect-metadata` before it is
 * evaluated and a WebCrypto provider before first use. Every PKI module imports the library
 * from here so the order can never be wrong.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };
