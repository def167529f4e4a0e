/**
 * `Notifier` for the embedded mode: control-plane events as JSON lines, appended to a file or
 * handed to a callback (the demo prints them, tests collect them).
 */
import { appendFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ValidationError } from '../errors.ts';
import type { Notifier } from '../ports.ts';

/** One published event, as written (one JSON object per line). */
export interface LoggedEvent {
  /** ISO-8601 time of publication. */
  time: string;
  source: string;
  detailType: string;
  detail: Record<string, unknown>;
}

export interface LogNotifierOptions {
  /** Append each event as one JSON line to this file (created with its directory). */
  file?: string;
  /** Receive each event (after it was written to `file`, when both are given). */
  sink?: (event: LoggedEvent, line: string) => void | Promise<void>;
  /** The events' `source`, as on EventBridge. Default `portcullis`. */
  source?: string;
  /** Clock, for tests. */
  now?: () => Date;
}

/**
 * Local adapter for the `Notifier` port, with the same event shape the EventBridge adapter
 * sends (`source`, `detailType`, `detail`).
 *
 * @example
 * const events: LoggedEvent[] = [];
 * const notifier = new LogNotifier({ file: join(stateDir, 'events.jsonl'), sink: (e) => events.push(e) });
 */
export class LogNotifier implements Notifier {
  readonly #file: string | undefined;
  readonly #sink: LogNotifierOptions['sink'];
  readonly #source: string;
  readonly #now: () => Date;
  #directoryReady = false;

  constructor(options: LogNotifierOptions) {
    if (!options.file && !options.sink) throw new ValidationError('LogNotifier needs a file or a sink');
    this.#file = options.file;
    this.#sink = options.sink;
    this.#source = options.source || 'portcullis';
    this.#now = options.now ?? (() => new Date());
  }

  async publish(detailType: string, detail: Record<string, unknown>): Promise<void> {
    if (!detailType) throw new ValidationError('detailType is required', { path: 'detailType' });
    const event: LoggedEvent = { time: this.#now().toISOString(), source: this.#source, detailType, detail };
    const line = JSON.stringify(event);
    if (this.#file) {
      if (!this.#directoryReady) {
        await mkdir(dirname(this.#file), { recursive: true });
        this.#directoryReady = true;
      }
      // One appendFile per line: O_APPEND keeps concurrent publishers' lines whole.
      await appendFile(this.#file, `${line}\n`, { encoding: 'utf8', mode: 0o600 });
    }
    await this.#sink?.(event, line);
  }
}
