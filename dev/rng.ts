/**
 * The seeded PRNG of the randomized tests and the fuzzer (mulberry32): the
 * same seed, the same run. `SIGVER_TEST_SEED` picks another seed for the
 * tests; failures print theirs.
 *
 * @module
 */

/** The seed of this run: `SIGVER_TEST_SEED`, or a fixed default. */
export function testSeed(): number {
  try {
    const s = Deno.env.get("SIGVER_TEST_SEED");
    if (s) return Number(s) >>> 0;
  } catch {
    // No env permission: keep the default.
  }
  return 0x5eed2026;
}

/** A small, fast, seeded PRNG. */
export class Rng {
  #s: number;

  /** @param seed Any 32-bit number. */
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }

  /** A uint32. */
  next(): number {
    let x = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return (x ^ (x >>> 14)) >>> 0;
  }

  /** A number in [0, 1). */
  float(): number {
    return this.next() / 2 ** 32;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** One of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** `n` random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }

  /**
   * A length skewed towards small: mostly under 16, sometimes up to `max`.
   *
   * @returns An integer in [0, max].
   */
  size(max: number): number {
    const r = this.float();
    if (r < 0.6) return this.int(Math.min(16, max) + 1);
    if (r < 0.9) return this.int(Math.min(256, max) + 1);
    return this.int(max + 1);
  }

  /** A random value below 2^64. */
  u64(): bigint {
    return (BigInt(this.next()) << 32n) | BigInt(this.next());
  }
}

/**
 * A random source in [0, 1) for `HubOptions.random`, seeded.
 *
 * @param seed Any 32-bit number.
 * @returns The source.
 */
export function seeded(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.float();
}
