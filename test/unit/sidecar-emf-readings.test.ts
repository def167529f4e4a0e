/**
 * What an EMF emission reads besides the state, without HAProxy (a fake runtime API whose
 * `show info` reports `DroppedLogs`): one `show info` feeds the access log sink's DroppedLogs and
 * names the worker the TLS counters belong to (`scrape.ts`), and the sidecar's EMF loop writes
 * the lost lines and refusals the sink counted as counts since the previous line (`loops.ts`).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { type CertificateAuthorityMaterial, createCertificateAuthority } from '../../lib/pki/index.ts';
import { runEffects } from '../../proxy/sidecar/apply-object.ts';
import { parseSidecarConfig } from '../../proxy/sidecar/config.ts';
import type { SidecarContext } from '../../proxy/sidecar/context.ts';
import { EMF_METRICS } from '../../proxy/sidecar/emf.ts';
import { type LogSink, startLogSink } from '../../proxy/sidecar/log-sink.ts';
import { startSidecar } from '../../proxy/sidecar/main.ts';
import { createScrape } from '../../proxy/sidecar/scrape.ts';
import { tryStart } from '../../proxy/sidecar/start.ts';
import { FakeRuntime } from '../support/fake-runtime.ts';
import {
  certificateDocument,
  issueCredential,
  putSecret,
  terminateFleetDocument,
  testSidecarConfig,
  testSidecarContext,
} from '../support/sidecar.ts';

const NAME = 'a.emf.test';

/** The fake runtime API with a worker's `DroppedLogs` the test sets. */
class DroppingRuntime extends FakeRuntime {
  droppedLogs = 0;
  override async showInfo() {
    const info = await super.showInfo();
    return { ...info, fields: { ...info.fields, DroppedLogs: String(this.droppedLogs) } };
  }
  showInfoCalls(): number {
    return this.names().filter((n) => n === 'showInfo').length;
  }
}

const frame = (text: string) => {
  const bytes = Buffer.from(text, 'utf8');
  return Buffer.concat([Buffer.from(`${bytes.length} `), bytes]);
};

let ca: CertificateAuthorityMaterial;
let dir: string;
let store: FileSecretStore;
let fake: DroppingRuntime;
let lines: string[];

beforeAll(async () => {
  ca = await createCertificateAuthority({ commonName: 'EMF readings CA' });
});

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-emfr-'));
  store = await FileSecretStore.open(join(dir, 'store'));
  await putSecret(store, 'fleet', terminateFleetDocument('emf-test', [NAME], { allowlist: false }));
  await putSecret(store, 'nudge-key', JSON.stringify({ key: randomBytes(32).toString('base64') }));
  await putSecret(store, 'trust', JSON.stringify({ caBundlePem: ca.certificatePem }));
  await putSecret(
    store,
    `cert/${NAME}`,
    certificateDocument(await issueCredential(ca, { commonName: NAME, dns: [NAME] })),
  );
  fake = new DroppingRuntime();
  lines = [];
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('scrape: the figures of one EMF emission', () => {
  let sink: LogSink | undefined;
  afterEach(async () => {
    await sink?.close();
    sink = undefined;
  });

  function context(): SidecarContext {
    return testSidecarContext({ dir, store, runtime: fake, lines });
  }

  it('reads DroppedLogs and the TLS counters from one show info, summed across workers', async () => {
    const ctx = context();
    await tryStart(ctx, 0);
    await runEffects(ctx, ctx.dispatch({ type: 'haproxyUp', pid: fake.pid }));
    expect(ctx.state.phase).toBe('ready');
    sink = await startLogSink({ path: join(dir, 'sink', 'log.sock'), output: () => undefined });
    const scrape = createScrape(ctx, sink);
    fake.calls.length = 0;

    fake.droppedLogs = 3;
    const first = await scrape.emfReadings();
    expect(fake.showInfoCalls()).toBe(1);
    expect(fake.calls.some((c) => c.method === 'execute' && String(c.args[0]).startsWith('show table'))).toBe(
      true,
    );
    expect(first.tls).toEqual({ handshakes: 0, verifyFailures: 0 });
    expect(first.accessLog).toEqual({ dropped: 3, overflows: 0, refusals: {} });

    // A reload: the new worker's DroppedLogs starts again and adds to the old one's.
    fake.pid = 101;
    fake.droppedLogs = 2;
    expect((await scrape.emfReadings()).accessLog?.dropped).toBe(5);
    expect(fake.showInfoCalls()).toBe(2);

    // The /metrics scrape feeds the same sink: the next emission sees what it read.
    fake.droppedLogs = 4;
    expect(await scrape.metrics()).toMatch(/^portcullis_access_log_dropped_lines_total 7$/m);
    expect(fake.showInfoCalls()).toBe(3);
    expect((await scrape.emfReadings()).accessLog?.dropped).toBe(7);
  });

  it('has no access log figures without a sink, and no DroppedLogs before HAProxy is awaited', async () => {
    const ctx = context();
    expect(await createScrape(ctx, undefined).emfReadings()).toEqual({
      tls: undefined,
      accessLog: undefined,
    });
    sink = await startLogSink({ path: join(dir, 'sink', 'log.sock'), output: () => undefined });
    fake.droppedLogs = 3;
    // Starting: HAProxy is not running yet, nothing asks it.
    expect((await createScrape(ctx, sink).emfReadings()).accessLog?.dropped).toBe(0);
    expect(fake.showInfoCalls()).toBe(0);
  });
});

