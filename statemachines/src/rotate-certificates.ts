/** The `rotate-certificates` state machine; `npm run asl` writes it to `statemachines/rotate-certificates.asl.json`. */
import { catchAll, fromPayload, lambdaTask, ROTATION_ROLLBACK_RESULT, type StateMachine } from './asl.ts';

export const rotateCertificates: StateMachine = {
  Comment:
    "Portcullis rotate-certificates: plan, then one rotate-certificate child execution per due certificate (startExecution.sync:2), several at a time so their grace periods overlap; a child that stopped without its own rollback (timed out, aborted) is rolled back here; the run fails with the first failed certificate's error once every child has ended.",
  StartAt: 'PlanRotation',
  TimeoutSeconds: 86400,
  States: {
    PlanRotation: lambdaTask('PlanRotation', {
      comment:
        'Which certificates are due (2/3 of lifetime or renewBeforeDays), or all selected with force. Writes nothing.',
      payload: {
        'input.$': '$',
        'executionName.$': '$$.Execution.Name',
      },
      timeoutSeconds: 30,
      resultSelector: fromPayload('fleet', 'executionName', 'mode', 'dryRun', 'settings', 'rotate', 'skip'),
      resultPath: '$.plan',
      next: 'IsDryRun',
    }),
    IsDryRun: {
      Type: 'Choice',
      Choices: [
        {
          Variable: '$.plan.dryRun',
          BooleanEquals: true,
          Next: 'DryRunComplete',
        },
      ],
      Default: 'AnyDue',
    },
    DryRunComplete: {
      Type: 'Pass',
      Parameters: {
        'fleet.$': '$.plan.fleet',
        dryRun: true,
        'rotate.$': '$.plan.rotate',
        'skip.$': '$.plan.skip',
      },
      End: true,
    },
    AnyDue: {
      Type: 'Choice',
      Choices: [
        {
          Variable: '$.plan.rotate[0]',
          IsPresent: true,
          Next: 'RotateCertificates',
        },
      ],
      Default: 'NothingDue',
    },
    NothingDue: {
      Type: 'Pass',
      Parameters: {
        'fleet.$': '$.plan.fleet',
        dryRun: false,
        rotated: [],
        'skipped.$': '$.plan.skip',
      },
      End: true,
    },
    RotateCertificates: {
      Type: 'Map',
      Comment:
        'One child execution per certificate, at most 10 at a time: their grace periods overlap instead of adding up. Every iteration ends with a result (failed or not), so one failing certificate never stops another mid-rotation.',
      ItemsPath: '$.plan.rotate',
      MaxConcurrency: 10,
      ItemSelector: {
        'fleet.$': '$.plan.fleet',
        'executionName.$': '$.plan.executionName',
        'certificate.$': '$$.Map.Item.Value.name',
        'reason.$': '$$.Map.Item.Value.reason',
        'settings.$': '$.plan.settings',
      },
      ResultPath: '$.rotations',
      Next: 'AnyFailed',
      ItemProcessor: {
        ProcessorConfig: {
          Mode: 'INLINE',
        },
        StartAt: 'RotateCertificate',
        States: {
          RotateCertificate: {
            Comment:
              'One child execution per certificate; its name derives from this execution and the certificate, so a retried start finds the same child.',
            Type: 'Task',
            Resource: 'arn:aws:states:::states:startExecution.sync:2',
            Parameters: {
              StateMachineArn: {
                Ref: 'RotateCertificateStateMachine',
              },
              'Name.$': "States.Hash(States.Format('{}/{}', $$.Execution.Id, $.certificate), 'SHA-1')",
              Input: {
                'fleet.$': '$.fleet',
                'executionName.$': '$.executionName',
                'certificate.$': '$.certificate',
                'reason.$': '$.reason',
                'settings.$': '$.settings',
                'AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID.$': '$$.Execution.Id',
              },
            },
            TimeoutSeconds: 7500,
            ResultSelector: {
              'result.$': '$.Output',
            },
            OutputPath: '$.result',
            Retry: [
              {
                ErrorEquals: [
                  'StepFunctions.ExecutionLimitExceededException',
                  'StepFunctions.SdkClientException',
                  'StepFunctions.AWSStepFunctionsException',
                ],
                IntervalSeconds: 2,
                MaxAttempts: 5,
                BackoffRate: 2,
                MaxDelaySeconds: 60,
                JitterStrategy: 'FULL',
              },
            ],
            Catch: catchAll('ChildFailed'),
            End: true,
          },
          ChildFailed: {
            Comment:
              'States.TaskFailed: the child ended without success and the cause is its description (Status, Error, Cause); anything else: the child could not be started.',
            Type: 'Choice',
            Choices: [
              {
                Variable: '$.error.Error',
                StringEquals: 'States.TaskFailed',
                Next: 'DescribeChild',
              },
            ],
            Default: 'StartFailed',
          },
          StartFailed: {
            Type: 'Pass',
            Parameters: {
              'certificate.$': '$.certificate',
              failed: true,
              status: 'NOT_STARTED',
              'error.$': '$.error.Error',
              'cause.$': '$.error.Cause',
            },
            End: true,
          },
          DescribeChild: {
            Type: 'Pass',
            Parameters: {
              'child.$': 'States.StringToJson($.error.Cause)',
            },
            ResultPath: '$.described',
            Next: 'ChildRolledBack',
          },
          ChildRolledBack: {
            Comment:
              "A child that FAILED ran its own rollback; one that TIMED_OUT or was ABORTED did not, and still holds the certificate's lease.",
            Type: 'Choice',
            Choices: [
              {
                Variable: '$.described.child.Status',
                StringEquals: 'FAILED',
                Next: 'CertificateFailed',
              },
            ],
            Default: 'RollbackStoppedChild',
          },
          CertificateFailed: {
            Type: 'Pass',
            Parameters: {
              'certificate.$': '$.certificate',
              failed: true,
              'status.$': '$.described.child.Status',
              'error.$': '$.described.child.Error',
              'cause.$': '$.described.child.Cause',
            },
            End: true,
          },
          RollbackStoppedChild: lambdaTask('RollbackRotation', {
            comment:
              "The stopped child's rollback, run here: everything it needs derives from the execution and certificate names, so it undoes whatever the child got to (labels, AWSPENDING, tasks, the new certificate) and frees the lease now rather than when it goes stale.",
            payload: {
              'fleet.$': '$.fleet',
              'executionName.$': '$.executionName',
              'certificate.$': '$.certificate',
              error: {
                'Error.$': '$.described.child.Status',
                Cause: 'the rotate-certificate execution stopped before its own rollback',
              },
            },
            timeoutSeconds: 120,
            resultSelector: ROTATION_ROLLBACK_RESULT,
            resultPath: '$.rollback',
            catch: catchAll('NotifyStoppedChild', '$.rollback'),
            next: 'NotifyStoppedChild',
          }),
          NotifyStoppedChild: lambdaTask('Notify', {
            payload: {
              detailType: 'CertificateRotationFailed',
              detail: {
                'certificate.$': '$.certificate',
                'error.$': '$.described.child.Status',
                cause: 'the rotate-certificate execution stopped before its own rollback',
                'rollback.$': '$.rollback',
              },
            },
            timeoutSeconds: 30,
            resultSelector: fromPayload('published'),
            resultPath: null,
            catch: catchAll('StoppedChildFailed', '$.notifyError'),
            next: 'StoppedChildFailed',
          }),
          StoppedChildFailed: {
            Type: 'Pass',
            Parameters: {
              'certificate.$': '$.certificate',
              failed: true,
              'status.$': '$.described.child.Status',
              'error.$': '$.described.child.Error',
              'cause.$': '$.described.child.Cause',
              'rollback.$': '$.rollback',
            },
            End: true,
          },
        },
      },
    },
    AnyFailed: {
      Type: 'Pass',
      Parameters: {
        'any.$': 'States.ArrayContains($.rotations[*].failed, true)',
      },
      ResultPath: '$.failures',
      Next: 'CheckFailures',
    },
    CheckFailures: {
      Type: 'Choice',
      Choices: [
        {
          Variable: '$.failures.any',
          BooleanEquals: true,
          Next: 'FirstFailure',
        },
      ],
      Default: 'RotationComplete',
    },
    FirstFailure: {
      Type: 'Pass',
      Parameters: {
        'failed.$': '$.rotations[?(@.failed == true)]',
      },
      ResultPath: '$.failures',
      Next: 'RotationFailed',
    },
    RotationFailed: {
      Type: 'Fail',
      Comment:
        "Fails with the first failed certificate's error name (in plan order), once every child has ended.",
      ErrorPath: '$.failures.failed[0].error',
      CausePath: '$.failures.failed[0].cause',
    },
    RotationComplete: {
      Type: 'Pass',
      Parameters: {
        'fleet.$': '$.plan.fleet',
        dryRun: false,
        'rotated.$': '$.rotations',
        'skipped.$': '$.plan.skip',
      },
      End: true,
    },
  },
};
