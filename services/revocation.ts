import type { ChangeFeed } from '../models/change-feed.js';
import type { AuditActor, AuditLog } from './audit-log.js';
import type { SessionService } from './sessions.js';
import type { TokenAccess } from './token-access.js';
import type { UserAdmin } from './user-admin.js';
import type { PublicUser, UserService } from './users.js';

/** Who acts, with the audit fields of the request or the command line. */
export type Actor = Omit<AuditActor, 'userId' | 'username'>;

export interface RevocationDeps {
  sessions: SessionService;
  users: UserService;
  admin: UserAdmin;
  audit: AuditLog;
  /** The verified-token answers this process caches; absent for the command line (it caches nothing). */
  tokenAccess?: TokenAccess;
  /** Tells the other instances to drop their cached answers for the user at once (PostgreSQL NOTIFY). */
  changes?: ChangeFeed;
}

/**
 * Every way a session or token stops working, each as one call that does the
 * whole sequence: record the revocation (so tokens from the session are
 * refused), move "tokens valid after" where all of a user's tokens end,
 * forget this process's cached answers, and write the audit event. Routes and
 * the users CLI call these; nothing else revokes.
 */
export class RevocationService {
  constructor(private readonly deps: RevocationDeps) {}

  /** Sign-out: tokens minted from this session die with it. The caller destroys the session itself. */
  async signedOut(user: PublicUser, sessionPublicId: string, actor: Actor): Promise<void> {
    await this.deps.sessions.recordRevoked(user.id, [sessionPublicId]);
    await this.changed(user.id);
    await this.deps.audit.record('signed_out', withUser(actor, user));
  }

  /** Ends one session of the user and its tokens; false when the user has no session with that id. */
  async endSession(user: PublicUser, sessionPublicId: string, actor: Actor): Promise<boolean> {
    if (!(await this.deps.sessions.revoke(user.id, sessionPublicId))) return false;
    await this.changed(user.id);
    await this.deps.audit.record('session_revoked', withUser(actor, user), sessionPublicId);
    return true;
  }

  /** Sign-out everywhere: every session of the user, this one included, and every earlier token. */
  async endEverywhere(user: PublicUser, actor: Actor): Promise<void> {
    await this.deps.sessions.revokeAll(user.id);
    await this.deps.users.invalidateTokens(user.id);
    await this.changed(user.id);
    await this.deps.audit.record('signed_out_everywhere', withUser(actor, user));
  }

  /**
   * After a password reset by a one-time link: every session of the user ends
   * (whoever holds them) and every earlier token is refused. Two-factor
   * authentication is left as it is.
   */
  async passwordReset(user: PublicUser, actor: Actor): Promise<void> {
    await this.deps.sessions.revokeAll(user.id);
    await this.deps.users.invalidateTokens(user.id);
    await this.changed(user.id);
    await this.deps.audit.record('password_reset', withUser(actor, user));
  }

  /**
   * After a password change (which already moved "tokens valid after"): every
   * other session ends, and tokens from the current one too (the browser goes
   * on under a new session).
   */
  async passwordChanged(user: PublicUser, keep: { sid: string; publicId: string }): Promise<void> {
    await this.deps.sessions.revokeAll(user.id, keep.sid);
    await this.deps.sessions.recordRevoked(user.id, [keep.publicId]);
    await this.changed(user.id);
  }

  /** After two-factor was turned on: every other session of the user ends (their tokens too); this one goes on. */
  async endOtherSessions(user: PublicUser, keepSid: string): Promise<void> {
    await this.deps.sessions.revokeAll(user.id, keepSid);
    await this.changed(user.id);
  }

  /**
   * Disables or enables an account by name. Disabling ends every session and
   * token (also moving "tokens valid after", so re-enabling brings none back).
   */
  async setDisabled(username: string, disabled: boolean, actor: Actor): Promise<{ user: PublicUser; changed: boolean }> {
    const outcome = await this.deps.admin.setDisabled(username, disabled);
    if (disabled) await this.deps.sessions.revokeAll(outcome.user.id);
    await this.changed(outcome.user.id);
    if (outcome.changed) await this.deps.audit.record(disabled ? 'disabled' : 'enabled', withUser(actor, outcome.user));
    return outcome;
  }

  /** This process forgets its cached answers for the user at once; every other instance hears of it through the change feed. */
  private async changed(userId: number): Promise<void> {
    this.deps.tokenAccess?.forgetUser(userId);
    await this.deps.changes?.publish({ kind: 'user', userId });
  }
}

function withUser(actor: Actor, user: PublicUser): AuditActor {
  return { ...actor, userId: user.id, username: user.username };
}
