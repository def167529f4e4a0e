/**
 * `portcullis init`'s first allowlist: read from --allowlist-file (or standard input) and stored
 * the way update-allowlist stores one, inline when it fits a secret value and otherwise as an
 * object pinned by a manifest, against a local file secret store and its file object store.
 * What is written is read back the way `allowlist show` (resolveAllowlist) and a sidecar
 * (loadAllowlist) read it.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { cidrLines, readCidrFile } from '../../cli/allowlist-input.ts';
import { run as initCommand, initFleet } from '../../cli/commands/init.ts';
import { localPaths } from '../../cli/demo/target.ts';
import { normaliseAllowlist } from '../../lib/allowlist/index.ts';
import { ValidationError } from '../../lib/errors.ts';
import { FileObjectStore, localAllowlistObjects, objectsRoot } from '../../lib/local/file-object-store.ts';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { LocalAuthority } from '../../lib/local/local-authority.ts';
import { Stage } from '../../lib/ports.ts';
import {
  AllowlistDocument,
  AllowlistLimits,
  type ObjectStore,
  type ObjectStoreFor,
  resolveAllowlist,
} from '../../lib/secrets/allowlist-storage.ts';
import { AllowlistTooLarge } from '../../lib/secrets/errors.ts';
import { parseSecret } from '../../lib/secrets/formats.ts';
import { loadAllowlist } from '../../proxy/sidecar/allowlist-source.ts';

const FLEET = 'edge';
const ids = {
  fleetConfig: `portcullis/${FLEET}/fleet-config`,
  allowlist: `portcullis/${FLEET}/allowlist`,
  nudgeKey: `portcullis/${FLEET}/nudge-key`,
  trust: `portcullis/${FLEET}/trust`,
};

function fleetConfig(allowlist: { maxEntries?: number } = {}): string {
  return JSON.stringify({
    fleet: FLEET,
    routes: [],
    allowlist: { source: { secretId: ids.allowlist }, ...allowlist },
    trust: { secretId: ids.trust },
    nudgeKey: { secretId: ids.nudgeKey },
  });
}

/** `n` distinct entries, IPv4 and IPv6 alternating, hosts and networks. */
function mixedEntries(n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const k = i >> 1;
    if (i % 2 === 0)
      out.push(`10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}${k % 7 === 0 ? '/32' : ''}`);
    else out.push(k % 5 === 0 ? `2001:db8:${(k + 1).toString(16)}::/64` : `2001:db8:ffff::${k.toString(16)}`);
  }
  return out;
}

/** An object store that counts the objects written through it. */
function counting(store: ObjectStore): ObjectStore & { puts: number } {
  const wrapped = {
    bucket: store.bucket,
    puts: 0,
    put: (...args: Parameters<ObjectStore['put']>) => {
      wrapped.puts++;
      return store.put(...args);
    },
    get: (...args: Parameters<ObjectStore['get']>) => store.get(...args),
  };
  return wrapped;
}

let dir: string;
let storeDir: string;
let store: FileSecretStore;
let authority: LocalAuthority;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-init-allowlist-'));
  const paths = localPaths(dir);
  storeDir = paths.store;
  store = await FileSecretStore.open(storeDir);
  authority = await LocalAuthority.open(paths.ca);
});

afterEach(async () => {
  vi.restoreAllMocks();
  await rm(dir, { recursive: true, force: true });
});

/** The sidecar's object stores of a file store (proxy/sidecar/allowlist-source.ts). */
const sidecarObjects: () => ObjectStoreFor = () => (bucket) =>
  new FileObjectStore(objectsRoot(storeDir), bucket);

/** The allowlist as `allowlist show` and a sidecar read it back, with the raw document. */
async function readBack(
  maxEntries = 100_000,
): Promise<{ raw: AllowlistDocument; show: string[]; sidecar: string[] }> {
  const text = (await store.get(ids.allowlist, { stage: Stage.Current })).value;
  const raw = parseSecret(AllowlistDocument, ids.allowlist, text);
  const show = (await resolveAllowlist(raw, sidecarObjects())).cidrs;
  const checked = await loadAllowlist(text, { allowAll0: false, maxEntries }, sidecarObjects());
  if (checked.kind !== 'ok') throw new Error(`the sidecar refuses the allowlist: ${checked.reason}`);
  return { raw, show, sidecar: checked.value.cidrs };
}

async function objectFiles(): Promise<string[]> {
  return (await readdir(objectsRoot(storeDir), { recursive: true }).catch(() => [])).filter((f) =>
    f.endsWith('.object'),
  );
}

