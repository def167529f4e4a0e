/** The `update-allowlist` state machine; `npm run asl` writes it to `statemachines/update-allowlist.asl.json`. */
import { lambdaTask, type StateMachine } from './asl.ts';

export const updateAllowlist: StateMachine = {
  Comment:
    'Portcullis update-allowlist: validate (manual change or secret-change event), stage as AWSPENDING, nudge + verify every task, promote, notify; any failure rolls back.',
  StartAt: 'ValidateAllowlist',
  States: {
    ValidateAllowlist: lambdaTask('ValidateAllowlist', {
      comment:
        'Normalise, de-duplicate, bound the count, refuse /0 unless the fleet allows it. Writes nothing.',
      payload: {
        'input.$': '$',
        'executionName.$': '$$.Execution.Name',
      },
      timeoutSeconds: 30,
      resultSelector: {
        'mode.$': '$.Payload.mode',
        'secretId.$': '$.Payload.secretId',
        'baseVersionId.$': '$.Payload.baseVersionId',
        'versionId.$': '$.Payload.versionId',
        'size.$': '$.Payload.size',
        'added.$': '$.Payload.added',
        'removed.$': '$.Payload.removed',
        'addedCount.$': '$.Payload.addedCount',
        'removedCount.$': '$.Payload.removedCount',
      },
      resultPath: '$.allowlist',
      catch: [
        {
          ErrorEquals: ['States.ALL'],
          Next: 'NothingStaged',
          ResultPath: '$.error',
        },
      ],
      next: 'ChooseMode',
    }),
    ChooseMode: {
      Type: 'Choice',
      Choices: [
        {
          Variable: '$.allowlist.mode',
          StringEquals: 'ignore',
          Next: 'Ignored',
        },
        {
          Variable: '$.allowlist.mode',
          StringEquals: 'stage',
          Next: 'StageAllowlist',
        },
      ],
      Default: 'ListTasks',
    },
    Ignored: {
      Type: 'Succeed',
      Comment: 'The event was about another secret.',
    },
    StageAllowlist: lambdaTask('StageAllowlist', {
      payload: {
        'executionName.$': '$$.Execution.Name',
        'allowlist.$': '$.allowlist',
        'request.$': '$$.Execution.Input',
      },
      timeoutSeconds: 30,
      resultSelector: {
        'mode.$': '$.Payload.mode',
        'secretId.$': '$.Payload.secretId',
        'baseVersionId.$': '$.Payload.baseVersionId',
        'versionId.$': '$.Payload.versionId',
        'size.$': '$.Payload.size',
        'added.$': '$.Payload.added',
        'removed.$': '$.Payload.removed',
        'addedCount.$': '$.Payload.addedCount',
        'removedCount.$': '$.Payload.removedCount',
      },
      resultPath: '$.allowlist',
      catch: [
        {
          ErrorEquals: ['States.ALL'],
          Next: 'RollbackAllowlist',
          ResultPath: '$.error',
        },
      ],
      next: 'ListTasks',
    }),
    ListTasks: lambdaTask('ListTasks', {
      payload: {},
      timeoutSeconds: 30,
      resultSelector: {
        'tasks.$': '$.Payload.tasks',
      },
      resultPath: '$.fleetTasks',
      catch: [
        {
          ErrorEquals: ['States.ALL'],
          Next: 'RollbackAllowlist',
          ResultPath: '$.error',
        },
      ],
      next: 'UpdateTasks',
    }),
    UpdateTasks: {
      Type: 'Map',
      Comment:
        "Nudge and verify every task; unreachable ones are reported (the sidecar's poll backstop and converge-task catch up).",
      ItemsPath: '$.fleetTasks.tasks',
      MaxConcurrency: 10,
      ItemSelector: {
        'task.$': '$$.Map.Item.Value',
        target: {
          kind: 'allowlist',
          'secretId.$': '$.allowlist.secretId',
          'versionId.$': '$.allowlist.versionId',
        },
      },
      ResultPath: '$.taskOutcomes',
      Next: 'PromoteSecret',
      Catch: [
        {
          ErrorEquals: ['States.ALL'],
          Next: 'RollbackAllowlist',
          ResultPath: '$.error',
        },
      ],
      ItemProcessor: {
        ProcessorConfig: {
          Mode: 'INLINE',
        },
        StartAt: 'NudgeTask',
        States: {
          NudgeTask: lambdaTask('NudgeTask', {
            comment: 'Ask the sidecar to apply the staged version now; it answers once applied.',
            payload: {
              'task.$': '$.task',
              'secretId.$': '$.target.secretId',
              'versionId.$': '$.target.versionId',
            },
            timeoutSeconds: 30,
            resultSelector: {
              'taskId.$': '$.Payload.taskId',
            },
            resultPath: null,
            catch: [
              {
                ErrorEquals: ['TaskUnreachable'],
                Next: 'MarkNeedsRoll',
                ResultPath: '$.error',
              },
            ],
            next: 'VerifyTask',
          }),
          VerifyTask: lambdaTask('VerifyTask', {
            comment:
              'Check what the task serves: a real handshake for server certificates, the status otherwise.',
            payload: {
              'task.$': '$.task',
              'target.$': '$.target',
            },
            timeoutSeconds: 30,
            resultSelector: {
              'taskId.$': '$.Payload.taskId',
              'needsRoll.$': '$.Payload.needsRoll',
            },
            catch: [
              {
                ErrorEquals: ['TaskUnreachable'],
                Next: 'MarkNeedsRoll',
                ResultPath: '$.error',
              },
            ],
            end: true,
          }),
          MarkNeedsRoll: {
            Type: 'Pass',
            Comment: 'Not reachable for a hot update: only a fresh deployment will fix this task.',
            Parameters: {
              'taskId.$': '$.task.taskId',
              needsRoll: true,
            },
            End: true,
          },
        },
      },
    },
    PromoteSecret: lambdaTask('PromoteSecret', {
      comment: 'A no-op for a converge run (AWSCURRENT already is the version).',
      payload: {
        'secretId.$': '$.allowlist.secretId',
        'versionId.$': '$.allowlist.versionId',
        'tasks.$': '$.taskOutcomes',
      },
      timeoutSeconds: 30,
      resultSelector: {
        'previousVersionId.$': '$.Payload.previousVersionId',
        'needsRoll.$': '$.Payload.needsRoll',
        'updated.$': '$.Payload.updated',
        'unreachable.$': '$.Payload.unreachable',
      },
      resultPath: '$.promoted',
      catch: [
        {
          ErrorEquals: ['States.ALL'],
          Next: 'RollbackAllowlist',
          ResultPath: '$.error',
        },
      ],
      next: 'NotifyAllowlistUpdated',
    }),
    NotifyAllowlistUpdated: lambdaTask('Notify', {
      payload: {
        detailType: 'AllowlistUpdated',
        detail: {
          'mode.$': '$.allowlist.mode',
          'versionId.$': '$.allowlist.versionId',
          'previousVersionId.$': '$.promoted.previousVersionId',
          'size.$': '$.allowlist.size',
          'added.$': '$.allowlist.added',
          'removed.$': '$.allowlist.removed',
          'addedCount.$': '$.allowlist.addedCount',
          'removedCount.$': '$.allowlist.removedCount',
          'tasks.$': '$.promoted',
        },
      },
      timeoutSeconds: 30,
      resultSelector: {
        'published.$': '$.Payload.published',
      },
      resultPath: null,
      next: 'AllowlistUpdated',
    }),
    AllowlistUpdated: {
      Type: 'Pass',
      Parameters: {
        'mode.$': '$.allowlist.mode',
        'secretId.$': '$.allowlist.secretId',
        'versionId.$': '$.allowlist.versionId',
        'previousVersionId.$': '$.promoted.previousVersionId',
        'size.$': '$.allowlist.size',
        'added.$': '$.allowlist.added',
        'removed.$': '$.allowlist.removed',
        'addedCount.$': '$.allowlist.addedCount',
        'removedCount.$': '$.allowlist.removedCount',
        'updatedTasks.$': '$.promoted.updated',
        'unreachableTasks.$': '$.promoted.unreachable',
      },
      End: true,
    },
    RollbackAllowlist: lambdaTask('RollbackAllowlist', {
      payload: {
        'executionName.$': '$$.Execution.Name',
        'allowlist.$': '$.allowlist',
        'error.$': '$.error',
      },
      timeoutSeconds: 60,
      resultSelector: {
        'restoredCurrentTo.$': '$.Payload.restoredCurrentTo',
        'droppedPending.$': '$.Payload.droppedPending',
        'nudged.$': '$.Payload.nudged',
        'notes.$': '$.Payload.notes',
      },
      resultPath: '$.rollback',
      catch: [
        {
          ErrorEquals: ['States.ALL'],
          Next: 'NotifyAllowlistFailed',
          ResultPath: '$.rollback',
        },
      ],
      next: 'NotifyAllowlistFailed',
    }),
    NothingStaged: {
      Type: 'Pass',
      Comment: 'Validation failed: nothing to roll back.',
      Result: {
        restoredCurrentTo: null,
        droppedPending: false,
        nudged: [],
        notes: ['nothing was staged'],
      },
      ResultPath: '$.rollback',
      Next: 'NotifyAllowlistFailed',
    },
    NotifyAllowlistFailed: lambdaTask('Notify', {
      payload: {
        detailType: 'AllowlistUpdateFailed',
        detail: {
          'error.$': '$.error.Error',
          'cause.$': '$.error.Cause',
          'rollback.$': '$.rollback',
        },
      },
      timeoutSeconds: 30,
      resultSelector: {
        'published.$': '$.Payload.published',
      },
      resultPath: null,
      catch: [
        {
          ErrorEquals: ['States.ALL'],
          Next: 'AllowlistUpdateFailed',
          ResultPath: '$.notifyError',
        },
      ],
      next: 'AllowlistUpdateFailed',
    }),
    AllowlistUpdateFailed: {
      Type: 'Fail',
      Comment: 'Fails with the original error name.',
      ErrorPath: '$.error.Error',
      CausePath: '$.error.Cause',
    },
  },
};
