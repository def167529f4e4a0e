/**
 * A minimal ZIP writer for Lambda deployment packages.
 *
 * osls globs the whole service directory (node_modules included) for every function it packages
 * itself; handing it ready-made archives instead keeps `sls package` fast and fully offline. The
 * archives only ever hold a handful of bundled files, so a small, deterministic writer is enough:
 * DEFLATE through `node:zlib`, a fixed timestamp (identical input → identical archive → identical
 * CloudFormation hash, so unchanged functions are not redeployed), no ZIP64.
 */
import { crc32, deflateRawSync } from 'node:zlib';

/** One file in the archive; `name` uses `/` separators and no leading slash. */
export interface ZipEntry {
  name: string;
  data: Uint8Array;
  /** Unix permission bits; default `0o644`. */
  mode?: number;
}

// 1980-01-01 00:00:00, the earliest DOS timestamp: the archive must not depend on the clock.
const DOS_TIME = 0;
const DOS_DATE = (0 << 9) | (1 << 5) | 1;
const VERSION_MADE_BY_UNIX = (3 << 8) | 20;
const VERSION_NEEDED = 20;
const METHOD_DEFLATE = 8;
const FLAG_UTF8 = 1 << 11;
const MAX_32 = 0xffffffff;

/**
 * Builds a ZIP archive (DEFLATE, UTF-8 names, Unix modes) from in-memory files.
 *
 * @throws RangeError when a name is empty, absolute, contains `..`, repeats, or the archive
 * would need ZIP64 (more than 65 535 entries or 4 GiB) — none of which a Lambda bundle needs.
 * @example
 * writeFileSync('fn.zip', zip([{ name: 'functions/fn.mjs', data: bundle }]));
 */
export function zip(entries: readonly ZipEntry[]): Buffer {
  if (entries.length > 0xffff) throw new RangeError('too many entries for a ZIP without ZIP64');
  const seen = new Set<string>();
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    checkName(entry.name, seen);
    const name = Buffer.from(entry.name, 'utf8');
    const compressed = deflateRawSync(entry.data, { level: 9 });
    const crc = crc32(entry.data);
    if (entry.data.byteLength > MAX_32 || compressed.byteLength > MAX_32 || offset > MAX_32) {
      throw new RangeError('archive too large for a ZIP without ZIP64');
    }
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(VERSION_NEEDED, 4);
    local.writeUInt16LE(FLAG_UTF8, 6);
    local.writeUInt16LE(METHOD_DEFLATE, 8);
    local.writeUInt16LE(DOS_TIME, 10);
    local.writeUInt16LE(DOS_DATE, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(compressed.byteLength, 18);
    local.writeUInt32LE(entry.data.byteLength, 22);
    local.writeUInt16LE(name.byteLength, 26);
    local.writeUInt16LE(0, 28);

    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(VERSION_MADE_BY_UNIX, 4);
    central.writeUInt16LE(VERSION_NEEDED, 6);
    central.writeUInt16LE(FLAG_UTF8, 8);
    central.writeUInt16LE(METHOD_DEFLATE, 10);
    central.writeUInt16LE(DOS_TIME, 12);
    central.writeUInt16LE(DOS_DATE, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(compressed.byteLength, 20);
    central.writeUInt32LE(entry.data.byteLength, 24);
    central.writeUInt16LE(name.byteLength, 28);
    // extra length, comment length, disk number start, internal attributes: all 0
    central.writeUInt32LE((((0o100000 | (entry.mode ?? 0o644)) << 16) >>> 0) >>> 0, 38);
    central.writeUInt32LE(offset, 42);

    locals.push(local, name, compressed);
    centrals.push(central, name);
    offset += local.byteLength + name.byteLength + compressed.byteLength;
  }
  const centralSize = centrals.reduce((sum, part) => sum + part.byteLength, 0);
  if (offset > MAX_32 || centralSize > MAX_32)
    throw new RangeError('archive too large for a ZIP without ZIP64');
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(centralSize, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, ...centrals, end]);
}

function checkName(name: string, seen: Set<string>): void {
  if (name === '' || name.startsWith('/') || name.includes('\\') || name.split('/').includes('..')) {
    throw new RangeError(`invalid archive entry name: ${JSON.stringify(name)}`);
  }
  if (seen.has(name)) throw new RangeError(`duplicate archive entry: ${name}`);
  seen.add(name);
}
