import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RuntimeApiError, RuntimeProtocolError } from '../../proxy/haproxy/errors.ts';
import {
  parseAclEntries,
  parseAsn1Time,
  parseHumanTime,
  parsePreparedVersion,
  parseProcUptime,
  parseReloadAnswer,
  parseSessionDetail,
  parseShowInfo,
  parseShowProc,
  parseShowSessions,
  parseSslCertificate,
} from '../../proxy/haproxy/runtime-parsers.ts';

// Answers captured from HAProxy 2.6.12-1+deb12u4 (final empty line removed, as the client does).

const SHOW_INFO = `Name: HAProxy
Version: 2.6.12-1+deb12u4
Release_date: 2026/10/17
Nbthread: 2
Nbproc: 1
Process_num: 1
Pid: 10467
Uptime: 0d 0h00m00s
Uptime_sec: 0
Memmax_MB: 0
Ulimit-n: 19999
Maxconn: 9978
CurrConns: 0
CumConns: 1
CumReq: 1
node: vm
Stopping: 0
Jobs: 7
Unstoppable Jobs: 1
Listeners: 6
Build info: 2.6.12-1+deb12u4
Start_time_sec: 1795450551
Tainted: 0`;

const SHOW_SSL_CERT = `Filename: /tmp/rt/h1/site.pem
Status: Used
Serial: 2DAF73A785B6BE18254C3195E78E24EE646816DA
notBefore: Nov 23 16:13:05 2026 GMT
notAfter: Nov 25 16:13:05 2026 GMT
Subject Alternative Name: DNS:one.test
Algorithm: EC256
SHA1 FingerPrint: 3A027ABC5EB5CCCF5B2ECDD916E231B250E8676C
Subject: /CN=one.test
Issuer: /CN=one.test
OCSP Response Key: `;

const SHOW_SSL_CERT_TX = `Filename: */tmp/rt/h1/site.pem
Status: Unused
Serial: 49255861D17BC56D0B7921297CBB49BBE4DBE53B
notBefore: Nov 23 16:15:31 2026 GMT
notAfter: Nov 26 16:15:31 2026 GMT
Subject Alternative Name: DNS:two.test, DNS:alt.two.test, 
Algorithm: EC256
SHA1 FingerPrint: 86ED249EF270F641F59E7353554A87FC33C5D4A4
Subject: /CN=two.test
Issuer: /CN=two.test
OCSP Response Key: `;

const SHOW_SESS = `0x55bed4b08570: proto=tcpv4 src=127.0.0.1:40163 fe=pp be=be srv=s1 ts=00 epoch=0 age=1s calls=2 rate=1 cpu=0 lat=0 rq[f=848202h,i=0,an=00h,rx=28s,wx=,ax=] rp[f=80048202h,i=0,an=00h,rx=28s,wx=,ax=] scf=[8,0h,fd=16] scb=[8,1h,fd=17] exp=0s rc=0 c_exp=
0x55bed4ad20a0: proto=tcpv4 src=127.0.0.1:44709 fe=fe be=be srv=s1 ts=00 epoch=0 age=1m5s calls=2 rate=1 cpu=0 lat=0 rq[f=848202h,i=0,an=00h,rx=28s,wx=,ax=] rp[f=80048202h,i=0,an=00h,rx=28s,wx=,ax=] scf=[8,0h,fd=18] scb=[8,1h,fd=19] exp=0s rc=0 c_exp=
0x55bed4bbe500: proto=unix_stream src=unix:1 fe=GLOBAL be=<NONE> srv=<none> ts=00 epoch=0 age=0s calls=1 rate=1 cpu=0 lat=0 rq[f=c08002h,i=0,an=00h,rx=10s,wx=,ax=] rp[f=80008002h,i=0,an=00h,rx=,wx=,ax=] scf=[8,0h,fd=20] scb=[8,1h,fd=-1] exp=9s rc=0 c_exp=`;

const SHOW_PROC = `#<PID>          <type>          <reloads>       <uptime>        <version>      
5314            master          5 [failed: 0]   0d00h02m45s     2.6.12-1+deb12u4
# workers
10467           worker          0               0d00h00m01s     2.6.12-1+deb12u4
# old workers
9543            worker          1               0d00h00m20s     2.6.12-1+deb12u4
# programs`;

