/**
 * Static checks of the ASL files in statemachines/: every Lambda Task retries the errors the
 * Lambda service (not the function) raises, inside the limits Step Functions documents.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const DIR = join(import.meta.dirname, '..', '..', 'statemachines');

interface Retrier {
  ErrorEquals: string[];
  IntervalSeconds?: number;
  MaxAttempts?: number;
  BackoffRate?: number;
  MaxDelaySeconds?: number;
  JitterStrategy?: string;
}
interface State {
  Type: string;
  MaxConcurrency?: number;
  Parameters?: { StateMachineArn?: { Ref?: string } };
  Resource?: string;
  TimeoutSeconds?: number;
  Retry?: Retrier[];
  States?: Record<string, State>;
  ItemProcessor?: { States: Record<string, State> };
  Iterator?: { States: Record<string, State> };
  Branches?: { States: Record<string, State> }[];
}

/** Every state of a definition, nested Map and Parallel states included, as [machine/state, state]. */
function allStates(machine: string, states: Record<string, State>): [string, State][] {
  return Object.entries(states).flatMap(([name, state]) => [
    [`${machine}/${name}`, state] as [string, State],
    ...allStates(machine, state.ItemProcessor?.States ?? state.Iterator?.States ?? {}),
    ...(state.Branches ?? []).flatMap((b) => allStates(machine, b.States)),
  ]);
}

const lambdaTasks: [string, State][] = readdirSync(DIR)
  .filter((f) => f.endsWith('.asl.json'))
  .flatMap((file) => {
    const asl = JSON.parse(readFileSync(join(DIR, file), 'utf8')) as { States: Record<string, State> };
    return allStates(file.replace('.asl.json', ''), asl.States);
  })
  .filter(([, s]) => s.Type === 'Task' && s.Resource === 'arn:aws:states:::lambda:invoke');

/** The longest a retrier can wait in total before giving up (FULL jitter only shortens each wait). */
function worstCaseWaitSeconds(r: Retrier): number {
  let total = 0;
  for (let attempt = 0; attempt < (r.MaxAttempts ?? 3); attempt += 1) {
    const wait = (r.IntervalSeconds ?? 1) * (r.BackoffRate ?? 2) ** attempt;
    total += Math.min(wait, r.MaxDelaySeconds ?? Number.POSITIVE_INFINITY);
  }
  return total;
}

// Raised by the Lambda service around an invocation, never by our handlers: transient, so
// retried on every Task. ClientExecutionTimeoutException: the Invoke call itself timed out.
const LAMBDA_TRANSIENT = [
  'Lambda.ServiceException',
  'Lambda.AWSLambdaException',
  'Lambda.SdkClientException',
  'Lambda.TooManyRequestsException',
  'Lambda.ClientExecutionTimeoutException',
];
// A VPC-attached function idle for weeks goes Inactive (Lambda reclaims its Hyperplane ENIs);
// the next Invoke fails with ResourceNotReadyException while Lambda re-creates them, which takes
// longer than the transient retrier waits. ENINotReadyException is the same wait at creation.
const LAMBDA_VPC_NOT_READY = ['Lambda.ResourceNotReadyException', 'Lambda.ENINotReadyException'];

