/**
 * The CloudFormation custom resource protocol, for a Lambda-backed resource: CloudFormation
 * invokes the function with a request (Create, Update, Delete) and waits for a JSON document
 * PUT to the request's pre-signed S3 `ResponseURL`. Whatever happens, the function must answer:
 * a function that throws or times out without answering leaves the stack waiting until the
 * resource's `ServiceTimeout` (one hour when unset).
 *
 * Limits (CloudFormation's documentation of custom resource responses): the whole response is
 * at most 4096 bytes, so `Reason` is shortened to fit; `Data` values are strings read with
 * `Fn::GetAtt`.
 */
import { ValidationError } from '../errors.ts';

/** The largest response CloudFormation accepts (bytes). */
export const CUSTOM_RESOURCE_RESPONSE_MAX_BYTES = 4096;

export type CustomResourceRequestType = 'Create' | 'Update' | 'Delete';

/** The parts of a request a handler reads. */
export interface CustomResourceRequest {
  RequestType: CustomResourceRequestType;
  ResponseURL: string;
  StackId: string;
  RequestId: string;
  LogicalResourceId: string;
  /** Absent on Create. */
  PhysicalResourceId?: string;
  ResourceProperties: Record<string, unknown>;
}

export interface CustomResourceResult {
  status: 'SUCCESS' | 'FAILED';
  physicalResourceId: string;
  reason?: string;
  data?: Record<string, string>;
}

/** Reads the fields of a custom resource request. @throws ValidationError for anything else */
export function parseCustomResourceRequest(event: unknown): CustomResourceRequest {
  const e = event as Partial<Record<keyof CustomResourceRequest, unknown>> | null;
  const text = (key: keyof CustomResourceRequest) => {
    const value = e?.[key];
    if (typeof value !== 'string' || value === '')
      throw new ValidationError(`not a CloudFormation custom resource request: no ${key}`, { path: key });
    return value;
  };
  const type = text('RequestType');
  if (type !== 'Create' && type !== 'Update' && type !== 'Delete')
    throw new ValidationError(`unknown custom resource RequestType '${type}'`, { path: 'RequestType' });
  const properties = e?.ResourceProperties;
  return {
    RequestType: type,
    ResponseURL: text('ResponseURL'),
    StackId: text('StackId'),
    RequestId: text('RequestId'),
    LogicalResourceId: text('LogicalResourceId'),
    ...(typeof e?.PhysicalResourceId === 'string' ? { PhysicalResourceId: e.PhysicalResourceId } : {}),
    ResourceProperties:
      typeof properties === 'object' && properties !== null ? (properties as Record<string, unknown>) : {},
  };
}

/**
 * The response document, `Reason` shortened so that the whole stays within
 * {@link CUSTOM_RESOURCE_RESPONSE_MAX_BYTES}. Pure.
 */
export function customResourceResponse(request: CustomResourceRequest, result: CustomResourceResult): string {
  const document = (reason: string | undefined) =>
    JSON.stringify({
      Status: result.status,
      ...(reason === undefined ? {} : { Reason: reason }),
      PhysicalResourceId: result.physicalResourceId,
      StackId: request.StackId,
      RequestId: request.RequestId,
      LogicalResourceId: request.LogicalResourceId,
      NoEcho: false,
      Data: result.data ?? {},
    });
  let reason = result.reason;
  let body = document(reason);
  while (
    reason !== undefined &&
    reason !== '…' &&
    Buffer.byteLength(body) > CUSTOM_RESOURCE_RESPONSE_MAX_BYTES
  ) {
    const over = Buffer.byteLength(body) - CUSTOM_RESOURCE_RESPONSE_MAX_BYTES;
    reason = `${cutToBytes(reason.endsWith('…') ? reason.slice(0, -1) : reason, Buffer.byteLength(reason) - over - 3)}…`;
    body = document(reason);
  }
  if (Buffer.byteLength(body) > CUSTOM_RESOURCE_RESPONSE_MAX_BYTES)
    throw new ValidationError(`custom resource response over ${CUSTOM_RESOURCE_RESPONSE_MAX_BYTES} bytes`);
  return body;
}

/** The longest prefix of `text` of at most `bytes` UTF-8 bytes, never splitting a character. */
function cutToBytes(text: string, bytes: number): string {
  let used = 0;
  let end = 0;
  for (const char of text) {
    const size = Buffer.byteLength(char);
    if (used + size > bytes) break;
    used += size;
    end += char.length;
  }
  return text.slice(0, end);
}

export interface SendOptions {
  fetch?: typeof fetch;
  /** Attempts of the PUT (network errors and 5xx are retried). Default 3. */
  attempts?: number;
  /** Time per attempt (ms). Default 5000. */
  timeoutMs?: number;
}

/**
 * PUTs the response to the request's `ResponseURL`. The pre-signed URL was signed without a
 * content type, so none is sent. @throws Error when every attempt failed (the Lambda runtime
 * then retries the asynchronous invocation).
 */
export async function sendCustomResourceResponse(
  request: CustomResourceRequest,
  result: CustomResourceResult,
  options: SendOptions = {},
): Promise<void> {
  const body = customResourceResponse(request, result);
  const send = options.fetch ?? fetch;
  const attempts = options.attempts ?? 3;
  let last: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const response = await send(request.ResponseURL, {
        method: 'PUT',
        body,
        headers: { 'content-type': '' },
        signal: AbortSignal.timeout(options.timeoutMs ?? 5000),
      });
      if (response.ok) return;
      last = new Error(`ResponseURL answered HTTP ${response.status}`);
      // A 4xx (expired or malformed URL) does not get better on a retry.
      if (response.status < 500) break;
    } catch (error) {
      last = error;
    }
  }
  throw new Error(`could not deliver the custom resource response: ${(last as Error).message}`, {
    cause: last,
  });
}