describe('parseShowInfo', () => {
  it('reads the typed fields and keeps every field', () => {
    const info = parseShowInfo(SHOW_INFO);
    expect(info).toMatchObject({
      version: '2.6.12-1+deb12u4',
      pid: 10467,
      uptimeSeconds: 0,
      currentConnections: 0,
      cumulativeConnections: 1,
      stopping: false,
    });
    expect(info.fields['Unstoppable Jobs']).toBe('1');
    expect(info.fields['Uptime']).toBe('0d 0h00m00s');
  });
  it.each(['', 'garbage', 'Unknown command, but maybe…', 'Name: HAProxy\nVersion: 2.6\nPid: x'])(
    'refuses %j',
    (text) => {
      expect(() => parseShowInfo(text)).toThrow(RuntimeProtocolError);
    },
  );
});

describe('entries', () => {
  it('reads ACL entries with their references', () => {
    expect(parseAclEntries('0x55ea37a6e1a0 10.0.0.0/8\n0x7f82680468a0 ::1')).toEqual([
      { ref: '0x55ea37a6e1a0', value: '10.0.0.0/8' },
      { ref: '0x7f82680468a0', value: '::1' },
    ]);
    expect(parseAclEntries('')).toEqual([]);
  });
  it('refuses an error text in place of entries', () => {
    expect(() => parseAclEntries('Unknown ACL identifier. Please use #<id> or <file>.')).toThrow(
      RuntimeProtocolError,
    );
  });
  it('parses every well-formed entry list back to its values', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.bigInt({ min: 1n, max: 2n ** 48n }), fc.stringMatching(/^[0-9a-f.:/]{1,20}$/))),
        (rows) => {
          const text = rows.map(([p, v]) => `0x${p.toString(16)} ${v}`).join('\n');
          expect(parseAclEntries(text).map((e) => e.value)).toEqual(rows.map(([, v]) => v));
        },
      ),
    );
  });
});

describe('parsePreparedVersion', () => {
  it('reads the new version', () => {
    expect(parsePreparedVersion('prepare acl', 'New version created: 3')).toBe(3);
  });
  it.each(['', 'Unknown ACL identifier. Please use #<id> or <file>.', 'New version created: x'])(
    'refuses %j',
    (t) => {
      expect(() => parsePreparedVersion('prepare acl', t)).toThrow(RuntimeProtocolError);
    },
  );
});

describe('SSL answers', () => {
  it('reads a committed certificate', () => {
    const cert = parseSslCertificate(SHOW_SSL_CERT);
    expect(cert).toMatchObject({
      filename: '/tmp/rt/h1/site.pem',
      status: 'Used',
      serial: '2DAF73A785B6BE18254C3195E78E24EE646816DA',
      subject: '/CN=one.test',
      issuer: '/CN=one.test',
      subjectAltNames: ['DNS:one.test'],
      dnsNames: ['one.test'],
      algorithm: 'EC256',
      sha1Fingerprint: '3A027ABC5EB5CCCF5B2ECDD916E231B250E8676C',
    });
    expect(cert.notBefore.toISOString()).toBe('2026-11-23T16:13:05.000Z');
    expect(cert.notAfter.toISOString()).toBe('2026-11-25T16:13:05.000Z');
  });
  it('reads a transaction, ignoring the trailing empty SAN HAProxy prints for an IP SAN', () => {
    const tx = parseSslCertificate(SHOW_SSL_CERT_TX);
    expect(tx.filename).toBe('*/tmp/rt/h1/site.pem');
    expect(tx.status).toBe('Unused');
    expect(tx.dnsNames).toEqual(['two.test', 'alt.two.test']);
  });
  it('refuses an error answer and a bad date', () => {
    expect(() =>
      parseSslCertificate("Can't display the certificate: Not found or the certificate is a bundle!"),
    ).toThrow(RuntimeProtocolError);
    expect(() => parseAsn1Time('show ssl cert', 'Foo 25 16:13:05 2026 GMT')).toThrow(RuntimeProtocolError);
    expect(parseAsn1Time('show ssl cert', 'Feb  1 01:02:03 2027 GMT').toISOString()).toBe(
      '2027-02-01T01:02:03.000Z',
    );
  });
});

