import { createHash } from 'node:crypto';
import { QueryTypes, type Sequelize } from 'sequelize';
import type { Clock } from '../clock.js';

/** A counter's value and how long until it resets. */
export interface Counter {
  readonly points: number;
  /** Milliseconds until the counter resets (0 when it already has). */
  readonly msBeforeReset: number;
}

interface CounterRow {
  rl_key: string;
  points: number | string;
  expire: number | string | null;
}

/** A live counter gains `:points` (never going below zero); a reset one starts again at `:initial`. */
const ADDED_POINTS = `points = CASE WHEN rate_limits.expire > :now
  THEN CASE WHEN rate_limits.points + :points < 0 THEN 0 ELSE rate_limits.points + :points END
  ELSE :initial END`;

/** rl_key is VARCHAR(255), enforced by PostgreSQL: a longer key (a 10,000-character typed name) is stored by its hash. */
const MAX_PLAIN_KEY = 200;

/**
 * Expiring counters in the `rate_limits` table (migration 0003), shared by
 * every instance and surviving restarts. Each change is one atomic
 * `INSERT … ON CONFLICT … RETURNING` (SQLite ≥ 3.35 and PostgreSQL), and a
 * counter never goes below zero.
 *
 * Not rate-limiter-flexible's `RateLimiterSQLite`/`RateLimiterPostgres`: their
 * upsert adds a negative reward to a missing or zero counter (measured: a
 * reward on a fresh key leaves `consumedPoints` at -1 on both, so a sixth
 * guess passes a limit of five), they read `Date.now()` instead of the app's
 * clock, and they create a table of their own per dialect outside the
 * migrations. See README, "Throttling".
 */
export class CounterStore {
  constructor(
    private readonly sequelize: Sequelize,
    private readonly now: Clock,
  ) {}

  /** The live counters among `keys` (missing or reset ones are absent). */
  async getMany(keys: readonly string[]): Promise<Map<string, Counter>> {
    const t = this.now();
    const stored = keys.map(storedKey);
    const rows = await this.sequelize.query<CounterRow>(
      'SELECT rl_key, points, expire FROM rate_limits WHERE rl_key IN (:keys) AND (expire IS NULL OR expire > :now)',
      { replacements: { keys: stored, now: t }, type: QueryTypes.SELECT },
    );
    const byStored = new Map(rows.map((row) => [row.rl_key, this.counter(row, t)]));
    const result = new Map<string, Counter>();
    keys.forEach((key, i) => {
      const found = byStored.get(stored[i]!);
      if (found) result.set(key, found);
    });
    return result;
  }

  async get(key: string): Promise<Counter | null> {
    return (await this.getMany([key])).get(key) ?? null;
  }

  /**
   * Adds `points` (negative to take away) to a counter in a fixed window: a
   * new or reset counter starts its `windowMs` now, a live one keeps its end.
   */
  add(key: string, points: number, windowMs: number): Promise<Counter> {
    return this.upsert(key, points, windowMs, `${ADDED_POINTS},
       expire = CASE WHEN rate_limits.expire > :now THEN rate_limits.expire ELSE excluded.expire END`);
  }

  /**
   * Like {@link add}, but every change moves the end to `windowMs` from now:
   * the counter resets only after `windowMs` without a change (for counts of
   * work in flight, which must not reset while the work goes on).
   */
  slide(key: string, points: number, windowMs: number): Promise<Counter> {
    return this.upsert(key, points, windowMs, `${ADDED_POINTS}, expire = excluded.expire`);
  }

  /** Sets a counter to `points` for `windowMs` from now, whatever it was. */
  async set(key: string, points: number, windowMs: number): Promise<void> {
    await this.upsert(key, points, windowMs, 'points = excluded.points, expire = excluded.expire');
  }

  async delete(key: string): Promise<void> {
    await this.sequelize.query('DELETE FROM rate_limits WHERE rl_key = :key', { replacements: { key: storedKey(key) } });
  }

  private async upsert(key: string, points: number, windowMs: number, onConflict: string): Promise<Counter> {
    const t = this.now();
    // The leading comment keeps Sequelize's SQLite driver from treating this as a plain
    // INSERT (run, no rows) so RETURNING's row comes back.
    const rows = await this.sequelize.query<CounterRow>(
      `/* counter upsert */ INSERT INTO rate_limits (rl_key, points, expire) VALUES (:key, :initial, :expire)
       ON CONFLICT (rl_key) DO UPDATE SET ${onConflict}
       RETURNING rl_key, points, expire`,
      {
        // A counter never starts below zero: taking points from a missing counter leaves it at 0.
        replacements: { key: storedKey(key), points, initial: Math.max(points, 0), expire: t + windowMs, now: t },
        type: QueryTypes.SELECT,
      },
    );
    return this.counter(rows[0]!, t);
  }

  private counter(row: CounterRow, t: number): Counter {
    const expire = row.expire === null ? null : Number(row.expire);
    return { points: Number(row.points), msBeforeReset: expire === null ? 0 : Math.max(expire - t, 0) };
  }
}

function storedKey(key: string): string {
  if (key.length <= MAX_PLAIN_KEY) return key;
  const prefix = key.slice(0, key.indexOf(':') + 1);
  return `${prefix}sha256:${createHash('sha256').update(key).digest('hex')}`;
}
