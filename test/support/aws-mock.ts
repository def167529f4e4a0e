/**
 * One typed view over `aws-sdk-client-mock` for the adapter tests. The library's own generics
 * are tied to the `@smithy/types` it resolves, which is older than the one some clients here
 * carry (ACM PCA's commands are rejected outright), although the runtime objects are the same.
 * This view keys on what every SDK v3 command has — its constructor input and the output its
 * handler resolves to — so stubs and recorded calls stay type-checked for every client.
 */
import { mockClient } from 'aws-sdk-client-mock';

/** Any SDK v3 command class: constructed from its input, resolving to its output. */
export type CommandClass<I extends object, O> = new (
  input: I,
) => {
  readonly input: I;
  resolveMiddleware(...args: never[]): (args: never) => Promise<{ output: O }>;
};

/**
 * What a stubbed command can be told to do. Outputs are partial, as the library takes them
 * (`$metadata` and unread fields may be left out).
 */
export interface CommandStub<O> {
  resolves(output: Partial<O>): CommandStub<O>;
  resolvesOnce(output: Partial<O>): CommandStub<O>;
  rejects(error: unknown): CommandStub<O>;
  /** The fake's parameter is the command input; tests name only the fields they read. */
  callsFake(fake: (input: never) => Partial<O>): CommandStub<O>;
}

/** A mocked SDK client: stub commands (optionally only for a matching input) and read the calls. */
export interface AwsClientMock {
  on<I extends object, O>(command: CommandClass<I, O>, input?: Partial<I>): CommandStub<O>;
  commandCalls<I extends object, O>(command: CommandClass<I, O>): { args: [{ input: I }] }[];
  calls(): unknown[];
  reset(): void;
}

/**
 * Mocks every instance of an SDK client class, or one instance, for the rest of the test file.
 *
 * @example
 * const ecs = mockAwsClient(ECSClient);
 * beforeEach(() => ecs.reset());
 * ecs.on(ListTasksCommand).resolves({ taskArns: [] });
 */
export function mockAwsClient(client: object): AwsClientMock {
  return mockClient(client as never) as unknown as AwsClientMock;
}

/**
 * A modelled service exception as the SDK throws it for a 400 answer (`ResourceNotFoundException`
 * and the like), for `rejects()`.
 *
 * @example
 * ecs.on(UpdateServiceCommand).rejects(sdkError(ServiceNotActiveException));
 */
export function sdkError<T>(
  ErrorClass: new (options: { message: string; $metadata: object }) => T,
  message = 'refused',
): T {
  return new ErrorClass({ message, $metadata: { httpStatusCode: 400, requestId: 'req-1' } });
}