describe('parseShowSessions', () => {
  it('reads id, frontend, backend, server, source and age', () => {
    const sessions = parseShowSessions(SHOW_SESS);
    expect(sessions[0]).toEqual({
      id: '0x55bed4b08570',
      proto: 'tcpv4',
      source: { address: '127.0.0.1', port: 40163 },
      frontend: 'pp',
      backend: 'be',
      server: 's1',
      ageSeconds: 1,
    });
    expect(sessions[1]?.ageSeconds).toBe(65);
    expect(sessions[2]).toMatchObject({
      frontend: 'GLOBAL',
      source: undefined,
      backend: undefined,
      server: undefined,
    });
  });
  it('reads IPv6 sources, bracketed or not', () => {
    const [a, b] = parseShowSessions(
      '0x1: proto=tcpv6 src=::1:5000 fe=f be=b srv=s age=2h\n0x2: proto=tcpv6 src=[fd00::1]:6000 fe=f be=b srv=s age=1d',
    );
    expect(a?.source).toEqual({ address: '::1', port: 5000 });
    expect(a?.ageSeconds).toBe(7200);
    expect(b?.source).toEqual({ address: 'fd00::1', port: 6000 });
    expect(b?.ageSeconds).toBe(86400);
  });
  it("leaves out the streams HAProxy opens itself (the log ring's forwarder, 2.6.12 and 3.2.0)", () => {
    const ring26 =
      '0x5649f1d099c0: proto=? ts=00 epoch=0 age=1s calls=1 rate=1 cpu=0 lat=0 rq[f=808000h,i=0,an=00h,rx=,wx=,ax=] rp[f=80408000h,i=0,an=00h,rx=,wx=,ax=] scf=[8,40h,fd=-1] scb=[8,49h,fd=12] exp=59m59s rc=0 c_exp=';
    const ring32 =
      '0x7f58f404b430: proto=? ts=00 epoch=0 age=1s calls=1 rate=0 cpu=0 lat=0 rq[f=808000h,i=0,an=00h,ax=] rp[f=80008000h,i=0,an=00h,ax=] scf=[8,40h,fd=-1,rex=,wex=] scb=[8,441h,fd=13,rex=,wex=] exp= rc=0 c_exp=';
    const client = '0x1: proto=tcpv4 src=10.0.0.1:5000 fe=fe_tls be=be srv=s age=2s';
    expect(parseShowSessions([ring26, client, ring32].join('\n')).map((s) => s.id)).toEqual(['0x1']);
  });
  it('returns nothing for an empty answer and refuses garbage', () => {
    expect(parseShowSessions('')).toEqual([]);
    expect(() => parseShowSessions('Permission denied')).toThrow(RuntimeProtocolError);
    expect(() => parseShowSessions('0x1: nothing')).toThrow(RuntimeProtocolError);
  });
  it('reads HAProxy human times', () => {
    expect(parseHumanTime('3m4s')).toBe(184);
    expect(parseHumanTime('')).toBeUndefined();
    expect(parseHumanTime('soon')).toBeUndefined();
  });
});

describe('parseSessionDetail', () => {
  // `show sess 0x55bed4b08570` on 2.6.12 (trimmed after the backend lines).
  const DETAIL = `0x55bed4b08570: [23/Nov/2026:16:15:00.149345] id=0 proto=tcpv4 source=127.0.0.1:40163
  flags=0x4a, conn_retries=0, conn_exp=<NEVER> conn_et=0x000 srv_conn=0x55bed4a25d80, pend_pos=(nil) waiting=0 epoch=0
  frontend=pp (id=5 mode=tcp), listener=? (id=1) addr=127.0.0.1:18445
  backend=be (id=4 mode=tcp) addr=127.0.0.1:47700
  server=s1 (id=1) addr=127.0.0.1:18999`;
  it('reads the pointer, the unique id, the source and the frontend', () => {
    expect(parseSessionDetail(DETAIL)).toEqual({
      id: '0x55bed4b08570',
      uniqueId: 0,
      source: { address: '127.0.0.1', port: 40163 },
      frontend: 'pp',
    });
  });
  it('returns undefined for a session that is gone and refuses garbage', () => {
    expect(parseSessionDetail('Session not found.')).toBeUndefined();
    expect(() => parseSessionDetail('0x1: proto=tcpv4 src=1.2.3.4:5 fe=f')).toThrow(RuntimeProtocolError);
  });
});

