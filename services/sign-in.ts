import type { AuditLog } from './audit-log.js';
import type { Actor, RevocationService } from './revocation.js';
import type { Throttle } from './throttle.js';
import {
  usernameKey,
  type FieldErrors,
  type PasswordChangeErrors,
  type PublicUser,
  type UserService,
} from './users.js';

/** Puts the signed-in user into a new session (the HTTP side: a new session id, its metadata, saved). */
export type StartSession = (user: PublicUser) => Promise<void>;

export type SignInOutcome =
  | { status: 'signed_in'; user: PublicUser }
  | { status: 'invalid' }
  | { status: 'throttled'; retryAfterSeconds: number };

export type RegistrationOutcome =
  | { status: 'registered'; user: PublicUser }
  | { status: 'invalid'; taken: boolean; errors: FieldErrors }
  | { status: 'throttled'; retryAfterSeconds: number };

export type PasswordChangeOutcome =
  | { status: 'changed'; user: PublicUser }
  | { status: 'invalid'; errors: PasswordChangeErrors }
  | { status: 'throttled'; retryAfterSeconds: number };

export interface SignInDeps {
  users: UserService;
  throttle: Throttle;
  audit: AuditLog;
  revocation: RevocationService;
}

/**
 * The sequences that let someone in, each in one call: throttle → check the
 * password → count the outcome → start the session → audit. A second factor
 * or a new sign-in method is added here, not in the routes.
 */
export class SignInService {
  constructor(private readonly deps: SignInDeps) {}

  /**
   * A password sign-in. `verify` checks the credentials (the route passes
   * Passport's local strategy); only a failed check counts towards a block.
   */
  async withPassword(input: {
    username: string;
    actor: Actor;
    verify: () => Promise<PublicUser | false>;
    startSession: StartSession;
  }): Promise<SignInOutcome> {
    const { throttle, audit } = this.deps;
    const { username, actor } = input;
    const guarded = await throttle.guardPasswordCheck(usernameKey(username), actor.ip ?? 'unknown', input.verify, (user) => !user);
    if (!guarded.allowed) {
      await audit.record('throttled', await this.knownActor(actor, username), 'sign-in');
      return { status: 'throttled', retryAfterSeconds: guarded.retryAfterSeconds };
    }
    const user = guarded.result;
    if (!user) {
      const known = await this.knownActor(actor, username);
      await audit.record('sign_in_failed', known, known.userId === null ? 'unknown account' : null);
      return { status: 'invalid' };
    }
    await input.startSession(user);
    await audit.record('signed_in', { ...actor, userId: user.id, username: user.username });
    return { status: 'signed_in', user };
  }

  /** A new account from the form, signed in at once. Counted per address before the account exists. */
  async register(input: {
    username: string;
    password: string;
    confirmPassword: string;
    actor: Actor;
    startSession: StartSession;
  }): Promise<RegistrationOutcome> {
    const { users, throttle, audit } = this.deps;
    const ip = input.actor.ip ?? 'unknown';
    const verdict = await throttle.beginRegistration(ip);
    if (!verdict.allowed) {
      await audit.record('throttled', input.actor, 'registration');
      return { status: 'throttled', retryAfterSeconds: verdict.retryAfterSeconds };
    }
    const result = await users.register(input.username, input.password, input.confirmPassword);
    if (!result.ok) {
      const taken = result.taken === true;
      // A taken name keeps its count: giving it back would make probing for names free.
      if (!taken) await throttle.registrationFailed(ip);
      return { status: 'invalid', taken, errors: result.errors };
    }
    await input.startSession(result.user);
    await audit.record('registered', { ...input.actor, userId: result.user.id, username: result.user.username });
    return { status: 'registered', user: result.user };
  }

  /**
   * A password change by the signed-in user. The current password is counted
   * exactly like a sign-in attempt on the account (a stolen session is no
   * free guessing oracle). Success ends every other session and every earlier
   * token; this browser goes on under a new session.
   */
  async changePassword(input: {
    user: PublicUser;
    currentPassword: string;
    newPassword: string;
    confirmPassword: string;
    session: { sid: string; publicId: string };
    actor: Actor;
    startSession: StartSession;
  }): Promise<PasswordChangeOutcome> {
    const { users, throttle, audit, revocation } = this.deps;
    const { user, actor } = input;
    const guarded = await throttle.guardPasswordCheck(
      usernameKey(user.username),
      actor.ip ?? 'unknown',
      () => users.changePassword(user.id, input.currentPassword, input.newPassword, input.confirmPassword),
      (result) => !result.ok && Boolean(result.errors.currentPassword),
    );
    if (!guarded.allowed) {
      await audit.record('throttled', { ...actor, userId: user.id, username: user.username }, 'password change');
      return { status: 'throttled', retryAfterSeconds: guarded.retryAfterSeconds };
    }
    const result = guarded.result;
    if (!result.ok) return { status: 'invalid', errors: result.errors };
    await revocation.passwordChanged(result.user, input.session);
    await input.startSession(result.user);
    await audit.record('password_changed', { ...actor, userId: result.user.id, username: result.user.username });
    return { status: 'changed', user: result.user };
  }

  /** The actor with the account the typed name belongs to; the typed name itself is never recorded (people type passwords into the name field). */
  private async knownActor(actor: Actor, username: string) {
    const known = await this.deps.users.findByUsername(username);
    return { ...actor, userId: known?.id ?? null, username: known?.username ?? null };
  }
}
