/**
 * ClientHello fixtures for gateway tests: build hellos of any shape, re-frame them across TLS
 * records, cut them into TCP writes (send with `sendRaw` from `./net.ts`), and read SNI back.
 */
import { buildClientHello, HYBRID_KEY_SHARE_SIZE } from '../../lib/net/client-hello.ts';

export {
  buildClientHello,
  buildSslv2ClientHello,
  type ClientHelloInfo,
  type ClientHelloOptions,
  HYBRID_KEY_SHARE_SIZE,
  handshakeBytes,
  NamedGroup,
  readClientHello,
  readSni,
  splitIntoRecords,
  splitWrites,
  TlsExtension,
} from '../../lib/net/client-hello.ts';

/** A hello shaped like a post-quantum browser's (X25519MLKEM768 key share, ~1.4 KB): more than one segment at small MSS. */
export function postQuantumHello(
  serverName: string,
  options: { alpn?: string[]; targetSize?: number } = {},
): Buffer {
  return buildClientHello({
    serverName,
    keyShareSize: HYBRID_KEY_SHARE_SIZE,
    alpn: options.alpn ?? ['h2', 'http/1.1'],
    ...(options.targetSize === undefined ? {} : { targetSize: options.targetSize }),
  });
}
