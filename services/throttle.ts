import type { RateLimiterRes } from 'rate-limiter-flexible';
import type { Sequelize } from 'sequelize';
import type { Config } from '../config.js';
import { SequelizeRateLimiter } from './throttle-store.js';

export type ThrottleVerdict = { allowed: true } | { allowed: false; retryAfterSeconds: number };

/** Longest block the back-off reaches. */
const MAX_BLOCK_SECONDS = 24 * 60 * 60;

/**
 * Login and registration throttling on shared database counters.
 *
 * - per account (the lower-cased name, whether or not it exists, so blocks
 *   reveal nothing): `accountMax` failures in `accountWindow` block the
 *   account; each further block in a day doubles its length (back-off);
 * - per client address: `ipMax` failures in `ipWindow`;
 * - registrations per address: `registerMax` in `registerWindow`.
 *
 * While a block lasts every attempt is refused, the right password included.
 */
export class Throttle {
  private readonly accountFailures: SequelizeRateLimiter;
  private readonly accountBlocks: SequelizeRateLimiter;
  private readonly ipFailures: SequelizeRateLimiter;
  private readonly registrations: SequelizeRateLimiter;

  constructor(sequelize: Sequelize, private readonly settings: Config['throttle']) {
    const seconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));
    this.accountFailures = new SequelizeRateLimiter({
      sequelize,
      keyPrefix: 'login_account',
      points: settings.accountMax,
      duration: seconds(settings.accountWindowMs),
    });
    this.accountBlocks = new SequelizeRateLimiter({ sequelize, keyPrefix: 'login_blocks', points: 1000, duration: MAX_BLOCK_SECONDS });
    this.ipFailures = new SequelizeRateLimiter({
      sequelize,
      keyPrefix: 'login_ip',
      points: settings.ipMax,
      duration: seconds(settings.ipWindowMs),
    });
    this.registrations = new SequelizeRateLimiter({
      sequelize,
      keyPrefix: 'register_ip',
      points: settings.registerMax,
      duration: seconds(settings.registerWindowMs),
    });
  }

  /** May this address try to sign in to this account now? */
  async checkLogin(accountKey: string, ip: string): Promise<ThrottleVerdict> {
    const [account, address] = await Promise.all([this.accountFailures.get(accountKey), this.ipFailures.get(ip)]);
    return worst([verdict(account, this.settings.accountMax), verdict(address, this.settings.ipMax)]);
  }

  /** Counts a failed sign-in; the failure that reaches the account limit starts a (growing) block. */
  async recordLoginFailure(accountKey: string, ip: string): Promise<void> {
    const [account] = await Promise.all([
      this.accountFailures.penalty(accountKey, 1),
      this.ipFailures.penalty(ip, 1),
    ]);
    if (account.consumedPoints >= this.settings.accountMax) {
      const blocks = await this.accountBlocks.penalty(accountKey, 1);
      const base = Math.ceil(this.settings.accountWindowMs / 1000);
      const length = Math.min(base * 2 ** Math.max(0, blocks.consumedPoints - 1), MAX_BLOCK_SECONDS);
      await this.accountFailures.set(accountKey, this.settings.accountMax, length);
    }
  }

  /** A successful sign-in clears the account's failure count (not the address's). */
  async recordLoginSuccess(accountKey: string): Promise<void> {
    await this.accountFailures.delete(accountKey);
  }

  async checkRegistration(ip: string): Promise<ThrottleVerdict> {
    return verdict(await this.registrations.get(ip), this.settings.registerMax);
  }

  async recordRegistration(ip: string): Promise<void> {
    await this.registrations.penalty(ip, 1);
  }
}

function verdict(res: RateLimiterRes | null, max: number): ThrottleVerdict {
  if (!res || res.consumedPoints < max) return { allowed: true };
  return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(res.msBeforeNext / 1000)) };
}

function worst(verdicts: ThrottleVerdict[]): ThrottleVerdict {
  let retry = 0;
  for (const v of verdicts) if (!v.allowed) retry = Math.max(retry, v.retryAfterSeconds);
  return retry > 0 ? { allowed: false, retryAfterSeconds: retry } : { allowed: true };
}
