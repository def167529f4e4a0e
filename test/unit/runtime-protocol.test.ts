import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../lib/errors.ts';
import { RuntimeApiError, RuntimeProtocolError } from '../../proxy/haproxy/errors.ts';
import {
  classifyFailure,
  command,
  encodeArgument,
  encodeReference,
  encodeVersion,
  errorMessage,
  expectEmpty,
  renderBatch,
  renderRequest,
  sanitizePayload,
  singleAnswer,
  splitAnswers,
  withPayload,
} from '../../proxy/haproxy/runtime-protocol.ts';
import { pemBegin, pemEnd } from '../support/pem.ts';

/**
 * A model of how HAProxy 2.6's CLI reads one request line: `;` ends a command unless escaped,
 * spaces/tabs separate arguments, a backslash makes the next character literal, and a line
 * ending in `<<` starts a payload. Checked against 2.6.12 by hand (`semi\;colon`,
 * `with\ space`, `1.1.1.1\\;2.2.2.2`, `x\ <<`).
 */
function haproxyReads(request: string): { commands: string[][]; payload: boolean; lines: number } {
  const lines = request.split('\n');
  const line = lines[0] ?? '';
  const payload = line.endsWith('<<');
  const commands: string[][] = [];
  let args: string[] = [];
  let arg: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\') {
      arg = (arg ?? '') + (line[i + 1] ?? '');
      i++;
    } else if (c === ';') {
      if (arg !== undefined) args.push(arg);
      commands.push(args);
      args = [];
      arg = undefined;
    } else if (c === ' ' || c === '\t') {
      if (arg !== undefined) args.push(arg);
      arg = undefined;
    } else {
      arg = (arg ?? '') + c;
    }
  }
  if (arg !== undefined) args.push(arg);
  commands.push(args);
  return { commands, payload, lines: lines.length };
}

const nasty = fc.string({
  unit: fc.constantFrom(
    ';',
    '\\',
    ' ',
    '\t',
    '\n',
    '\r',
    '<',
    '#',
    '@',
    'a',
    '0',
    '.',
    '/',
    ':',
    '\u0000',
    'é',
  ),
});