describe('state machine definitions', () => {
  it('has Lambda tasks in all four machines', () => {
    const machines = new Set(lambdaTasks.map(([name]) => name.split('/')[0]));
    expect([...machines].sort()).toEqual([
      'converge-task',
      'rotate-certificate',
      'rotate-certificates',
      'update-allowlist',
    ]);
    expect(lambdaTasks.length).toBeGreaterThanOrEqual(20);
  });

  it('retries the Lambda service errors, ClientExecutionTimeoutException included, on every Lambda task', () => {
    for (const [name, state] of lambdaTasks) {
      const retried = (state.Retry ?? []).flatMap((r) => r.ErrorEquals);
      expect(retried, name).toEqual(expect.arrayContaining([...LAMBDA_TRANSIENT, ...LAMBDA_VPC_NOT_READY]));
      // The first retrier whose ErrorEquals names an error is the one that applies: none may be
      // listed twice, and States.ALL would swallow the typed errors the Catch clauses route.
      expect(new Set(retried).size, name).toBe(retried.length);
      expect(retried, name).not.toContain('States.ALL');
    }
  });

  it('waits minutes, not seconds, for an inactive VPC function to come back', () => {
    for (const [name, state] of lambdaTasks) {
      const retrier = state.Retry!.find((r) => r.ErrorEquals.includes('Lambda.ResourceNotReadyException'))!;
      expect(retrier.ErrorEquals.sort(), name).toEqual([...LAMBDA_VPC_NOT_READY].sort());
      expect(worstCaseWaitSeconds(retrier), name).toBeGreaterThanOrEqual(120);
      // Still well inside the shortest machine budget a caller waits on (converge-task has no
      // machine timeout; its Task states run 60 s each): the wait is bounded.
      expect(worstCaseWaitSeconds(retrier), name).toBeLessThanOrEqual(300);
    }
  });

  it('keeps every retrier and Task timeout inside the limits Step Functions documents', () => {
    for (const [name, state] of lambdaTasks) {
      // TimeoutSeconds: a positive integer; the Lambda function's own limit is at most 900 s.
      expect(Number.isInteger(state.TimeoutSeconds), name).toBe(true);
      expect(state.TimeoutSeconds!, name).toBeGreaterThan(0);
      expect(state.TimeoutSeconds!, name).toBeLessThanOrEqual(900);
      for (const r of state.Retry ?? []) {
        // IntervalSeconds and MaxAttempts: positive integers ≤ 99999999; BackoffRate ≥ 1.0;
        // MaxDelaySeconds: a positive integer < 31622401; JitterStrategy FULL or NONE.
        expect(Number.isInteger(r.IntervalSeconds) && r.IntervalSeconds! >= 1, name).toBe(true);
        expect(Number.isInteger(r.MaxAttempts) && r.MaxAttempts! >= 1, name).toBe(true);
        expect(r.MaxAttempts!, name).toBeLessThanOrEqual(99_999_999);
        expect(r.BackoffRate!, name).toBeGreaterThanOrEqual(1);
        if (r.MaxDelaySeconds !== undefined) {
          expect(Number.isInteger(r.MaxDelaySeconds) && r.MaxDelaySeconds > 0, name).toBe(true);
          expect(r.MaxDelaySeconds, name).toBeLessThan(31_622_401);
        }
        expect(r.JitterStrategy, name).toBe('FULL');
      }
    }
  });

  it('bounds every Map, and waits on each child execution a little longer than the child may run', () => {
    const machines = Object.fromEntries(
      readdirSync(DIR)
        .filter((f) => f.endsWith('.asl.json'))
        .map((f) => [
          f.replace('.asl.json', ''),
          JSON.parse(readFileSync(join(DIR, f), 'utf8')) as {
            TimeoutSeconds?: number;
            States: Record<string, State>;
          },
        ]),
    );
    const all = Object.entries(machines).flatMap(([name, asl]) => allStates(name, asl.States));
    for (const [name, state] of all.filter(([, s]) => s.Type === 'Map')) {
      // Unbounded (0 or absent) would start every certificate or batch at once.
      expect(state.MaxConcurrency, name).toBeGreaterThan(0);
      expect(state.MaxConcurrency!, name).toBeLessThanOrEqual(40);
    }
    const sync = all.filter(([, s]) => s.Resource === 'arn:aws:states:::states:startExecution.sync:2');
    expect(sync.map(([name]) => name)).toEqual(['rotate-certificates/RotateCertificate']);
    for (const [name, state] of sync) {
      const child =
        machines[
          state.Parameters!.StateMachineArn!.Ref === 'RotateCertificateStateMachine'
            ? 'rotate-certificate'
            : ''
        ]!;
      expect(child.TimeoutSeconds, name).toBeDefined();
      expect(state.TimeoutSeconds!, name).toBeGreaterThan(child.TimeoutSeconds!);
      expect(state.TimeoutSeconds! - child.TimeoutSeconds!, name).toBeLessThanOrEqual(600);
    }
  });
});
