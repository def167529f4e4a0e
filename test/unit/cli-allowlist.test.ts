import { describe, expect, it } from 'vitest';
import { diffLines, needsConfirmation, parseCidrLines, unknownOption } from '../../cli/commands/allowlist.ts';

describe('allowlist command helpers', () => {
  it('reads one CIDR a line, dropping # comments, blank lines and CRLF endings', () => {
    expect(
      parseCidrLines('# partners\r\n10.0.0.0/8  # office\r\n\n  2001:db8::/32\n#only a comment\n'),
    ).toEqual(['10.0.0.0/8', '2001:db8::/32']);
  });

  it('names the first option it does not know, and accepts - as a value and CIDRs as positionals', () => {
    const known = ['fleet', 'file', 'dry-run', 'yes', 'help'];
    expect(unknownOption(['set', '--dryrun', '--fleet', 'x'], known)).toBe('--dryrun');
    expect(unknownOption(['set', '--colour=always'], known)).toBe('--colour');
    expect(unknownOption(['set', '-y'], known)).toBe('-y');
    expect(unknownOption(['set', '--file', '-', '--dry-run', '10.0.0.0/8', '-h'], known)).toBeUndefined();
    expect(unknownOption(['set', '--', '--not-an-option'], known)).toBeUndefined();
  });

  it('asks before a set that empties the list or removes more than half of it, and only then', () => {
    expect(needsConfirmation('set', { before: 4, after: 0, removed: 4 })).toMatch(/empties the allowlist/);
    expect(needsConfirmation('set', { before: 0, after: 0, removed: 0 })).toMatch(/empties the allowlist/);
    expect(needsConfirmation('set', { before: 4, after: 1, removed: 3 })).toMatch(/removes 3 of 4 entries/);
    expect(needsConfirmation('set', { before: 4, after: 2, removed: 2 })).toBeUndefined();
    expect(needsConfirmation('remove', { before: 4, after: 0, removed: 4 })).toBeUndefined();
  });

  it('prints counts and at most 20 entries of each side of a diff', () => {
    const added = Array.from({ length: 25 }, (_, i) => `10.0.0.${i}/32`);
    const lines = diffLines(
      'edge',
      { before: 1, cidrs: [...added], added, removed: ['192.0.2.0/24'] },
      (_, t) => t,
    );
    expect(lines[0]).toBe('fleet edge allowlist: 1 → 25 entries (25 added, 1 removed)');
    expect(lines.filter((l) => l.startsWith('  + '))).toHaveLength(20);
    expect(lines).toContain('  … 5 more added');
    expect(lines).toContain('  - 192.0.2.0/24');
  });
});
