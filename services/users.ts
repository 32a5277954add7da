import { LRUCache } from 'lru-cache';
import { UniqueConstraintError } from 'sequelize';
import type { Clock } from '../clock.js';
import type { UserModel, UserRow } from '../models/user.js';
import { hashPassword, needsRehash, passwordProblem, verifyAgainstDummy, verifyPassword } from './passwords.js';

/** The user as the rest of the app sees it: never the password hash. */
export interface PublicUser {
  id: number;
  username: string;
  roles: string[];
  disabled: boolean;
  createdAt: Date;
  tokensValidAfter: Date | null;
}

export const USERNAME_MIN_LENGTH = 3;
export const USERNAME_MAX_LENGTH = 64;

export type FieldErrors = Partial<Record<'username' | 'password' | 'confirmPassword', string>>;

export type PasswordChangeErrors = Partial<Record<'currentPassword' | 'newPassword' | 'confirmPassword', string>>;

export type PasswordChangeResult = { ok: true; user: PublicUser } | { ok: false; errors: PasswordChangeErrors };

/** {@link UserService.setPassword}: `weak` breaks the policy; `refused` means nothing was stored (no such active user, or the claim failed). */
export type PasswordSetResult =
  | { ok: true; user: PublicUser }
  | { ok: false; reason: 'weak'; errors: Pick<PasswordChangeErrors, 'newPassword' | 'confirmPassword'> }
  | { ok: false; reason: 'refused' };

export type RegistrationResult =
  | { ok: true; user: PublicUser }
  | { ok: false; errors: FieldErrors; taken?: boolean };

/** The display form of a username: NFKC-normalised and trimmed. */
export function normalizeUsername(raw: string): string {
  return raw.normalize('NFKC').trim();
}

/**
 * Token `iat` has one-second resolution, so "tokens valid after" instants are
 * rounded down to the second: tokens minted later in that second stay valid
 * (earlier ones in the same second are caught by their revoked session).
 */
export function wholeSecond(ms: number): Date {
  return new Date(Math.floor(ms / 1000) * 1000);
}

/** The case-insensitive unique key of a username. */
export function usernameKey(username: string): string {
  return normalizeUsername(username).toLowerCase();
}

function usernameProblem(username: string): string | null {
  const length = [...username].length;
  if (length < USERNAME_MIN_LENGTH || length > USERNAME_MAX_LENGTH) {
    return `Use ${USERNAME_MIN_LENGTH} to ${USERNAME_MAX_LENGTH} characters.`;
  }
  // Control, format and unassigned characters make names that look alike but differ.
  if (/[\p{C}]/u.test(username)) return 'Use visible characters only.';
  // Lower-casing can lengthen a name (U+0130 becomes two code points); the key column holds 64.
  if ([...usernameKey(username)].length > USERNAME_MAX_LENGTH) return `Use ${USERNAME_MIN_LENGTH} to ${USERNAME_MAX_LENGTH} characters.`;
  return null;
}

/** The policy for a new password (change or reset) and the repeat check, as field errors (empty when fine). */
function newPasswordErrors(username: string, newPassword: string, confirmPassword: string): Pick<PasswordChangeErrors, 'newPassword' | 'confirmPassword'> {
  const errors: Pick<PasswordChangeErrors, 'newPassword' | 'confirmPassword'> = {};
  const problem = passwordProblem(newPassword, username);
  if (problem) errors.newPassword = problem;
  if (newPassword !== confirmPassword) errors.confirmPassword = 'The two passwords do not match.';
  return errors;
}

export function toPublicUser(row: UserRow): PublicUser {
  return {
    id: row.id,
    username: row.username,
    roles: Array.isArray(row.roles) ? [...row.roles] : [],
    disabled: Boolean(row.disabled),
    createdAt: row.createdAt,
    tokensValidAfter: row.tokensValidAfter ?? null,
  };
}

/** User accounts: registration, credential checks and look-ups. */
export class UserService {
  private readonly activeCache: LRUCache<number, { user: PublicUser | null }> | null;

  /**
   * @param options.cacheTtlMs when > 0, {@link findActiveById} answers from an
   *   in-process cache this long (the revocation bound across instances).
   */
  constructor(
    private readonly users: UserModel,
    private readonly now: Clock,
    options: { cacheTtlMs?: number } = {},
  ) {
    const ttl = options.cacheTtlMs ?? 0;
    this.activeCache = ttl > 0 ? new LRUCache({ max: 50_000, ttl, ttlResolution: 0, perf: { now } }) : null;
  }

  /**
   * Validates and creates an account. A taken name or a weak password is a
   * result with field errors, not an exception.
   */
  async register(rawUsername: string, password: string, confirmPassword: string): Promise<RegistrationResult> {
    const username = normalizeUsername(rawUsername);
    const errors: FieldErrors = {};
    const nameProblem = usernameProblem(username);
    if (nameProblem) errors.username = nameProblem;
    const pwProblem = passwordProblem(password, username);
    if (pwProblem) errors.password = pwProblem;
    if (password !== confirmPassword) errors.confirmPassword = 'The two passwords do not match.';
    if (Object.keys(errors).length > 0) return { ok: false, errors };

    const key = usernameKey(username);
    if (await this.users.findOne({ where: { usernameKey: key }, attributes: ['id'] })) {
      return this.taken();
    }
    const passwordHash = await hashPassword(password);
    try {
      const row = await this.users.create({ username, usernameKey: key, passwordHash, roles: [] });
      return { ok: true, user: toPublicUser(row) };
    } catch (err) {
      // Two registrations of one name raced past the look-up: the unique index decides.
      if (err instanceof UniqueConstraintError) return this.taken();
      throw err;
    }
  }

