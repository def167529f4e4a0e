/** Synthetic source allowlists for the benchmark (pure, seeded: the same run renders the same lists). */

/** mulberry32: a tiny seeded PRNG, plenty for spreading addresses. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * `size` distinct random IPv4 entries, alternating /32 and /24, none inside 127.0.0.0/8 (so no
 * random entry admits the loopback client), plus `own` inserted in the middle: with NGINX's
 * first-match scan of `allow` lines a client's cost depends on its position, and the middle is
 * the expected position of a client picked at random. HAProxy's tree does not care.
 * @example benchAllowlist(1000, '127.0.0.1/32') // 1001 entries, '127.0.0.1/32' at index 500
 */
export function benchAllowlist(size: number, own: string, seed = 0x5eed): string[] {
  const random = seededRandom(seed);
  const seen = new Set<string>([own]);
  const entries: string[] = [];
  // Each attempt adds at most one entry; collisions are rare, so 4× the size bounds the loop.
  for (let attempt = 0; entries.length < size && attempt < size * 4 + 100; attempt++) {
    const a = 1 + Math.floor(random() * 223);
    if (a === 127) continue;
    const b = Math.floor(random() * 256);
    const c = Math.floor(random() * 256);
    const entry =
      entries.length % 2 === 0 ? `${a}.${b}.${c}.${Math.floor(random() * 256)}/32` : `${a}.${b}.${c}.0/24`;
    if (seen.has(entry)) continue;
    seen.add(entry);
    entries.push(entry);
  }
  const middle = Math.floor(entries.length / 2);
  return [...entries.slice(0, middle), own, ...entries.slice(middle)];
}
