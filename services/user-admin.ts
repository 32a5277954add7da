import type { Clock } from '../clock.js';
import { InvalidRoleError, UnknownUserError } from '../errors.js';
import type { UserModel } from '../models/user.js';
import { toPublicUser, usernameKey, wholeSecond, type PublicUser } from './users.js';

/** Role names: lower-case words, e.g. `admin`, `billing-read`. */
export const ROLE_PATTERN = /^[a-z][a-z0-9_-]{0,31}$/;

/** Operator actions on accounts: listing, enabling and disabling, roles. */
export class UserAdmin {
  constructor(
    private readonly users: UserModel,
    private readonly now: Clock,
  ) {}

  async list(): Promise<PublicUser[]> {
    const rows = await this.users.findAll({ order: [['id', 'ASC']] });
    return rows.map(toPublicUser);
  }

  /**
   * Disables or enables an account. Disabling also moves "tokens valid
   * after" to now, so every earlier token is refused even if re-enabled later.
   * Returns the user and whether anything changed.
   */
  async setDisabled(username: string, disabled: boolean): Promise<{ user: PublicUser; changed: boolean }> {
    const row = await this.find(username);
    const changed = Boolean(row.disabled) !== disabled;
    if (changed) {
      row.disabled = disabled;
      if (disabled) row.tokensValidAfter = wholeSecond(this.now());
      await row.save();
    }
    return { user: toPublicUser(row), changed };
  }

  /** Adds or removes a role; returns the user and whether anything changed. */
  async setRole(username: string, role: string, present: boolean): Promise<{ user: PublicUser; changed: boolean }> {
    if (!ROLE_PATTERN.test(role)) throw new InvalidRoleError(role);
    const row = await this.find(username);
    const roles = new Set(Array.isArray(row.roles) ? row.roles : []);
    const changed = roles.has(role) !== present;
    if (changed) {
      if (present) roles.add(role);
      else roles.delete(role);
      row.roles = [...roles].sort();
      await row.save();
    }
    return { user: toPublicUser(row), changed };
  }

  private async find(username: string) {
    const row = await this.users.findOne({ where: { usernameKey: usernameKey(username) } });
    if (!row) throw new UnknownUserError(username);
    return row;
  }
}
