import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type LoggedEvent, LogNotifier } from '../../lib/local/log-notifier.ts';

// The local stand-in for EventBridge: same event shape, written as JSON lines.
describe('LogNotifier', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'portcullis-log-notifier-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('appends one JSON line per event to the file and hands each to the sink', async () => {
    const file = join(dir, 'state', 'events.jsonl');
    const seen: LoggedEvent[] = [];
    let clock = Date.parse('2026-11-23T16:00:00Z');
    const notifier = new LogNotifier({
      file,
      sink: (event) => {
        seen.push(event);
      },
      now: () => {
        clock += 1000;
        return new Date(clock);
      },
    });

    await notifier.publish('CertificateRotated', { fleet: 'demo', certificate: 'api' });
    await notifier.publish('RotationFailed', { fleet: 'demo', error: 'ServedVersionMismatch' });

    const lines = (await readFile(file, 'utf8')).trimEnd().split('\n');
    expect(lines.map((line) => JSON.parse(line))).toEqual([
      {
        time: '2026-11-23T16:00:01.000Z',
        source: 'portcullis',
        detailType: 'CertificateRotated',
        detail: { fleet: 'demo', certificate: 'api' },
      },
      {
        time: '2026-11-23T16:00:02.000Z',
        source: 'portcullis',
        detailType: 'RotationFailed',
        detail: { fleet: 'demo', error: 'ServedVersionMismatch' },
      },
    ]);
    expect(seen.map((e) => e.detailType)).toEqual(['CertificateRotated', 'RotationFailed']);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it('keeps every line whole when events are published concurrently', async () => {
    const file = join(dir, 'events.jsonl');
    const notifier = new LogNotifier({ file });

    await Promise.all(Array.from({ length: 50 }, (_, i) => notifier.publish('TaskNudged', { task: i })));

    const tasks = (await readFile(file, 'utf8'))
      .trimEnd()
      .split('\n')
      .map((line) => (JSON.parse(line) as LoggedEvent).detail.task as number);
    expect(tasks.sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('refuses to be built without a file or a sink', () => {
    expect(() => new LogNotifier({})).toThrow(/file or a sink/);
  });
});
