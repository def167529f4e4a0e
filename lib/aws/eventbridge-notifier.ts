/**
 * `Notifier` over Amazon EventBridge (SDK v3): one `PutEvents` entry per control-plane event.
 */
import { EventBridgeClient, PutEventsCommand, type PutEventsResultEntry } from '@aws-sdk/client-eventbridge';
import { type PortcullisError, Throttled, ValidationError } from '../errors.ts';
import type { Notifier } from '../ports.ts';
import { awsClientConfig } from './client-config.ts';
import { mapAwsError } from './errors.ts';

let sharedClient: EventBridgeClient | undefined;

/** The module-scope client used when none is injected (created on first use, reused across invocations). */
export function defaultEventBridgeClient(): EventBridgeClient {
  // Bounded network waits: a missing route fails fast and typed (client-config.ts).
  sharedClient ??= new EventBridgeClient(awsClientConfig());
  return sharedClient;
}

export interface EventBridgeNotifierOptions {
  /** Injected client (tests, other regions); defaults to {@link defaultEventBridgeClient}. */
  client?: EventBridgeClient;
  /** Bus name or ARN. Default `default`. */
  eventBusName?: string;
  /** The events' `source`. Default `portcullis`. */
  source?: string;
}

/** EventBridge's limit on a whole `PutEvents` entry; checked before sending so the error is clear. */
const MAX_ENTRY_BYTES = 256 * 1024;

/** Entry error codes EventBridge documents as retryable. */
const RETRYABLE_ENTRY_CODES = new Set(['InternalFailure', 'ThrottlingException']);

/**
 * The typed error for a `PutEvents` entry that EventBridge refused (a partial failure: the call
 * itself succeeded). Retryable codes become `Throttled`; the others go through the shared AWS
 * mapping (`AccessDeniedException` → `AccessDenied`, unknown → `AwsServiceError`), except
 * `InvalidArgument`/`MalformedDetail`, which mean our event can never be accepted.
 */
export function entryError(
  entry: PutEventsResultEntry,
  detailType: string,
  eventBusName: string,
): PortcullisError {
  const code = entry.ErrorCode ?? 'UnknownError';
  const message = `EventBridge PutEvents on '${eventBusName}' refused the ${detailType} event: ${code}${
    entry.ErrorMessage ? `: ${entry.ErrorMessage}` : ''
  }`;
  if (RETRYABLE_ENTRY_CODES.has(code)) return new Throttled(message);
  if (code === 'InvalidArgument' || code === 'MalformedDetail') return new ValidationError(message);
  // Shape it like an SDK exception so the shared table decides, as for thrown errors.
  return mapAwsError(
    { name: code, message: entry.ErrorMessage ?? '' },
    { service: 'EventBridge', operation: 'PutEvents', resource: eventBusName },
  );
}

/**
 * EventBridge adapter for the `Notifier` port.
 *
 * Publishes `{ Source, DetailType, Detail (JSON), EventBusName }`. `PutEvents` can succeed as a
 * call while refusing the entry (`FailedEntryCount > 0`); that is an error here too, typed by
 * the entry's `ErrorCode` (see {@link entryError}). IAM: `events:PutEvents` on the bus.
 *
 * @example
 * const notifier = new EventBridgeNotifier({ eventBusName: 'default' });
 * await notifier.publish('CertificateRotated', { fleet: 'prod', certificate: 'api', serial });
 */
export class EventBridgeNotifier implements Notifier {
  readonly #client: EventBridgeClient;
  readonly #eventBusName: string;
  readonly #source: string;

  constructor(options: EventBridgeNotifierOptions = {}) {
    this.#client = options.client ?? defaultEventBridgeClient();
    this.#eventBusName = options.eventBusName || 'default';
    this.#source = options.source || 'portcullis';
  }

  async publish(detailType: string, detail: Record<string, unknown>): Promise<void> {
    if (!detailType) throw new ValidationError('detailType is required', { path: 'detailType' });
    const json = JSON.stringify(detail);
    if (Buffer.byteLength(json, 'utf8') + Buffer.byteLength(detailType, 'utf8') > MAX_ENTRY_BYTES) {
      throw new ValidationError(`the ${detailType} event is larger than EventBridge's 256 KiB entry limit`);
    }
    let result: { FailedEntryCount?: number | undefined; Entries?: PutEventsResultEntry[] | undefined };
    try {
      result = await this.#client.send(
        new PutEventsCommand({
          Entries: [
            { Source: this.#source, DetailType: detailType, Detail: json, EventBusName: this.#eventBusName },
          ],
        }),
      );
    } catch (error) {
      throw mapAwsError(error, {
        service: 'EventBridge',
        operation: 'PutEvents',
        resource: this.#eventBusName,
      });
    }
    if ((result.FailedEntryCount ?? 0) > 0) {
      const failed = result.Entries?.find((entry) => entry.ErrorCode) ?? {};
      throw entryError(failed, detailType, this.#eventBusName);
    }
  }
}
