import type { RateLimiterRes } from 'rate-limiter-flexible';
import type { Sequelize } from 'sequelize';
import type { Config } from '../config.js';
import { SequelizeRateLimiter } from './throttle-store.js';

export type ThrottleVerdict = { allowed: true } | { allowed: false; retryAfterSeconds: number };

/** An attempt already counted as a failure before the password was checked (see {@link Throttle.beginLogin}). */
export interface LoginReservation {
  readonly accountKey: string;
  readonly ip: string;
  /** The account's failure count including this attempt. */
  readonly accountCount: number;
}

export type LoginVerdict = { allowed: true; reservation: LoginReservation } | { allowed: false; retryAfterSeconds: number };

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

  /**
   * Starts a sign-in attempt: refuses it while the account or address is
   * blocked, else counts it as a failure up front (one atomic increment
   * each) before any password work. Checking first and counting after the
   * password check would let concurrent guesses all pass the check; counted
   * first, attempts beyond the limit are refused however many arrive at once.
   * Settle the reservation with {@link loginFailed} or {@link loginSucceeded}.
   */
  async beginLogin(accountKey: string, ip: string): Promise<LoginVerdict> {
    const current = await this.checkLogin(accountKey, ip);
    if (!current.allowed) return current;
    const [account, address] = await Promise.all([this.accountFailures.penalty(accountKey, 1), this.ipFailures.penalty(ip, 1)]);
    // Lost the race for the last free attempts: refused like a blocked one (the count stays).
    const raced = worst([verdict(account, this.settings.accountMax + 1), verdict(address, this.settings.ipMax + 1)]);
    if (!raced.allowed) return raced;
    return { allowed: true, reservation: { accountKey, ip, accountCount: account.consumedPoints } };
  }

  /** The reserved attempt failed: the attempt that reached the account limit starts a (growing) block. */
  async loginFailed(reservation: LoginReservation): Promise<void> {
    if (reservation.accountCount === this.settings.accountMax) await this.startBlock(reservation.accountKey);
  }

  /** The reserved attempt succeeded: the account's count is cleared and the address gets its attempt back. */
  async loginSucceeded(reservation: LoginReservation): Promise<void> {
    await Promise.all([this.accountFailures.delete(reservation.accountKey), this.ipFailures.reward(reservation.ip, 1)]);
  }

  /** Blocks the account for the window, doubled for each earlier block that day. */
  private async startBlock(accountKey: string): Promise<void> {
    const blocks = await this.accountBlocks.penalty(accountKey, 1);
    const base = Math.ceil(this.settings.accountWindowMs / 1000);
    const length = Math.min(base * 2 ** Math.max(0, blocks.consumedPoints - 1), MAX_BLOCK_SECONDS);
    await this.accountFailures.set(accountKey, this.settings.accountMax, length);
  }

  async checkRegistration(ip: string): Promise<ThrottleVerdict> {
    return verdict(await this.registrations.get(ip), this.settings.registerMax);
  }

  /**
   * Counts a registration from the address before the account is created
   * (atomically, so a burst cannot pass the check together); refused beyond
   * the limit. Give the attempt back with {@link registrationFailed}.
   */
  async beginRegistration(ip: string): Promise<ThrottleVerdict> {
    const current = await this.checkRegistration(ip);
    if (!current.allowed) return current;
    return verdict(await this.registrations.penalty(ip, 1), this.settings.registerMax + 1);
  }

  /** The counted registration created no account (taken name, weak password). */
  async registrationFailed(ip: string): Promise<void> {
    await this.registrations.reward(ip, 1);
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
