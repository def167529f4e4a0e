/**
 * A minimal PNG encoder (8-bit RGB, no interlace) over `node:zlib`, so the benchmarks can draw
 * charts without an image dependency. Pure: pixels in, file bytes out.
 */
import { crc32, deflateSync } from 'node:zlib';

/** An 8-bit RGB raster: `pixels` holds `width × height × 3` bytes, rows top to bottom. */
export interface RgbImage {
  width: number;
  height: number;
  pixels: Uint8Array;
}

/** The eight bytes every PNG file starts with. */
export const PNG_SIGNATURE: Buffer = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Colour type 2: each pixel is an R, G, B triple. */
const COLOR_TYPE_RGB = 2;
/** PNG caps both dimensions at 2^31 − 1; far below that, one row must fit a Buffer. */
const MAX_DIMENSION = 0x7fff_ffff;

/** One chunk: length, type, data, and the CRC-32 of type and data (PNG spec §5.3). */
function chunk(type: string, data: Uint8Array): Buffer {
  const typeBytes = Buffer.from(type, 'latin1');
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  typeBytes.copy(out, 4);
  out.set(data, 8);
  out.writeUInt32BE(crc32(data, crc32(typeBytes)), 8 + data.length);
  return out;
}

/**
 * Encodes an RGB image as a PNG file: signature, IHDR, one IDAT (zlib stream of the rows, each
 * prefixed with filter type 0), IEND.
 *
 * @throws RangeError when a dimension is not a positive integer or `pixels` has the wrong length.
 * @example
 * writeFileSync('dot.png', encodePng({ width: 1, height: 1, pixels: Uint8Array.of(255, 0, 0) }));
 */
export function encodePng(image: RgbImage): Buffer {
  const { width, height, pixels } = image;
  for (const [name, value] of [
    ['width', width],
    ['height', height],
  ] as const) {
    if (!Number.isInteger(value) || value < 1 || value > MAX_DIMENSION) {
      throw new RangeError(`PNG ${name} must be an integer 1…${MAX_DIMENSION}, got ${value}`);
    }
  }
  const stride = width * 3;
  if (pixels.length !== stride * height) {
    throw new RangeError(
      `an RGB image of ${width}×${height} has ${stride * height} bytes, got ${pixels.length}`,
    );
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = COLOR_TYPE_RGB;
  header[10] = 0; // compression: deflate, the only one defined
  header[11] = 0; // filter method: adaptive, the only one defined
  header[12] = 0; // no interlace
  // Filter type 0 (none) on every row: charts are long runs of one colour, which deflate
  // already shrinks well, and it keeps the encoder trivially correct.
  const raw = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    raw.set(pixels.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  }
  return Buffer.concat([
    PNG_SIGNATURE,
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', new Uint8Array(0)),
  ]);
}