  private taken(): RegistrationResult {
    return { ok: false, taken: true, errors: { username: 'This username is taken.' } };
  }

  /**
   * Returns the active user whose password matches, or null. Unknown names
   * cost the same hashing work as wrong passwords.
   */
  async authenticate(rawUsername: string, password: string): Promise<PublicUser | null> {
    const row = await this.users.findOne({ where: { usernameKey: usernameKey(rawUsername) } });
    if (!row) return verifyAgainstDummy(password).then(() => null);
    const ok = await verifyPassword(row.passwordHash, password);
    if (!ok || row.disabled) return null;
    // The only moment the plain password is at hand: upgrade hashes made with weaker parameters.
    if (needsRehash(row.passwordHash)) {
      row.passwordHash = await hashPassword(password);
      await row.save();
    }
    return toPublicUser(row);
  }

  /**
   * Changes a password after checking the current one. On success every
   * token issued before now is invalid ("tokens valid after" moves to now);
   * a wrong current password changes nothing.
   */
  async changePassword(id: number, currentPassword: string, newPassword: string, confirmPassword: string): Promise<PasswordChangeResult> {
    const row = await this.users.findByPk(id);
    if (!row || row.disabled) return { ok: false, errors: { currentPassword: 'Your current password is not correct.' } };
    if (!currentPassword || !(await verifyPassword(row.passwordHash, currentPassword))) {
      return { ok: false, errors: { currentPassword: 'Your current password is not correct.' } };
    }
    const errors: PasswordChangeErrors = newPasswordErrors(row.username, newPassword, confirmPassword);
    if (!errors.newPassword && newPassword === currentPassword) errors.newPassword = 'Choose a password different from the current one.';
    if (Object.keys(errors).length > 0) return { ok: false, errors };

    row.passwordHash = await hashPassword(newPassword);
    row.tokensValidAfter = wholeSecond(this.now());
    await row.save();
    this.forget(id);
    return { ok: true, user: toPublicUser(row) };
  }

  /**
   * Sets a new password without asking for the current one (a password-reset
   * link vouched for the user), under the same policy as a change. Once the
   * password passes and is hashed, `claim` is called: only when it answers
   * true (e.g. it used up a single-use link) is the hash stored, with "tokens
   * valid after" moved to now as in {@link changePassword}.
   */
  async setPassword(id: number, newPassword: string, confirmPassword: string, claim: () => Promise<boolean>): Promise<PasswordSetResult> {
    const row = await this.users.findByPk(id);
    if (!row || row.disabled) return { ok: false, reason: 'refused' };
    const errors = newPasswordErrors(row.username, newPassword, confirmPassword);
    if (Object.keys(errors).length > 0) return { ok: false, reason: 'weak', errors };
    const passwordHash = await hashPassword(newPassword);
    if (!(await claim())) return { ok: false, reason: 'refused' };
    row.passwordHash = passwordHash;
    row.tokensValidAfter = wholeSecond(this.now());
    await row.save();
    this.forget(id);
    return { ok: true, user: toPublicUser(row) };
  }

  /** Ends every earlier token of the user (sign-out everywhere). */
  async invalidateTokens(id: number): Promise<void> {
    await this.users.update({ tokensValidAfter: wholeSecond(this.now()) }, { where: { id } });
    this.forget(id);
  }

  /** The account with this (case-insensitive) name, disabled or not, or null. */
  async findByUsername(rawUsername: string): Promise<PublicUser | null> {
    if (!rawUsername) return null;
    const row = await this.users.findOne({ where: { usernameKey: usernameKey(rawUsername) } });
    return row ? toPublicUser(row) : null;
  }

  /** The user with this id when it exists and is not disabled (possibly cached, see the constructor). */
  async findActiveById(id: number): Promise<PublicUser | null> {
    if (!Number.isSafeInteger(id) || id <= 0) return null;
    const cached = this.activeCache?.get(id);
    if (cached) return cached.user;
    const row = await this.users.findByPk(id);
    const user = row && !row.disabled ? toPublicUser(row) : null;
    this.activeCache?.set(id, { user });
    return user;
  }

  /** The cached answer of {@link findActiveById}: a user, null (gone or disabled), or undefined when not cached. */
  cachedActive(id: number): PublicUser | null | undefined {
    return this.activeCache?.get(id)?.user;
  }

  /** Drops the cached state of one user (after a change made by this process). */
  forget(id: number): void {
    this.activeCache?.delete(id);
  }

  /** Drops every cached user. */
  forgetAll(): void {
    this.activeCache?.clear();
  }
}