describe('the sidecar’s EMF loop', () => {
  it('writes the lines HAProxy dropped and the refusals the sink counted since the previous emission', async () => {
    const sidecar = await startSidecar(
      parseSidecarConfig(
        testSidecarConfig(dir, {
          watchIntervalMs: 20,
          emf: { namespace: 'Portcullis', dimensions: { Fleet: 'emf-test' }, intervalMs: 1000 },
        }),
      ),
      { store, write: (line) => lines.push(line), runtime: fake.port() },
    );
    const records = () =>
      lines
        .filter((l) => l.includes('"_aws"'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((doc) => !('Certificate' in doc));
    const tasks = () => records().filter((doc) => EMF_METRICS.taskReady in doc);
    try {
      await sidecar.whenReady(5000);
      fake.droppedLogs = 10;
      await expect.poll(() => tasks().length, { timeout: 5000 }).toBeGreaterThanOrEqual(1);
      // The first emission only sets the baseline: a restart does not replay history.
      expect(tasks()[0]).toMatchObject({ AccessLogLinesDropped: 0, GatewayRefusals: 0 });
      const seen = tasks().length;

      fake.droppedLogs = 16;
      const socket = await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(sidecar.layout.logSocket, () => resolve(s));
        s.once('error', reject);
      });
      socket.write(
        Buffer.concat([
          frame('{"frontend":"fe_tls","refusal":"no-route"}'),
          frame('{"frontend":"fe_tls","refusal":"no-route"}'),
          frame('2 events dropped'),
        ]),
      );
      await expect
        .poll(() => lines.filter((l) => l.includes('"refusal":"no-route"')).length, { timeout: 5000 })
        .toBe(2);
      socket.destroy();

      const sum = (name: string) =>
        tasks()
          .slice(seen)
          .reduce((n, doc) => n + Number(doc[name] ?? 0), 0);
      // 6 more DroppedLogs and the 2 lines the ring announced, over the emissions since.
      await expect
        .poll(
          () => ({
            dropped: sum(EMF_METRICS.accessLogLinesDropped),
            overflows: sum(EMF_METRICS.accessLogRingOverflows),
            refusals: sum(EMF_METRICS.gatewayRefusals),
          }),
          { timeout: 5000 },
        )
        .toEqual({ dropped: 8, overflows: 1, refusals: 2 });
      expect(records().filter((doc) => doc.Reason === 'no-route')).toEqual([
        expect.objectContaining({ Fleet: 'emf-test', GatewayRefusals: 2 }),
      ]);
    } finally {
      await sidecar.close();
    }
  }, 15_000);
});
