import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import {
  capabilitiesOf,
  HAPROXY_RELEASE,
  haproxyBinary,
  parseHaproxyVersion,
} from '../../proxy/haproxy/capabilities.ts';
import { HAPROXY } from '../support/haproxy.ts';

const repo = new URL('../..', import.meta.url).pathname;

describe('parseHaproxyVersion', () => {
  it.each([
    ['3.2.0-e134140d2', { major: 3, minor: 2, patch: 0, text: '3.2.0-e134140d2' }],
    ['2.6.12-1+deb12u4', { major: 2, minor: 6, patch: 12, text: '2.6.12-1+deb12u4' }],
    [
      'HAProxy version 3.0.11-1 2025/06/01 - https://haproxy.org/',
      { major: 3, minor: 0, patch: 11, text: '3.0.11-1' },
    ],
    ['2.5-dev13', { major: 2, minor: 5, patch: 0, text: '2.5-dev13' }],
  ])('reads %j', (text, expected) => {
    expect(parseHaproxyVersion(text)).toEqual(expected);
  });
  it.each(['', 'nginx/1.22.1', 'version x.y'])('refuses %j', (text) => {
    expect(() => parseHaproxyVersion(text)).toThrow(expect.objectContaining({ name: 'ValidationError' }));
  });
});

describe('capabilitiesOf', () => {
  it('sets each capability from the release that introduced it', () => {
    const of = (v: string) => {
      const { version: _, ...flags } = capabilitiesOf(v);
      return flags;
    };
    expect(of('2.6.12')).toEqual({
      reloadAnswersStatus: false,
      checkIsQuiet: false,
      luaBoolSampleConversion: false,
      failedReloadListsServingWorkerAsOld: false,
      parserRefusesMalformedHost: false,
      ringDropAnnouncementEndsWithNul: false,
      logFormatJsonEncoding: false,
      caFileCommitSafe: false,
    });
    expect(of('2.8.5')).toMatchObject({ reloadAnswersStatus: true, checkIsQuiet: false });
    expect(of('3.0.11')).toMatchObject({
      checkIsQuiet: true,
      luaBoolSampleConversion: false,
      logFormatJsonEncoding: true,
    });
    expect(of('3.1.0')).toMatchObject({ luaBoolSampleConversion: true, parserRefusesMalformedHost: false });
    expect(of('3.2.0')).toEqual({
      reloadAnswersStatus: true,
      checkIsQuiet: true,
      luaBoolSampleConversion: true,
      failedReloadListsServingWorkerAsOld: true,
      parserRefusesMalformedHost: true,
      ringDropAnnouncementEndsWithNul: true,
      logFormatJsonEncoding: true,
      // The commit ssl ca-file fix (upstream 7482b6ebf) is not in 3.2.0: trust goes by reload.
      caFileCommitSafe: false,
    });
  });
  it('compares versions numerically, not as text', () => {
    expect(capabilitiesOf('2.10.0').reloadAnswersStatus).toBe(true);
    expect(capabilitiesOf('10.0.0').luaBoolSampleConversion).toBe(true);
  });
});

describe('the HAProxy release', () => {
  it('takes HAPROXY_BIN when set, else haproxy from PATH', () => {
    expect(haproxyBinary({ HAPROXY_BIN: '/opt/h/sbin/haproxy' })).toBe('/opt/h/sbin/haproxy');
    expect(haproxyBinary({ HAPROXY_BIN: '' })).toBe('haproxy');
    expect(haproxyBinary({})).toBe('haproxy');
  });

  it('is one exact 3.2.x release in the image, the stack default, the docs and the CI build', async () => {
    expect(HAPROXY_RELEASE).toMatch(/^3\.2\.\d+$/);
    const dockerfile = await readFile(`${repo}proxy/Dockerfile`, 'utf8');
    expect(dockerfile.match(/^FROM (\S+)$/gm)).toEqual([`FROM haproxy:${HAPROXY_RELEASE}`]);
    const serverless = await readFile(`${repo}serverless.yml`, 'utf8');
    const image = /^\s+haproxyImage: (\S+)$/m.exec(serverless)?.[1];
    expect(image).toMatch(new RegExp(`/haproxy:${HAPROXY_RELEASE.replaceAll('.', '\\.')}$`));
    const deploy = await readFile(`${repo}docs/deploy.md`, 'utf8');
    expect(deploy).toContain(`haproxy:${HAPROXY_RELEASE}`);
    const build = await readFile(`${repo}scripts/haproxy-release`, 'utf8');
    expect(build.trim()).toBe(HAPROXY_RELEASE);
    // Every other HAProxy tag the repository names is this one.
    const named: Array<[string, string]> = [
      ['Dockerfile', dockerfile],
      ['serverless.yml', serverless],
      ['deploy.md', deploy],
    ];
    for (const [name, text] of named) {
      for (const tag of text.matchAll(/haproxy:(\d+\.\d+(?:\.\d+)?)/g))
        expect(tag[1], name).toBe(HAPROXY_RELEASE);
    }
  });

  // .ci/run names the release each of its runs is meant to use, so a run cannot pass on another.
  it.runIf(process.env['PORTCULLIS_EXPECT_HAPROXY'])('runs the HAProxy release CI asked for', () => {
    expect(`${HAPROXY.capabilities.version.text}.`).toMatch(
      new RegExp(`^${process.env['PORTCULLIS_EXPECT_HAPROXY']!.replaceAll('.', '\\.')}[.-]`),
    );
  });
});
