/** The `update-allowlist` state machine; `npm run asl` writes it to `statemachines/update-allowlist.asl.json`. */
import {
  catchAll,
  fromPayload,
  lambdaTask,
  PROMOTED_RESULT,
  type StateMachine,
  taskUpdateStates,
} from './asl.ts';

/** UpdateTasks invocations per change: each takes the tasks whose id hashes to its number. */
export const ALLOWLIST_TASK_BATCHES = 10;

/** The allowlist change as Validate and Stage answer it, kept at `$.allowlist`. */
const ALLOWLIST_STATE = fromPayload(
  'mode',
  'secretId',
  'baseVersionId',
  'versionId',
  'size',
  'added',
  'removed',
  'addedCount',
  'removedCount',
);

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
      resultSelector: ALLOWLIST_STATE,
      resultPath: '$.allowlist',
      catch: catchAll('NothingStaged'),
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
      Default: 'TaskBatches',
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
      resultSelector: ALLOWLIST_STATE,
      resultPath: '$.allowlist',
      catch: catchAll('RollbackAllowlist'),
      next: 'TaskBatches',
    }),
    // A fixed number of batches: the allowlist's executions carry no fleet settings.
    ...taskUpdateStates({
      batches: ALLOWLIST_TASK_BATCHES,
      target: {
        kind: 'allowlist',
        'secretId.$': '$.allowlist.secretId',
        'versionId.$': '$.allowlist.versionId',
      },
      next: 'PromoteSecret',
      onError: 'RollbackAllowlist',
    }),
    PromoteSecret: lambdaTask('PromoteSecret', {
      comment: 'A no-op for a converge run (AWSCURRENT already is the version).',
      payload: {
        'secretId.$': '$.allowlist.secretId',
        'versionId.$': '$.allowlist.versionId',
        'batches.$': '$.taskOutcomes',
      },
      timeoutSeconds: 30,
      resultSelector: PROMOTED_RESULT,
      resultPath: '$.promoted',
      catch: catchAll('RollbackAllowlist'),
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
      resultSelector: fromPayload('published'),
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
        'unreachableTaskCount.$': '$.promoted.unreachableCount',
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
      resultSelector: fromPayload('restoredCurrentTo', 'droppedPending', 'nudged', 'notes'),
      resultPath: '$.rollback',
      catch: catchAll('NotifyAllowlistFailed', '$.rollback'),
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
      resultSelector: fromPayload('published'),
      resultPath: null,
      catch: catchAll('AllowlistUpdateFailed', '$.notifyError'),
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
