import { LRUCache } from 'lru-cache';
import { BearerError } from '../errors.js';
import type { SessionService } from './sessions.js';
import type { AccessTokenClaims } from './tokens.js';
import type { PublicUser, UserService } from './users.js';

interface AccessEntry {
  user: PublicUser | null;
  revoked: boolean;
}

/**
 * Decides whether a correctly signed token may still be used: its user exists
 * and is enabled, its session was not ended on purpose, and it was issued
 * after the user's "tokens valid after" instant.
 *
 * Answers are cached in-process for `ttlMs` (≤ 5 s) per (user, session), so a
 * revocation made on another instance is honoured within `ttlMs`; revocations
 * made here are honoured at once via {@link forgetUser}.
 */
export class TokenAccess {
  private readonly cache: LRUCache<string, AccessEntry> | null;

  constructor(
    private readonly users: UserService,
    private readonly sessions: SessionService,
    ttlMs: number,
    now: () => number = Date.now,
  ) {
    this.cache = ttlMs > 0 ? new LRUCache({ max: 50_000, ttl: ttlMs, perf: { now } }) : null;
  }

  /** The token's user, or a BearerError (invalid_token). */
  async check(claims: AccessTokenClaims): Promise<PublicUser> {
    const key = `${claims.sub}:${claims.sid}`;
    let entry = this.cache?.get(key);
    if (!entry) {
      const [user, revoked] = await Promise.all([
        this.users.findActiveById(Number(claims.sub)),
        this.sessions.isRevoked(claims.sid),
      ]);
      entry = { user, revoked };
      this.cache?.set(key, entry);
    }
    if (!entry.user) throw BearerError.invalid('The token user is unknown or disabled');
    if (entry.revoked) throw BearerError.invalid('The session this token came from has ended');
    const validAfter = entry.user.tokensValidAfter;
    if (validAfter && claims.iat < Math.floor(validAfter.getTime() / 1000)) {
      throw BearerError.invalid('The token has been revoked');
    }
    return entry.user;
  }

  /** Drops cached answers about one user (after a revocation on this instance). */
  forgetUser(userId: number): void {
    if (!this.cache) return;
    const prefix = `${userId}:`;
    for (const key of this.cache.keys()) if (key.startsWith(prefix)) this.cache.delete(key);
  }
}