describe('encodeArgument', () => {
  const accepted: Array<[string, string]> = [
    ['10.0.0.0/8', '10.0.0.0/8'],
    ['fd00:ec2:80::/64', 'fd00:ec2:80::/64'],
    ['with space', 'with\\ space'],
    ['semi;colon', 'semi\\;colon'],
    ['back\\slash', 'back\\\\slash'],
    ['x<y', 'x<y'],
    ['café', 'café'],
  ];
  it.each(accepted)('encodes %j as %j', (input, encoded) => {
    expect(encodeArgument(input)).toBe(encoded);
  });

  const rejected: Array<[string, string]> = [
    ['', 'empty'],
    ['a\nshow info', 'newline'],
    ['a\rb', 'carriage return'],
    ['a\tb', 'tab'],
    ['a\u0000b', 'NUL'],
    ['a\u007fb', 'DEL'],
    ['a <<', 'payload marker'],
    ['<<', 'payload marker alone'],
  ];
  it.each(rejected)('rejects %j (%s)', (input) => {
    expect(() => encodeArgument(input)).toThrow(ValidationError);
  });

  it('rejects a leading # or @ where HAProxy reads an id or a version', () => {
    expect(() => encodeArgument('#3', 'identifier')).toThrow(ValidationError);
    expect(() => encodeArgument('@1', 'key')).toThrow(ValidationError);
    expect(encodeArgument('#3', 'value')).toBe('#3');
  });

  it('never echoes the rejected value in the error', () => {
    expect(() => encodeArgument('secret-key-material\n', 'value', 'entry')).toThrow(/^entry contains/);
    try {
      encodeArgument('secret-key-material\n');
    } catch (error) {
      expect(String((error as Error).message)).not.toContain('secret-key-material');
    }
  });

  it('lets no input inject a command, a line or a payload (HAProxy reads back exactly the arguments)', () => {
    fc.assert(
      fc.property(fc.oneof(nasty, fc.string({ unit: 'binary' })), nasty, (key, value) => {
        let request: string;
        try {
          request = renderRequest(
            command(
              'add map',
              encodeReference('/maps/x.map'),
              encodeArgument(key, 'key'),
              encodeArgument(value),
            ),
          );
        } catch (error) {
          expect(error).toBeInstanceOf(ValidationError);
          return;
        }
        const read = haproxyReads(request);
        expect(read.lines).toBe(2); // the line and the empty rest after its final newline
        expect(read.payload).toBe(false);
        expect(read.commands).toEqual([['add', 'map', '/maps/x.map', key, value]]);
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps a batch to exactly one command per entry whatever the entries hold', () => {
    fc.assert(
      fc.property(fc.array(nasty, { minLength: 1, maxLength: 20 }), (entries) => {
        let request: string;
        try {
          request = renderBatch(
            entries.map((e) => command('add acl', '@1', '/acl/a.acl', encodeArgument(e))),
          );
        } catch (error) {
          expect(error).toBeInstanceOf(ValidationError);
          return;
        }
        const read = haproxyReads(request);
        expect(read.payload).toBe(false);
        expect(read.commands).toEqual(entries.map((e) => ['add', 'acl', '@1', '/acl/a.acl', e]));
      }),
    );
  });
});

describe('renderRequest', () => {
  it('refuses hand-built lines that would inject a line or open a payload', () => {
    expect(() =>
      renderRequest({ verb: 'show info', line: 'show info\nshutdown sessions server b/s' }),
    ).toThrow(ValidationError);
    expect(() => renderRequest({ verb: 'set map', line: 'set map m k <<' })).toThrow(ValidationError);
    expect(() => renderBatch([{ verb: 'x', line: ' ' }])).toThrow(ValidationError);
  });
});

describe('encodeReference and encodeVersion', () => {
  it('writes numeric ids as #<id> and files as escaped names', () => {
    expect(encodeReference(4)).toBe('#4');
    expect(encodeReference('/run/acl/allow list.acl')).toBe('/run/acl/allow\\ list.acl');
  });
  it('rejects negative or fractional ids and out-of-range versions', () => {
    expect(() => encodeReference(-1)).toThrow(ValidationError);
    expect(() => encodeReference(1.5)).toThrow(ValidationError);
    expect(() => encodeVersion(2 ** 32)).toThrow(ValidationError);
    expect(encodeVersion(7)).toBe('@7');
  });
});

describe('payloads', () => {
  const pem = '-----BEGIN CERTIFICATE-----\r\nMIIB\r\n\r\nAAAA  \r\n-----END CERTIFICATE-----\r\n\r\n';
  it('drops blank lines and CRs so the payload cannot end early', () => {
    expect(sanitizePayload(pem)).toBe('-----BEGIN CERTIFICATE-----\nMIIB\nAAAA\n-----END CERTIFICATE-----');
  });
  it('frames a payload command with <<, the payload and an empty line', () => {
    expect(renderRequest(withPayload(command('set ssl cert', '/c.pem'), pem))).toBe(
      'set ssl cert /c.pem <<\n-----BEGIN CERTIFICATE-----\nMIIB\nAAAA\n-----END CERTIFICATE-----\n\n',
    );
  });
  it('rejects empty payloads, control characters and batching a payload', () => {
    expect(() => sanitizePayload('\n \n')).toThrow(ValidationError);
    expect(() => sanitizePayload('a\u0000b')).toThrow(ValidationError);
    expect(() => renderBatch([withPayload(command('set ssl cert', '/c.pem'), 'x')])).toThrow(ValidationError);
  });
  it('never produces an empty line inside the payload', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom('\n', '\r', ' ', 'A', '-') }), (text) => {
        let out: string;
        try {
          out = sanitizePayload(text);
        } catch (error) {
          expect(error).toBeInstanceOf(ValidationError);
          return;
        }
        expect(out.split('\n').every((l) => l.length > 0)).toBe(true);
      }),
    );
  });
});

