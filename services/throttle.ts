import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config.js';
import type { CounterStore } from './throttle-store.js';

export type ThrottleVerdict = { allowed: true } | { allowed: false; retryAfterSeconds: number };

/** The outcome of a guarded password check: its result, or refused while a limit is reached. */
export type Guarded<T> = { allowed: true; result: T } | { allowed: false; retryAfterSeconds: number };

/** Longest block the back-off reaches. */
const MAX_BLOCK_SECONDS = 24 * 60 * 60;
/**
 * A check in flight holds a slot; a slot counter resets this long after its
 * last change. Far longer than any password check (milliseconds; requests
 * time out after 30 s), so it only frees the slots of a process that died
 * mid-check.
 */
const SLOT_WINDOW_MS = 60_000;
/** How long an attempt waits, polling with back-off, for the checks ahead of it to settle. */
const SETTLE_POLLS = 120;
const FIRST_POLL_MS = 5;
const LONGEST_POLL_MS = 100;

/** One failure limit: failures in a window, plus the checks in flight that may still fail. */
interface Budget {
  failures: string;
  /** Where the account's blocks of the day are counted (the back-off); the address has none. */
  blocks?: string;
  inFlight: string;
  max: number;
  windowMs: number;
  /** A success does not clear these failures (an address's count: one good sign-in says nothing of the others). */
  keepOnSuccess?: true;
}

type Attempt = { kind: 'acquired' } | { kind: 'blocked'; retryAfterSeconds: number } | { kind: 'busy'; retryAfterSeconds: number };

/**
 * Sign-in and registration throttling on shared database counters.
 *
 * - per account (the lower-cased name, whether or not it exists, so blocks
 *   reveal nothing): `accountMax` failures in `accountWindow` block the
 *   account; each further block in a day doubles its length (back-off);
 * - per client address: `ipMax` failures in `ipWindow`;
 * - registrations per address: `registerMax` in `registerWindow`.
 *
 * Only failures count. While a block lasts every attempt is refused, the
 * right password included. Concurrent guesses cannot get past a limit: a
 * password check starts only while the failures so far plus the checks
 * already in flight stay within it; further attempts wait for those to
 * settle (then pass, or find the block) instead of being refused, so a burst
 * of correct sign-ins all succeed.
 */
export class Throttle {
  constructor(
    private readonly store: CounterStore,
    private readonly settings: Config['throttle'],
  ) {}

  /**
   * Runs one password check for `accountKey` from `ip` under the failure
   * limits. `failed(result)` says whether it counts as a failure. A check that
   * throws counts as nothing.
   */
  async guardPasswordCheck<T>(accountKey: string, ip: string, check: () => Promise<T>, failed: (result: T) => boolean): Promise<Guarded<T>> {
    return this.guard(this.loginBudgets(accountKey, ip), check, failed);
  }

  /**
   * Runs one second-factor check (a TOTP or recovery code) for the account
   * under its own limit: `secondFactorMax` failures in `secondFactorWindow`
   * block the account's second step, whatever the address, with the same
   * in-flight accounting and doubling back-off as the password limit.
   */
  async guardSecondFactor<T>(userId: number, check: () => Promise<T>, failed: (result: T) => boolean): Promise<Guarded<T>> {
    const { secondFactorMax, secondFactorWindowMs } = this.settings;
    const budget: Budget = {
      failures: `second_factor:${userId}`,
      blocks: `second_factor_blocks:${userId}`,
      inFlight: `second_factor_checks:${userId}`,
      max: secondFactorMax,
      windowMs: secondFactorWindowMs,
    };
    return this.guard([budget], check, failed);
  }

  /**
   * Runs one passkey check from `ip` under the address's sign-in limit (the
   * same counter password failures go to; there is no account to count
   * against before the credential is known).
   */
  async guardPasskey<T>(ip: string, check: () => Promise<T>, failed: (result: T) => boolean): Promise<Guarded<T>> {
    return this.guard([this.loginBudgets('', ip)[1]], check, failed);
  }

  /** The first budget's failures are cleared by a success (the account's; an address keeps its count). */
  private async guard<T>(budgets: Budget[], check: () => Promise<T>, failed: (result: T) => boolean): Promise<Guarded<T>> {
    let wait = FIRST_POLL_MS;
    for (let poll = 0; ; poll += 1) {
      const attempt = await this.tryAcquire(budgets);
      if (attempt.kind === 'acquired') break;
      if (attempt.kind === 'blocked' || poll >= SETTLE_POLLS) return { allowed: false, retryAfterSeconds: attempt.retryAfterSeconds };
      await sleep(wait + Math.random() * wait);
      wait = Math.min(wait * 2, LONGEST_POLL_MS);
    }
    let result: T;
    try {
      result = await check();
    } catch (err) {
      await this.release(budgets);
      throw err;
    }
    if (failed(result)) await this.countFailure(budgets);
    else if (!budgets[0]!.keepOnSuccess) await this.store.delete(budgets[0]!.failures);
    // Only after the failure is counted: whoever takes the slot next must see it.
    await this.release(budgets);
    return { allowed: true, result };
  }

  /** May this address try to sign in to this account now (no block)? */
  async checkLogin(accountKey: string, ip: string): Promise<ThrottleVerdict> {
    const budgets = this.loginBudgets(accountKey, ip);
    const counters = await this.store.getMany(budgets.map((b) => b.failures));
    return worst(budgets.map((b) => verdict(counters.get(b.failures), b.max)));
  }

