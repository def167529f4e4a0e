/**
 * One staging-label contract (`test/support/secret-store-contract.ts`) for every store: the
 * embedded mode's file store and the Secrets Manager adapter over the in-memory service the CLI
 * tests use, so a workflow tested locally relies on nothing Secrets Manager does differently.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll } from 'vitest';
import { SecretsManagerStore } from '../../lib/aws/secrets-manager-store.ts';
import { FileSecretStore } from '../../lib/local/file-secret-store.ts';
import { mockAwsClient } from '../support/aws-mock.ts';
import { FakeSecretsManager } from '../support/fake-secrets-manager.ts';
import { secretStoreContract } from '../support/secret-store-contract.ts';

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

secretStoreContract('FileSecretStore', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-store-contract-'));
  dirs.push(dir);
  return FileSecretStore.open(dir);
});

const sm = mockAwsClient(SecretsManagerClient);
secretStoreContract('SecretsManagerStore over the in-memory Secrets Manager', async () => {
  sm.reset();
  new FakeSecretsManager().install(sm);
  return new SecretsManagerStore({ client: new SecretsManagerClient({ region: 'eu-west-1' }) });
});