describe('init --allowlist-file', () => {
  it('stores a 100 000-entry first allowlist as an object pinned by a manifest, read back identical', async () => {
    const entries = mixedEntries(100_000);
    const file = join(dir, 'partners.txt');
    await writeFile(
      file,
      `# partners\n${entries.map((e, i) => (i % 1000 === 0 ? `${e}  # batch` : e)).join('\n')}\n`,
    );
    const objects = localAllowlistObjects(storeDir, FLEET);
    const puts = counting(objects.store);

    const fromFile = await readCidrFile(file);
    expect(fromFile).toEqual(entries);
    const result = await initFleet({
      store,
      authority,
      fleet: FLEET,
      fleetConfigText: fleetConfig({ maxEntries: AllowlistLimits.maxEntries }),
      allowlist: ['192.0.2.0/24', ...fromFile],
      allowlistObjects: { store: puts, prefix: objects.prefix },
    });

    expect(puts.puts).toBe(1);
    const step = result.steps.find((s) => s.kind === 'allowlist');
    expect(step).toMatchObject({ secretId: ids.allowlist, action: 'created' });
    const expected = normaliseAllowlist(['192.0.2.0/24', ...entries], {
      maxEntries: AllowlistLimits.maxEntries,
    });
    if (expected.kind !== 'ok') throw new Error('the test list is invalid');
    const texts = expected.cidrs.map((c) => c.text);
    expect(texts).toHaveLength(100_001);

    const { raw, show, sidecar } = await readBack(AllowlistLimits.maxEntries);
    expect('manifest' in raw).toBe(true);
    if (!('manifest' in raw)) return;
    expect(raw.entries).toBe(100_001);
    expect(raw.object.bucket).toBe(objects.store.bucket);
    expect(raw.object.key.startsWith(`${objects.prefix}lists/`)).toBe(true);
    // The secret's version id is the one the object key is named after.
    const current = await store.get(ids.allowlist, { stage: Stage.Current });
    expect(raw.object.key).toBe(`${objects.prefix}lists/${current.versionId}.cidrs`);
    expect(raw.reason).toBe('portcullis init');
    expect(step?.note).toContain(raw.object.versionId);
    expect(show).toEqual(texts);
    expect(sidecar).toEqual(texts);
    // Every entry of the file, in its canonical form (a bare address is a host route).
    const canonical = (e: string) => (e.includes('/') ? e : `${e}/${e.includes(':') ? 128 : 32}`);
    expect(new Set(show)).toEqual(new Set(['192.0.2.0/24', ...entries].map(canonical)));

    // A second run keeps the secret and uploads nothing.
    const again = await initFleet({
      store,
      authority,
      fleet: FLEET,
      allowlist: ['198.51.100.0/24'],
      allowlistObjects: { store: puts, prefix: objects.prefix },
    });
    expect(puts.puts).toBe(1);
    expect(again.steps.find((s) => s.kind === 'allowlist')).toMatchObject({ action: 'kept' });
    expect(await objectFiles()).toHaveLength(1);
    expect((await store.get(ids.allowlist, { stage: Stage.Current })).versionId).toBe(current.versionId);
  }, 20_000);

  it('keeps a small first allowlist inline: no object is written', async () => {
    const objects = localAllowlistObjects(storeDir, FLEET);
    const puts = counting(objects.store);
    const result = await initFleet({
      store,
      authority,
      fleet: FLEET,
      fleetConfigText: fleetConfig(),
      allowlist: ['2001:db8::/32', '203.0.113.0/24', '203.0.113.9/24'],
      reason: 'first partners',
      allowlistObjects: { store: puts, prefix: objects.prefix },
    });
    expect(puts.puts).toBe(0);
    expect(await objectFiles()).toEqual([]);
    expect(result.steps.find((s) => s.kind === 'allowlist')).toMatchObject({
      action: 'created',
      note: '2 entries inline',
    });
    const { raw, show, sidecar } = await readBack();
    expect(raw).toEqual({
      cidrs: ['203.0.113.0/24', '2001:db8::/32'],
      reason: 'first partners',
      updatedBy: 'portcullis init',
    });
    expect(show).toEqual(['203.0.113.0/24', '2001:db8::/32']);
    expect(sidecar).toEqual(show);
  });

  it('refuses a list too large for a secret value without an object store before writing any secret', async () => {
    const entries = mixedEntries(5_000);
    const attempt = initFleet({
      store,
      authority,
      fleet: FLEET,
      fleetConfigText: fleetConfig(),
      allowlist: entries,
    });
    await expect(attempt).rejects.toBeInstanceOf(AllowlistTooLarge);
    await expect(attempt).rejects.toThrow(/65536 bytes/);
    expect(await store.listSecrets()).toEqual([]);
    expect(await objectFiles()).toEqual([]);

    // The same list with the object store goes through.
    await initFleet({
      store,
      authority,
      fleet: FLEET,
      fleetConfigText: fleetConfig(),
      allowlist: entries,
      allowlistObjects: localAllowlistObjects(storeDir, FLEET),
    });
    expect((await readBack()).show).toHaveLength(5_000);
  });

  it('refuses a list over allowlist.maxEntries, and over the store limit, before writing any secret', async () => {
    const objects = localAllowlistObjects(storeDir, FLEET);
    await expect(
      initFleet({
        store,
        authority,
        fleet: FLEET,
        fleetConfigText: fleetConfig({ maxEntries: 3 }),
        allowlist: mixedEntries(4),
        allowlistObjects: objects,
      }),
    ).rejects.toThrow(/4 entries exceed the limit of 3 \(allowlist\.maxEntries\)/);
    // A fleet config cannot allow more than the store holds.
    await expect(
      initFleet({
        store,
        authority,
        fleet: FLEET,
        fleetConfigText: fleetConfig({ maxEntries: AllowlistLimits.maxEntries + 1 }),
        allowlist: [],
        allowlistObjects: objects,
      }),
    ).rejects.toBeInstanceOf(ValidationError);
    expect(await store.listSecrets()).toEqual([]);
    expect(await objectFiles()).toEqual([]);
  });

  it('keeps an existing allowlist secret and uploads nothing, even when the given list is too large for it', async () => {
    await initFleet({
      store,
      authority,
      fleet: FLEET,
      fleetConfigText: fleetConfig(),
      allowlist: ['192.0.2.1'],
    });
    const before = await store.get(ids.allowlist, { stage: Stage.Current });
    const puts = counting(localAllowlistObjects(storeDir, FLEET).store);
    const result = await initFleet({
      store,
      authority,
      fleet: FLEET,
      allowlist: mixedEntries(5_000),
      allowlistObjects: { store: puts, prefix: 'allowlists/edge/' },
    });
    expect(result.steps.find((s) => s.kind === 'allowlist')).toMatchObject({ action: 'kept' });
    expect(result.steps.find((s) => s.kind === 'allowlist')?.note).toMatch(/not written/);
    expect(puts.puts).toBe(0);
    expect(await store.get(ids.allowlist, { stage: Stage.Current })).toEqual(before);
    // Without an object store the kept secret is no reason to refuse either.
    await initFleet({ store, authority, fleet: FLEET, allowlist: mixedEntries(5_000) });
  });
});

