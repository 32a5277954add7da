import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { RateLimiterRes, type IRateLimiterStoreOptions, type RateLimiterStoreAbstract as StoreAbstract } from 'rate-limiter-flexible';
import { QueryTypes, type Sequelize } from 'sequelize';

// The library's base class for stores is documented for custom stores but not re-exported by its index.
const RateLimiterStoreAbstract = createRequire(import.meta.url)(
  'rate-limiter-flexible/lib/RateLimiterStoreAbstract.js',
) as typeof StoreAbstract;

interface CounterRow {
  points: number | string;
  expire: number | string | null;
}

/**
 * rate-limiter-flexible on our own database through Sequelize, so counters
 * survive restarts and are shared by every instance. One atomic
 * `INSERT … ON CONFLICT … RETURNING` per change, valid in SQLite ≥ 3.35 and
 * PostgreSQL. The `rate_limits` table comes from migration 0003.
 */
export class SequelizeRateLimiter extends RateLimiterStoreAbstract {
  private readonly sequelize: Sequelize;

  constructor(opts: Omit<IRateLimiterStoreOptions, 'storeClient'> & { sequelize: Sequelize }) {
    const { sequelize, ...rest } = opts;
    super({ ...rest, storeClient: sequelize });
    this.sequelize = sequelize;
  }

  /** rl_key is VARCHAR(255), enforced by PostgreSQL: a longer key (a 10,000-character typed name) is stored by its hash. */
  override getKey(key: string | number): string {
    const full = super.getKey(key);
    return full.length <= 200 ? full : `${this.keyPrefix}:sha256:${createHash('sha256').update(full).digest('hex')}`;
  }

  protected _getRateLimiterRes(_rlKey: string, changedPoints: number, row: CounterRow): RateLimiterRes {
    const points = Number(row.points);
    const expire = row.expire === null ? null : Number(row.expire);
    const isFirst = changedPoints === points;
    const consumed = isFirst ? changedPoints : points;
    return new RateLimiterRes(
      Math.max(this.points - consumed, 0),
      expire ? Math.max(expire - Date.now(), 0) : -1,
      consumed,
      isFirst,
    );
  }

  protected async _upsert(rlKey: string, points: number, msDuration: number, forceExpire = false): Promise<CounterRow> {
    const now = Date.now();
    const expire = msDuration > 0 ? now + msDuration : null;
    // The leading comment keeps Sequelize's SQLite driver from treating this as a plain
    // INSERT (run, no rows) so RETURNING's row comes back.
    const sql = forceExpire
      ? `/* rate-limit set */ INSERT INTO rate_limits (rl_key, points, expire) VALUES (:key, :points, :expire)
         ON CONFLICT (rl_key) DO UPDATE SET points = excluded.points, expire = excluded.expire
         RETURNING points, expire`
      : `/* rate-limit upsert */ INSERT INTO rate_limits (rl_key, points, expire) VALUES (:key, :initial, :expire)
         ON CONFLICT (rl_key) DO UPDATE SET
           points = CASE WHEN rate_limits.expire IS NULL OR rate_limits.expire > :now
             THEN CASE WHEN rate_limits.points + :points < 0 THEN 0 ELSE rate_limits.points + :points END
             ELSE :initial END,
           expire = CASE WHEN rate_limits.expire IS NULL OR rate_limits.expire > :now THEN rate_limits.expire ELSE excluded.expire END
         RETURNING points, expire`;
    const rows = await this.sequelize.query<CounterRow>(sql, {
      // A reward (negative points) never takes a counter below zero, nor creates a negative one.
      replacements: { key: rlKey, points, initial: Math.max(points, 0), expire, now },
      type: QueryTypes.SELECT,
    });
    return rows[0]!;
  }

  protected async _get(rlKey: string): Promise<CounterRow | null> {
    const rows = await this.sequelize.query<CounterRow>(
      'SELECT points, expire FROM rate_limits WHERE rl_key = :key AND (expire IS NULL OR expire > :now)',
      { replacements: { key: rlKey, now: Date.now() }, type: QueryTypes.SELECT },
    );
    return rows[0] ?? null;
  }

  protected async _delete(rlKey: string): Promise<boolean> {
    await this.sequelize.query('DELETE FROM rate_limits WHERE rl_key = :key', { replacements: { key: rlKey } });
    return true;
  }

  /** Removes counters that expired before `before` (epoch ms). */
  async clearExpired(before = Date.now()): Promise<void> {
    await this.sequelize.query('DELETE FROM rate_limits WHERE expire < :before', { replacements: { before } });
  }
}
