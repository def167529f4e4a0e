import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type SecretStore, Stage } from '../../lib/ports.ts';
import { AllowlistSecret, NudgeKeySecret, parseSecret } from '../../lib/secrets/index.ts';
import { NUDGE_WINDOW_MS, signNudge, verifyNudge } from '../../lib/secrets/nudge.ts';
import { readNudgeKey } from '../../lib/secrets/nudge-key.ts';

describe('parseSecret', () => {
  it('returns the parsed document with defaults applied', () => {
    const doc = parseSecret(AllowlistSecret, 'allow', JSON.stringify({ cidrs: ['10.0.0.0/8'] }));
    expect(doc).toEqual({ cidrs: ['10.0.0.0/8'], reason: '' });
  });

  it('names the secret and the field without echoing the value', () => {
    const key = 'c2VjcmV0LXZhbHVlLXRoYXQtbXVzdC1ub3QtbGVhaw==';
    expect(() => parseSecret(NudgeKeySecret, 'nudge-key', JSON.stringify({ key: key.slice(0, 8) }))).toThrow(
      /secret nudge-key: key: must be ≥ 32 bytes/,
    );
    try {
      parseSecret(NudgeKeySecret, 'nudge-key', JSON.stringify({ key: key.slice(0, 8) }));
    } catch (error) {
      expect((error as Error).name).toBe('ValidationError');
      expect((error as Error).message).not.toContain(key.slice(0, 8));
    }
  });

  it('reports garbage JSON as a ValidationError', () => {
    expect(() => parseSecret(AllowlistSecret, 'allow', '{"cidrs": [')).toThrow(/not valid JSON/);
  });
});

describe('verifyNudge', () => {
  const key = randomBytes(32);
  const body = JSON.stringify({ secretId: 'fleet/tls/app', versionId: 'v1' });

  it('accepts a fresh signed nudge once and refuses its replay', () => {
    const now = 1_700_000_000_000;
    const seen = new Map<string, number>();
    const signature = signNudge(key, now, body);
    const headers = { timestamp: String(now), signature };
    expect(verifyNudge(key, headers, body, now + 5, seen)).toEqual({ kind: 'ok' });
    expect(verifyNudge(key, headers, body, now + 10, seen)).toEqual({ kind: 'invalid', reason: 'replayed' });
  });

  it('refuses a nudge outside the time window', () => {
    const now = 1_700_000_000_000;
    const headers = { timestamp: String(now), signature: signNudge(key, now, body) };
    expect(verifyNudge(key, headers, body, now + NUDGE_WINDOW_MS + 1, new Map())).toEqual({
      kind: 'invalid',
      reason: 'stale',
    });
  });

  it('refuses a nudge whose body or key differs from what was signed', () => {
    const now = Date.now();
    const headers = { timestamp: String(now), signature: signNudge(key, now, body) };
    expect(verifyNudge(key, headers, `${body} `, now, new Map()).kind).toBe('invalid');
    expect(verifyNudge(randomBytes(32), headers, body, now, new Map())).toEqual({
      kind: 'invalid',
      reason: 'bad-signature',
    });
  });

  it('never throws and never accepts arbitrary header values', () => {
    fc.assert(
      fc.property(
        fc.option(fc.string()),
        fc.option(fc.string()),
        fc.string(),
        (timestamp, signature, text) => {
          const result = verifyNudge(
            key,
            { timestamp: timestamp ?? undefined, signature: signature ?? undefined },
            text,
            Date.now(),
            new Map(),
          );
          expect(result.kind).toBe('invalid');
        },
      ),
    );
  });
});

describe('readNudgeKey', () => {
  it('returns the key bytes of the AWSCURRENT version and refuses a document that is not a nudge key', async () => {
    const key = randomBytes(32);
    const asked: { secretId: string; stage: string | undefined }[] = [];
    const store = {
      get: async (secretId: string, options?: { stage?: string }) => {
        asked.push({ secretId, stage: options?.stage });
        const value = secretId === 'good' ? JSON.stringify({ key: key.toString('base64') }) : '{"cidrs":[]}';
        return { secretId, versionId: 'v1', stages: [Stage.Current], value };
      },
    } as unknown as SecretStore;
    expect((await readNudgeKey(store, 'good')).equals(key)).toBe(true);
    await expect(readNudgeKey(store, 'bad')).rejects.toMatchObject({ name: 'ValidationError' });
    expect(asked).toEqual([
      { secretId: 'good', stage: Stage.Current },
      { secretId: 'bad', stage: Stage.Current },
    ]);
  });
});
