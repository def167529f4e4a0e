/**
 * The fleet's event history on AWS: the log group EventBridge writes the fleet's events and its
 * executions' status changes to (`/aws/events/<stack>`, serverless/observability.yml), read with
 * CloudWatch Logs `FilterLogEvents` (SDK v3), newest pages last, bounded.
 */
import { CloudWatchLogsClient, FilterLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs';
import type { LoggedEvent } from '../local/log-notifier.ts';
import { awsClientConfig } from './client-config.ts';
import { mapAwsError } from './errors.ts';

export interface EventHistoryOptions {
  client?: CloudWatchLogsClient;
  /** Stop after this many events (default 1000). */
  limit?: number;
  /** Stop after this many `FilterLogEvents` pages (default 20; one page is at most 10 000 events or 1 MB). */
  maxPages?: number;
}

/** One EventBridge event as the log group stores it (the event JSON, one per log event). */
interface StoredEvent {
  time?: unknown;
  source?: unknown;
  'detail-type'?: unknown;
  detail?: unknown;
}

/** Reads an EventBridge event from a log message; `undefined` for anything else. Pure. */
export function eventFromLogMessage(message: string, timestamp: number | undefined): LoggedEvent | undefined {
  let event: StoredEvent;
  try {
    event = JSON.parse(message) as StoredEvent;
  } catch {
    return undefined;
  }
  if (typeof event !== 'object' || event === null) return undefined;
  if (typeof event.source !== 'string' || typeof event['detail-type'] !== 'string') return undefined;
  const time = typeof event.time === 'string' ? event.time : new Date(timestamp ?? Date.now()).toISOString();
  const detail =
    typeof event.detail === 'object' && event.detail !== null
      ? (event.detail as Record<string, unknown>)
      : {};
  return { time, source: event.source, detailType: event['detail-type'], detail };
}

/**
 * The events of `logGroupName` since `since` (oldest first), at most `limit`.
 * Errors: `NotFoundError` (no such log group: `eventLog` off, or another stack), `AccessDenied`,
 * `Throttled`, `ServiceUnavailable`, `AwsEndpointUnreachable`.
 */
export async function readEventHistory(
  logGroupName: string,
  since: Date,
  options: EventHistoryOptions = {},
): Promise<LoggedEvent[]> {
  const client = options.client ?? new CloudWatchLogsClient(awsClientConfig());
  const limit = options.limit ?? 1000;
  const maxPages = options.maxPages ?? 20;
  const events: LoggedEvent[] = [];
  try {
    let nextToken: string | undefined;
    for (let page = 0; page < maxPages; page++) {
      const answer = await client.send(
        new FilterLogEventsCommand({
          logGroupName,
          startTime: since.getTime(),
          ...(nextToken === undefined ? {} : { nextToken }),
        }),
      );
      for (const logged of answer.events ?? []) {
        const event = eventFromLogMessage(logged.message ?? '', logged.timestamp);
        if (event !== undefined) events.push(event);
      }
      nextToken = answer.nextToken;
      if (nextToken === undefined || events.length >= limit) break;
    }
  } catch (error) {
    throw mapAwsError(error, {
      service: 'CloudWatchLogs',
      operation: 'FilterLogEvents',
      resource: logGroupName,
    });
  } finally {
    if (options.client === undefined) client.destroy();
  }
  events.sort((a, b) => a.time.localeCompare(b.time));
  return events.slice(-limit);
}