  /**
   * Counts a registration from the address before the account is created
   * (atomically, so a burst cannot pass together); refused beyond the limit.
   * Give it back with {@link registrationFailed} when the form was invalid.
   */
  async beginRegistration(ip: string): Promise<ThrottleVerdict> {
    const key = `register_ip:${ip}`;
    const current = await this.store.get(key);
    if (current && current.points >= this.settings.registerMax) return verdict(current, this.settings.registerMax);
    return verdict(await this.store.add(key, 1, this.settings.registerWindowMs), this.settings.registerMax + 1);
  }

  /**
   * The counted registration was refused for its form (weak password,
   * mismatch, bad name). A taken name is not given back: otherwise anyone
   * could probe which names exist for free.
   */
  async registrationFailed(ip: string): Promise<void> {
    await this.store.add(`register_ip:${ip}`, -1, this.settings.registerWindowMs);
  }

  /**
   * May this address try to authenticate as an API client now? Blocked after
   * `clientMax` failures in `clientWindow`, the right secret included. A
   * check-then-count (no slots in flight): a client secret has 256 bits, so
   * this bounds load and noise, not guessing odds.
   */
  async checkClient(ip: string): Promise<ThrottleVerdict> {
    return verdict(await this.store.get(`client_ip:${ip}`), this.settings.clientMax);
  }

  /** One more failed client authentication from the address. */
  async clientFailed(ip: string): Promise<void> {
    await this.store.add(`client_ip:${ip}`, 1, this.settings.clientWindowMs);
  }

  private loginBudgets(accountKey: string, ip: string): [Budget, Budget] {
    const { accountMax, accountWindowMs, ipMax, ipWindowMs } = this.settings;
    return [
      { failures: `login_account:${accountKey}`, blocks: `login_blocks:${accountKey}`, inFlight: `login_account_checks:${accountKey}`, max: accountMax, windowMs: accountWindowMs },
      { failures: `login_ip:${ip}`, inFlight: `login_ip_checks:${ip}`, max: ipMax, windowMs: ipWindowMs, keepOnSuccess: true },
    ];
  }

  /**
   * Takes a slot in every budget if failures + checks in flight leave room.
   * The slots are taken first and the failures read after: a check settling
   * as a failure counts it before it gives its slot back, so this reading can
   * only over-count (and wait), never let one check too many through.
   */
  private async tryAcquire(budgets: Budget[]): Promise<Attempt> {
    // A blocked or full budget is seen without taking a slot, so waiting attempts do not keep slot counters alive.
    const before = await this.store.getMany(budgets.flatMap((b) => [b.failures, b.inFlight]));
    const blocked = worst(budgets.map((b) => verdict(before.get(b.failures), b.max)));
    if (!blocked.allowed) return { kind: 'blocked', retryAfterSeconds: blocked.retryAfterSeconds };
    if (budgets.some((b) => points(before.get(b.failures)) + points(before.get(b.inFlight)) >= b.max)) return this.busy(budgets, before);

    const slots = await Promise.all(budgets.map((b) => this.store.slide(b.inFlight, 1, SLOT_WINDOW_MS)));
    const after = await this.store.getMany(budgets.map((b) => b.failures));
    if (budgets.every((b, i) => points(after.get(b.failures)) + slots[i]!.points <= b.max)) return { kind: 'acquired' };
    await this.release(budgets);
    const nowBlocked = worst(budgets.map((b) => verdict(after.get(b.failures), b.max)));
    return nowBlocked.allowed ? this.busy(budgets, before) : { kind: 'blocked', retryAfterSeconds: nowBlocked.retryAfterSeconds };
  }

  private busy(budgets: Budget[], counters: Map<string, { msBeforeReset: number }>): Attempt {
    const longest = Math.max(1000, ...budgets.map((b) => counters.get(b.inFlight)?.msBeforeReset ?? 0));
    return { kind: 'busy', retryAfterSeconds: Math.ceil(longest / 1000) };
  }

  private async release(budgets: Budget[]): Promise<void> {
    await Promise.all(budgets.map((b) => this.store.slide(b.inFlight, -1, SLOT_WINDOW_MS)));
  }

  /** One more failure in each budget; a budget with back-off that reaches its limit starts a (growing) block. */
  private async countFailure(budgets: Budget[]): Promise<void> {
    const counts = await Promise.all(budgets.map((b) => this.store.add(b.failures, 1, b.windowMs)));
    await Promise.all(budgets.map((b, i) => (b.blocks && counts[i]!.points === b.max ? this.startBlock(b) : undefined)));
  }

  /** Blocks the account for the window, doubled for each earlier block that day. */
  private async startBlock(account: Budget): Promise<void> {
    const blocks = await this.store.add(account.blocks!, 1, MAX_BLOCK_SECONDS * 1000);
    const base = Math.ceil(account.windowMs / 1000);
    const seconds = Math.min(base * 2 ** Math.max(0, blocks.points - 1), MAX_BLOCK_SECONDS);
    await this.store.set(account.failures, account.max, seconds * 1000);
  }
}

function points(counter: { points: number } | undefined): number {
  return counter?.points ?? 0;
}

function verdict(counter: { points: number; msBeforeReset: number } | null | undefined, max: number): ThrottleVerdict {
  if (!counter || counter.points < max) return { allowed: true };
  return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(counter.msBeforeReset / 1000)) };
}

function worst(verdicts: ThrottleVerdict[]): ThrottleVerdict {
  let retry = 0;
  for (const v of verdicts) if (!v.allowed) retry = Math.max(retry, v.retryAfterSeconds);
  return retry > 0 ? { allowed: false, retryAfterSeconds: retry } : { allowed: true };
}
