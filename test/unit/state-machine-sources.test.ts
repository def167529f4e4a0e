/**
 * The state machines are written in `statemachines/src/` and generated into the committed
 * `statemachines/<name>.asl.json` that the stack and the local runner read: regenerating must
 * change nothing, and every Lambda Task must end with the shared retriers.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LAMBDA_RETRIERS, lambdaTask, type State } from '../../statemachines/src/asl.ts';
import { aslText, STATE_MACHINES } from '../../statemachines/src/index.ts';

const dir = join(import.meta.dirname, '..', '..', 'statemachines');

function allStates(states: Record<string, State>): [string, State][] {
  return Object.entries(states).flatMap(([name, state]) => {
    const inner = (state.ItemProcessor ?? state.Iterator) as { States: Record<string, State> } | undefined;
    return [[name, state] as [string, State], ...(inner ? allStates(inner.States) : [])];
  });
}

describe('state machine sources', () => {
  it('describe every committed definition, and nothing else', async () => {
    const files = (await readdir(dir))
      .filter((f) => f.endsWith('.asl.json'))
      .map((f) => f.replace('.asl.json', ''));
    expect(Object.keys(STATE_MACHINES).sort()).toEqual(files.sort());
  });

  it.each(Object.entries(STATE_MACHINES))(
    'generate %s.asl.json as committed (npm run asl)',
    async (name, machine) => {
      expect(await readFile(join(dir, `${name}.asl.json`), 'utf8')).toBe(aslText(machine));
    },
  );

  it('give every Lambda Task the shared retriers, after its own', () => {
    for (const [machine, definition] of Object.entries(STATE_MACHINES)) {
      for (const [name, state] of allStates(definition.States)) {
        if (state.Resource !== 'arn:aws:states:::lambda:invoke') continue;
        const retry = state.Retry as unknown[];
        expect(retry.slice(-LAMBDA_RETRIERS.length), `${machine}.${name}`).toEqual(LAMBDA_RETRIERS);
      }
    }
  });

  it('refuses a Lambda Task with both or neither payload forms, or both or neither of next and end', () => {
    expect(() => lambdaTask('F', { timeoutSeconds: 1, next: 'X' })).toThrow(/payload/);
    expect(() => lambdaTask('F', { payload: {}, payloadPath: '$', timeoutSeconds: 1, next: 'X' })).toThrow(
      /payload/,
    );
    expect(() => lambdaTask('F', { payload: {}, timeoutSeconds: 1 })).toThrow(/next and end/);
    expect(lambdaTask('F', { payloadPath: '$', timeoutSeconds: 5, end: true })).toMatchObject({
      Type: 'Task',
      Parameters: { FunctionName: { 'Fn::GetAtt': ['FLambdaFunction', 'Arn'] }, 'Payload.$': '$' },
      TimeoutSeconds: 5,
      Retry: LAMBDA_RETRIERS,
      End: true,
    });
  });
});