describe('parseShowProc', () => {
  it('reads the master, current and old workers', () => {
    const procs = parseShowProc(SHOW_PROC);
    expect(procs.master).toEqual({
      pid: 5314,
      type: 'master',
      reloads: 5,
      failedReloads: 0,
      uptimeSeconds: 165,
      version: '2.6.12-1+deb12u4',
    });
    expect(procs.workers).toEqual([
      { pid: 10467, type: 'worker', reloads: 0, uptimeSeconds: 1, version: '2.6.12-1+deb12u4' },
    ]);
    expect(procs.oldWorkers.map((w) => w.pid)).toEqual([9543]);
    expect(procs.programs).toEqual([]);
  });
  it('reads failed reloads and programs (format of the 2.6 management guide)', () => {
    const procs = parseShowProc(
      '#<PID>          <type>          <reloads>       <uptime>        <version>\n1162            master          5 [failed: 2]   0d00h02m07s     2.5-dev13\n# workers\n1271            worker          1               0d00h00m00s     2.5-dev13\n# programs\n1244            foo             0               0d00h00m00s     -',
    );
    expect(procs.master.failedReloads).toBe(2);
    expect(procs.programs).toEqual([{ pid: 1244, type: 'foo', reloads: 0, uptimeSeconds: 0, version: '-' }]);
  });
  it.each(['', 'Unknown command', '#<PID> x\n# workers\n1 worker 0 0d00h00m00s 2.6', '#<PID> x\n# strange'])(
    'refuses %j',
    (text) => {
      expect(() => parseShowProc(text)).toThrow(RuntimeProtocolError);
    },
  );
  it('reads proc uptimes', () => {
    expect(parseProcUptime('1d02h03m04s')).toBe(93784);
    expect(parseProcUptime('x')).toBeUndefined();
  });
});

// Captured from 3.2.0-e134140d2 (the master CLI's answer to `reload`).
const RELOAD_OK =
  'Success=1\n--\n[NOTICE]   (8364) : Initializing new worker (8379)\n[NOTICE]   (8364) : Loading success.\n[WARNING]  (8364) : Former worker (8367) exited with code 0 (Exit)\n\n';
const RELOAD_FAILED =
  "Success=0\n--\n[NOTICE]   (8364) : Initializing new worker (8397)\n[ALERT]    (8397) : config : parsing [/tmp/h.cfg:10] : unknown keyword 'bogus' in 'frontend' section\n[ALERT]    (8397) : config : Fatal errors found in configuration.\n[WARNING]  (8364) : Failed to load worker!\n\n";

describe('parseReloadAnswer', () => {
  it('reads 2.6 closing without a word as pending, and 2.7+ Success=1 as loaded', () => {
    expect(parseReloadAnswer('')).toEqual({ kind: 'pending' });
    expect(parseReloadAnswer(RELOAD_OK)).toEqual({ kind: 'loaded' });
  });
  it('throws reload-failed with the alerts, without their pid prefix, on Success=0', () => {
    let error: unknown;
    try {
      parseReloadAnswer(RELOAD_FAILED);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(RuntimeApiError);
    expect(error).toMatchObject({ command: 'reload', reason: 'reload-failed' });
    const message = (error as RuntimeApiError).haproxyMessage;
    expect(message).toContain("parsing [/tmp/h.cfg:10] : unknown keyword 'bogus'");
    expect(message).not.toContain('(8397)');
    expect(message).not.toContain('Initializing');
    expect(() => parseReloadAnswer('Success=0\n--\n')).toThrow(/the new worker failed to load/);
  });
  it('reads any other answer as a refusal of the command, classified as other commands are', () => {
    expect(() => parseReloadAnswer('Permission denied\n')).toThrow(
      expect.objectContaining({ reason: 'permission-denied' }),
    );
  });
});
