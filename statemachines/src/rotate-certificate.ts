/** The `rotate-certificate` state machine; `npm run asl` writes it to `statemachines/rotate-certificate.asl.json`. */
import {
  catchAll,
  fromPayload,
  lambdaTask,
  PROMOTED_RESULT,
  ROTATION_ROLLBACK_RESULT,
  type StateMachine,
  taskUpdateStates,
} from './asl.ts';

export const rotateCertificate: StateMachine = {
  Comment:
    'Portcullis rotate-certificate: one certificate, started by rotate-certificates (startExecution.sync:2): issue, stage, nudge + verify the fleet in batches, promote, roll what could not be hot-updated, wait the grace period, revoke the superseded certificate, notify; any failure rolls back. Its history grows with the batches and the failures, not with the tasks.',
  StartAt: 'IssueCertificate',
  TimeoutSeconds: 7200,
  States: {
    IssueCertificate: lambdaTask('IssueCertificate', {
      comment:
        'Fresh key (kept in a working secret version) and CSR; the CA request carries a token derived from execution + certificate.',
      payload: {
        'fleet.$': '$.fleet',
        'executionName.$': '$.executionName',
        'certificate.$': '$.certificate',
      },
      timeoutSeconds: 60,
      resultSelector: fromPayload('certificateId', 'reused'),
      resultPath: '$.issued',
      catch: [
        {
          ErrorEquals: ['RotationInProgress'],
          Next: 'RotationRefused',
          ResultPath: '$.error',
        },
        {
          ErrorEquals: ['States.ALL'],
          Next: 'RollbackRotation',
          ResultPath: '$.error',
        },
      ],
      next: 'GetCertificate',
    }),
    GetCertificate: lambdaTask('GetCertificate', {
      payload: {
        'fleet.$': '$.fleet',
        'certificate.$': '$.certificate',
        'certificateId.$': '$.issued.certificateId',
      },
      timeoutSeconds: 30,
      resultSelector: fromPayload('serial', 'notAfter'),
      resultPath: '$.newCertificate',
      retry: [
        {
          ErrorEquals: ['CertificateNotReady'],
          IntervalSeconds: 2,
          MaxAttempts: 8,
          BackoffRate: 2,
          MaxDelaySeconds: 60,
          JitterStrategy: 'FULL',
        },
      ],
      catch: catchAll('RollbackRotation'),
      next: 'StageCertificate',
    }),
    StageCertificate: lambdaTask('StageCertificate', {
      comment: 'Validate key, chain and names, then put the bundle as AWSPENDING.',
      payload: {
        'fleet.$': '$.fleet',
        'executionName.$': '$.executionName',
        'certificate.$': '$.certificate',
        'certificateId.$': '$.issued.certificateId',
      },
      timeoutSeconds: 60,
      resultSelector: fromPayload(
        'secretId',
        'versionId',
        'serial',
        'notAfter',
        'previousVersionId',
        'previousSerial',
        'previousCertificateId',
      ),
      resultPath: '$.staged',
      catch: catchAll('RollbackRotation'),
      next: 'TaskBatches',
    }),
    ...taskUpdateStates({
      batches: '$.settings.taskBatches',
      fleetPath: '$.fleet',
      target: {
        kind: 'certificate',
        'name.$': '$.certificate',
        'secretId.$': '$.staged.secretId',
        'versionId.$': '$.staged.versionId',
        'serial.$': '$.staged.serial',
      },
      next: 'PromoteSecret',
      onError: 'RollbackRotation',
    }),
    PromoteSecret: lambdaTask('PromoteSecret', {
      comment: 'AWSCURRENT onto the verified version (AWSPREVIOUS follows), AWSPENDING removed.',
      payload: {
        'fleet.$': '$.fleet',
        'secretId.$': '$.staged.secretId',
        'versionId.$': '$.staged.versionId',
        'batches.$': '$.taskOutcomes',
      },
      timeoutSeconds: 30,
      resultSelector: PROMOTED_RESULT,
      resultPath: '$.promoted',
      catch: catchAll('RollbackRotation'),
      next: 'NeedsRoll',
    }),
    NeedsRoll: {
      Type: 'Choice',
      Choices: [
        {
          Variable: '$.promoted.needsRoll',
          BooleanEquals: true,
          Next: 'RollService',
        },
      ],
      Default: 'GracePeriod',
    },
    RollService: lambdaTask('RollService', {
      comment:
        'Follows a deployment already rolling out since the promote (another certificate’s), else starts one.',
      payload: {
        'fleet.$': '$.fleet',
        'notBefore.$': '$.promoted.promotedAt',
      },
      timeoutSeconds: 30,
      resultSelector: fromPayload('deploymentId', 'poll', 'state'),
      resultPath: '$.rollout',
      catch: catchAll('RollbackRotation'),
      next: 'WaitForRollout',
    }),
    WaitForRollout: {
      Type: 'Wait',
      SecondsPath: '$.settings.rolloutPollSeconds',
      Next: 'CheckRollout',
    },
    CheckRollout: lambdaTask('CheckRollout', {
      comment: 'RolloutFailed when the deployment failed or did not finish within rolloutMaxPolls checks.',
      payload: {
        'fleet.$': '$.fleet',
        'deploymentId.$': '$.rollout.deploymentId',
        'poll.$': '$.rollout.poll',
        'maxPolls.$': '$.settings.rolloutMaxPolls',
      },
      timeoutSeconds: 30,
      resultSelector: fromPayload('deploymentId', 'poll', 'state'),
      resultPath: '$.rollout',
      catch: catchAll('RollbackRotation'),
      next: 'RolloutDone',
    }),
    RolloutDone: {
      Type: 'Choice',
      Choices: [
        {
          Variable: '$.rollout.state',
          StringEquals: 'COMPLETED',
          Next: 'GracePeriod',
        },
      ],
      Default: 'WaitForRollout',
    },
    GracePeriod: {
      Type: 'Wait',
      Comment: 'Let clients and caches move off the superseded certificate before it is revoked.',
      SecondsPath: '$.settings.graceSeconds',
      Next: 'RevokeCertificate',
    },
    RevokeCertificate: lambdaTask('RevokeCertificate', {
      comment: 'Revoke the superseded certificate; skipped when there is none.',
      payload: {
        'fleet.$': '$.fleet',
        'certificate.$': '$.certificate',
        'certificateId.$': '$.staged.previousCertificateId',
        'serial.$': '$.staged.previousSerial',
        reason: 'SUPERSEDED',
      },
      timeoutSeconds: 30,
      resultSelector: fromPayload('revoked', 'serial'),
      resultPath: '$.revoked',
      catch: catchAll('MarkRevocationAttempted'),
      next: 'NotifyRotated',
    }),
    MarkRevocationAttempted: {
      Comment:
        'The superseded certificate may be revoked already (a call can fail after it went through): the rollback must not make it current again.',
      Type: 'Pass',
      Result: true,
      ResultPath: '$.previousRevocationAttempted',
      Next: 'RollbackRotation',
    },
    NotifyRotated: lambdaTask('Notify', {
      comment: 'No rollback from here: the rotation itself succeeded.',
      payload: {
        detailType: 'CertificateRotated',
        detail: {
          'certificate.$': '$.certificate',
          'previousSerial.$': '$.staged.previousSerial',
          'newSerial.$': '$.staged.serial',
          'versionId.$': '$.staged.versionId',
          'notAfter.$': '$.staged.notAfter',
          'reason.$': '$.reason',
          'tasks.$': '$.promoted',
        },
      },
      timeoutSeconds: 30,
      resultSelector: fromPayload('published'),
      resultPath: null,
      next: 'Rotated',
    }),
    Rotated: {
      Type: 'Pass',
      Parameters: {
        'certificate.$': '$.certificate',
        'serial.$': '$.staged.serial',
        'previousSerial.$': '$.staged.previousSerial',
        'versionId.$': '$.staged.versionId',
        'notAfter.$': '$.staged.notAfter',
        'updatedTasks.$': '$.promoted.updated',
        'rolledTasks.$': '$.promoted.unreachable',
        'previousRevoked.$': '$.revoked.revoked',
        'rolledTaskCount.$': '$.promoted.unreachableCount',
        failed: false,
      },
      End: true,
    },
    RotationRefused: {
      Comment:
        "Another execution holds the certificate's lease; this one wrote nothing, so there is nothing to roll back (a rollback would nudge the tasks away from the other execution's AWSPENDING).",
      Type: 'Pass',
      Result: {
        restoredCurrentTo: null,
        droppedPending: false,
        revokedSerial: null,
        nudged: 0,
        unreachable: [],
        notes: ['another execution is rotating this certificate; nothing was written'],
      },
      ResultPath: '$.rollback',
      Next: 'NotifyRotationFailed',
    },
    RollbackRotation: lambdaTask('RollbackRotation', {
      comment:
        'AWSCURRENT back if it moved, AWSPENDING dropped, tasks nudged back, the new certificate revoked.',
      payloadPath: '$',
      timeoutSeconds: 120,
      resultSelector: ROTATION_ROLLBACK_RESULT,
      resultPath: '$.rollback',
      catch: catchAll('NotifyRotationFailed', '$.rollback'),
      next: 'NotifyRotationFailed',
    }),
    NotifyRotationFailed: lambdaTask('Notify', {
      payload: {
        detailType: 'CertificateRotationFailed',
        detail: {
          'certificate.$': '$.certificate',
          'error.$': '$.error.Error',
          'cause.$': '$.error.Cause',
          'rollback.$': '$.rollback',
        },
      },
      timeoutSeconds: 30,
      resultSelector: fromPayload('published'),
      resultPath: null,
      catch: catchAll('RotationFailed', '$.notifyError'),
      next: 'RotationFailed',
    }),
    RotationFailed: {
      Type: 'Fail',
      Comment: 'Fails with the original error name.',
      ErrorPath: '$.error.Error',
      CausePath: '$.error.Cause',
    },
  },
};