describe('splitAnswers', () => {
  it('splits batched answers on the empty line that ends each one', () => {
    // 2.6.12: "add acl @1 f 1.1.1.1;add acl @1 f bad;show acl f"
    const raw =
      "\n'bad' is not a valid IPv4 or IPv6 address.\n\n0x55ea37c5a8f0 192.168.0.0/16\n0x7f82680468a0 ::1\n\n";
    expect(splitAnswers(raw)).toEqual([
      '',
      "'bad' is not a valid IPv4 or IPv6 address.",
      '0x55ea37c5a8f0 192.168.0.0/16\n0x7f82680468a0 ::1',
    ]);
  });
  it('returns fewer answers when the stream was cut', () => {
    expect(splitAnswers('\n\nNew version')).toEqual(['', '']);
    expect(splitAnswers('')).toEqual([]);
  });
  it("keeps the master CLI's single-newline error answer", () => {
    expect(splitAnswers("Can't find the target PID matching the prefix '@!99999'\n")).toEqual([
      "Can't find the target PID matching the prefix '@!99999'",
    ]);
  });
});

describe('singleAnswer', () => {
  it('removes the final empty line', () => {
    expect(singleAnswer('show acl', 'New version created: 1\n\n')).toBe('New version created: 1');
    expect(singleAnswer('add acl', '\n')).toBe('');
  });
  it('refuses a truncated or absent answer', () => {
    expect(() => singleAnswer('show info', 'Name: HAPr')).toThrow(RuntimeProtocolError);
    expect(() => singleAnswer('show info', '')).toThrow(RuntimeProtocolError);
  });
});

describe('classifyFailure', () => {
  // Answers captured from HAProxy 2.6.12.
  const table: Array<[string, string]> = [
    [
      'Unknown command, but maybe one of the following ones is a better match:\n  add acl …',
      'unknown-command',
    ],
    ['Permission denied', 'permission-denied'],
    ['Unknown ACL identifier. Please use #<id> or <file>.', 'unknown-identifier'],
    ['Unknown map identifier. Please use #<id> or <file>.', 'unknown-identifier'],
    ["Version number in the future, please use 'prepare acl' before.", 'version-conflict'],
    ['Version number out of range.', 'version-conflict'],
    ["No ongoing transaction! !\nCan't commit /tmp/rt/h1/crl.pem!", 'no-transaction'],
    ["Certificate '/tmp/rt/h1/two.pem' already exists!", 'already-exists'],
    ['No such server.', 'not-found'],
    ['No such backend.', 'not-found'],
    ["No such session (use 'show sess').", 'not-found'],
    ['entry not found.', 'not-found'],
    ["Can't display the certificate: Not found or the certificate is a bundle!", 'not-found'],
    ["Can't edit the crt-list: crt-list '/tmp/rt/h1/nolist.txt' does not exist!", 'not-found'],
    ["'notanip' is not a valid IPv4 or IPv6 address.", 'invalid-argument'],
    ["'set server <srv> state' expects 'ready', 'drain' and 'maint'.", 'invalid-argument'],
    ["Session pointer expected (use 'show sess').", 'invalid-argument'],
    [
      "unable to load certificate from file '/tmp/rt/h1/site.pem'.\nCan't load the payload\nCan't update /tmp/rt/h1/site.pem!",
      'rejected',
    ],
    [
      "The transaction must contain at least a certificate and a private key!\nCan't commit /x.pem!",
      'rejected',
    ],
    ['something new', 'unexpected'],
  ];
  it.each(table)('maps %j to %s', (answer, reason) => {
    expect(classifyFailure(answer)).toBe(reason);
  });
});

describe('errorMessage and expectEmpty', () => {
  it('keeps only the first line of an unknown-command answer', () => {
    expect(
      errorMessage('Unknown command, but maybe one of the following ones is a better match:\n  help'),
    ).toBe('Unknown command, but maybe one of the following ones is a better match:');
  });
  it('strips anything PEM-shaped and bounds the length', () => {
    const msg = errorMessage(
      `oops ${pemBegin('PRIVATE KEY')}\nMIIEvQ\n${pemEnd('PRIVATE KEY')} ${'x'.repeat(1000)}`,
    );
    expect(msg).not.toContain('MIIEvQ');
    expect(msg.length).toBeLessThanOrEqual(401);
  });
  it('throws a RuntimeApiError carrying the verb, the message and the reason', () => {
    let caught: unknown;
    try {
      expectEmpty('add acl', "'x' is not a valid IPv4 or IPv6 address.");
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(RuntimeApiError);
    expect(caught).toMatchObject({
      name: 'RuntimeApiError',
      command: 'add acl',
      reason: 'invalid-argument',
      haproxyMessage: "'x' is not a valid IPv4 or IPv6 address.",
    });
  });
});
