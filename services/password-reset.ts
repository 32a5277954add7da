import { createHash, randomBytes } from 'node:crypto';
import { Op } from 'sequelize';
import type { Clock } from '../clock.js';
import { DisabledUserError, UnknownUserError } from '../errors.js';
import type { PasswordResetModel } from '../models/two-factor.js';
import type { AuditLog } from './audit-log.js';
import type { Actor, RevocationService } from './revocation.js';
import type { PasswordChangeErrors, PublicUser, UserService } from './users.js';

/** How long a reset link works after `npm run users -- reset-link`. */
export const RESET_LINK_LIFETIME_MS = 30 * 60_000;

/** 256 random bits in base64url: 43 characters. Anything else is not one of ours and is not looked up. */
const TOKEN_BYTES = 32;
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;

export interface PasswordResetDeps {
  resets: PasswordResetModel;
  users: UserService;
  revocation: RevocationService;
  audit: AuditLog;
  clock: Clock;
  /** `PUBLIC_URL` (config.publicUrl): links are built from it, never from a request's Host header. */
  publicUrl: string;
}

export interface ResetLink {
  url: string;
  user: PublicUser;
  expiresAt: Date;
}

export type ResetOutcome =
  | { status: 'reset'; user: PublicUser }
  /** Unknown, used, expired, or the account is disabled or gone: one answer for all. */
  | { status: 'invalid' }
  /** The new password breaks the policy or the two differ: nothing changed, the link still works. */
  | { status: 'rejected'; username: string; errors: Pick<PasswordChangeErrors, 'newPassword' | 'confirmPassword'> };

/**
 * Account recovery without email: an administrator makes a one-time link
 * (`npm run users -- reset-link`), the user opens it and chooses a new
 * password. Only the SHA-256 of a link's token is stored. A reset uses the
 * link up (one conditional UPDATE, so of two concurrent submissions only one
 * wins), sets the password, and ends every session and token of the user; it
 * never touches two-factor authentication.
 */
export class PasswordResetService {
  constructor(private readonly deps: PasswordResetDeps) {}

  /**
   * A new link for an enabled account, valid {@link RESET_LINK_LIFETIME_MS}.
   * Throws {@link UnknownUserError} or {@link DisabledUserError}.
   *
   * @example
   * const { url } = await resets.createLink('alice', { ip: null, userAgent: 'users-cli' });
   * // https://app.example.com/auth/reset/Xq3…
   */
  async createLink(username: string, actor: Actor): Promise<ResetLink> {
    const { resets, users, audit, clock, publicUrl } = this.deps;
    const user = await users.findByUsername(username);
    if (!user) throw new UnknownUserError(username);
    if (user.disabled) throw new DisabledUserError(user.username);
    const token = randomBytes(TOKEN_BYTES).toString('base64url');
    const now = clock();
    const expiresAt = new Date(now + RESET_LINK_LIFETIME_MS);
    await resets.create({ tokenHash: hashToken(token), userId: user.id, createdAt: new Date(now), expiresAt, usedAt: null });
    await audit.record('password_reset_link_created', { ...actor, userId: user.id, username: user.username }, `expires ${expiresAt.toISOString()}`);
    return { url: `${publicUrl}/auth/reset/${token}`, user, expiresAt };
  }

  /** The account a live link is for, or null when the link is unknown, used or expired (or the account is disabled). */
  async find(token: string): Promise<{ username: string } | null> {
    const live = await this.live(token);
    return live ? { username: live.user.username } : null;
  }

  /**
   * Sets a new password through a link: the same policy as registration and
   * a password change; on success the link is used up and every session and
   * token of the user ends.
   */
  async reset(token: string, newPassword: string, confirmPassword: string, actor: Actor): Promise<ResetOutcome> {
    const live = await this.live(token);
    if (!live) return { status: 'invalid' };
    const { user, tokenHash } = live;
    const result = await this.deps.users.setPassword(user.id, newPassword, confirmPassword, () => this.claim(tokenHash, user.id));
    if (!result.ok) return result.reason === 'weak' ? { status: 'rejected', username: user.username, errors: result.errors } : { status: 'invalid' };
    await this.deps.revocation.passwordReset(result.user, actor);
    return { status: 'reset', user: result.user };
  }

  private async live(token: string): Promise<{ user: PublicUser; tokenHash: string } | null> {
    if (!TOKEN_SHAPE.test(token)) return null;
    const tokenHash = hashToken(token);
    const row = await this.deps.resets.findByPk(tokenHash);
    if (!row || row.usedAt !== null || row.expiresAt.getTime() <= this.deps.clock()) return null;
    const user = await this.deps.users.findActiveById(row.userId);
    return user ? { user, tokenHash } : null;
  }

  /**
   * Uses the link up if it is still live, in one statement: when two requests
   * race, the database lets exactly one UPDATE match. The user's other unused
   * links go with it (a new password needs no second reset).
   */
  private async claim(tokenHash: string, userId: number): Promise<boolean> {
    const now = new Date(this.deps.clock());
    const [claimed] = await this.deps.resets.update(
      { usedAt: now },
      { where: { tokenHash, userId, usedAt: null, expiresAt: { [Op.gt]: now } } },
    );
    if (claimed !== 1) return false;
    await this.deps.resets.update({ usedAt: now }, { where: { userId, usedAt: null } });
    return true;
  }
}

/** The stored form of a token: SHA-256, hex (a 256-bit random token needs no slow hash). */
function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}
