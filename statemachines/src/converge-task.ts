/** The `converge-task` state machine; `npm run asl` writes it to `statemachines/converge-task.asl.json`. */
import { catchAll, fromPayload, lambdaTask, type StateMachine } from './asl.ts';

export const convergeTask: StateMachine = {
  Comment:
    'Portcullis converge-task: bring a task that just started to the current version of every fleet secret.',
  StartAt: 'ConvergeTask',
  States: {
    ConvergeTask: lambdaTask('ConvergeTask', {
      comment:
        "Compare the task's status with AWSCURRENT of each secret, nudge the stale ones, check again. A sidecar still starting is TaskUnreachable: retried with backoff.",
      payloadPath: '$',
      timeoutSeconds: 60,
      resultSelector: fromPayload('taskId', 'outcome', 'nudged'),
      resultPath: '$.converge',
      retry: [
        {
          ErrorEquals: ['TaskUnreachable'],
          IntervalSeconds: 5,
          MaxAttempts: 6,
          BackoffRate: 2,
          MaxDelaySeconds: 60,
          JitterStrategy: 'FULL',
        },
      ],
      catch: catchAll('NotifyConvergeFailed'),
      next: 'Converged',
    }),
    Converged: {
      Type: 'Pass',
      Parameters: {
        'taskId.$': '$.converge.taskId',
        'outcome.$': '$.converge.outcome',
        'nudged.$': '$.converge.nudged',
      },
      End: true,
    },
    NotifyConvergeFailed: lambdaTask('Notify', {
      payload: {
        detailType: 'TaskConvergeFailed',
        detail: {
          'error.$': '$.error.Error',
          'cause.$': '$.error.Cause',
          'execution.$': '$$.Execution.Id',
        },
      },
      timeoutSeconds: 30,
      resultSelector: fromPayload('published'),
      resultPath: null,
      catch: catchAll('ConvergeFailed', '$.notifyError'),
      next: 'ConvergeFailed',
    }),
    ConvergeFailed: {
      Type: 'Fail',
      Comment: 'Fails with the original error name.',
      ErrorPath: '$.error.Error',
      CausePath: '$.error.Cause',
    },
  },
};