describe('portcullis init --allowlist-file (the command)', () => {
  async function runInit(args: string[], stdin?: string) {
    if (stdin !== undefined)
      vi.spyOn(process, 'stdin', 'get').mockReturnValue(Readable.from([stdin]) as never);
    const out: string[] = [];
    const err: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((line: string) => void out.push(line));
    const write = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
      err.push(String(chunk));
      return true;
    });
    const config = join(dir, 'fleet.json');
    await writeFile(config, fleetConfig());
    const code = await initCommand(['--fleet', FLEET, '--local', dir, '--config', config, ...args]);
    write.mockRestore();
    return { code, stdout: out.join('\n'), stderr: err.join('') };
  }

  it("reads '-' from standard input, together with --allowlist", async () => {
    const run = await runInit(
      ['--allowlist', '198.51.100.0/24', '--allowlist-file', '-'],
      '# from a pipe\r\n203.0.113.0/24\n\n2001:db8::1  # one host\n',
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/created allowlist +portcullis\/edge\/allowlist \(3 entries inline\)/);
    expect((await readBack()).show).toEqual(['198.51.100.0/24', '203.0.113.0/24', '2001:db8::1/128']);
  });

  it('names the line of an invalid entry and writes nothing', async () => {
    const file = join(dir, 'list.txt');
    await writeFile(file, '# partners\n203.0.113.0/24\n\n10.0.0.0/33\n2001:db8::/32\n');
    const run = await runInit(['--allowlist-file', file]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`${file}:4: "10.0.0.0/33"`);
    expect(run.stderr).not.toContain(':2:');
    expect(await store.listSecrets()).toEqual([]);
  });

  it('stores a list too large for a secret value in the local object store', async () => {
    const entries = mixedEntries(4_000);
    const file = join(dir, 'list.txt');
    await writeFile(file, `${entries.join('\n')}\n`);
    const run = await runInit(['--allowlist-file', file, '--reason', 'partners 2026']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(
      /created allowlist +portcullis\/edge\/allowlist \(4000 entries in object portcullis-local\/allowlists\/edge\/lists\//,
    );
    const { raw, show } = await readBack();
    expect('manifest' in raw && raw.reason).toBe('partners 2026');
    expect(show).toHaveLength(4_000);
    expect(await objectFiles()).toHaveLength(1);
  });

  it('reports an unreadable file', async () => {
    const run = await runInit(['--allowlist-file', join(dir, 'missing.txt')]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/cannot read allowlist file .*missing\.txt/);
    expect(await store.listSecrets()).toEqual([]);
  });
});

describe('cidrLines', () => {
  it('numbers the lines of entries from 1, skipping comments and blank lines', () => {
    expect(cidrLines('# c\r\n10.0.0.0/8 # x\n\n  ::1\n')).toEqual([
      { line: 2, entry: '10.0.0.0/8' },
      { line: 4, entry: '::1' },
    ]);
  });
});
