import type { Clock } from '../clock.js';
import type { AuditLog } from './audit-log.js';
import type { Actor, RevocationService } from './revocation.js';
import type { Throttle } from './throttle.js';
import { PASSWORD_ONLY, type AuthMethod } from './tokens.js';
import type { TwoFactorService } from './two-factor.js';
import type { Ceremony, PasskeyService } from './passkeys.js';
import type { AuthenticationResponseJSON } from '@simplewebauthn/server';
import {
  usernameKey,
  type FieldErrors,
  type PasswordChangeErrors,
  type PublicUser,
  type UserService,
} from './users.js';

/** Puts the signed-in user into a new session (the HTTP side: a new session id, its metadata with `amr`, saved). */
export type StartSession = (user: PublicUser, amr: readonly AuthMethod[]) => Promise<void>;

/** A password and a one-time code (TOTP or a recovery code): RFC 8176's `otp` and `mfa`. */
export const PASSWORD_AND_CODE: readonly AuthMethod[] = Object.freeze(['pwd', 'otp', 'mfa']);

/** How long a correct password waits for its second factor. */
export const SECOND_STEP_MS = 5 * 60_000;

export type SignInOutcome =
  /** `mustEnrol`: the user holds a role of REQUIRE_2FA_ROLES and has no second factor yet. */
  | { status: 'signed_in'; user: PublicUser; mustEnrol: boolean }
  /** The password was right and two-factor is on: nothing is signed in until the second step. */
  | { status: 'second_factor'; user: PublicUser }
  | { status: 'invalid' }
  | { status: 'throttled'; retryAfterSeconds: number };

/** A second step: the user's TOTP code, or one of their recovery codes. */
export type SecondFactor = { code: string } | { recoveryCode: string };

export type SecondStepOutcome =
  | { status: 'signed_in'; user: PublicUser }
  /** The password was checked too long ago (or the account is gone or disabled since): sign in again. */
  | { status: 'expired' }
  | { status: 'invalid' }
  | { status: 'throttled'; retryAfterSeconds: number };

export type TwoFactorChangeErrors = Partial<Record<'currentPassword' | 'code', string>>;

export type TwoFactorChangeOutcome<T> =
  | { status: 'done'; result: T }
  | { status: 'invalid'; errors: TwoFactorChangeErrors }
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
  twoFactor: TwoFactorService;
  passkeys: PasskeyService;
  /** REQUIRE_2FA_ROLES. */
  requireTwoFactorRoles: readonly string[];
  clock: Clock;
}

const WRONG_PASSWORD = 'That is not your current password.';
const WRONG_CODE = 'That code is not right. Enter the 6 digits your app shows now.';

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
    if (await this.deps.twoFactor.isEnabled(user.id)) {
      await audit.record('second_factor_pending', withUser(actor, user));
      return { status: 'second_factor', user };
    }
    await input.startSession(user, PASSWORD_ONLY);
    await audit.record('signed_in', withUser(actor, user));
    return { status: 'signed_in', user, mustEnrol: this.mustUseTwoFactor(user) };
  }

  /**
   * The second step after a correct password (`pending`, from the session):
   * within {@link SECOND_STEP_MS}, one code or recovery code under the
   * account's second-factor limit. Success starts a new session whose tokens
   * say `["pwd","otp","mfa"]`.
   */
  async withSecondFactor(input: { pending: { userId: number; at: number }; factor: SecondFactor; actor: Actor; startSession: StartSession }): Promise<SecondStepOutcome> {
    const { users, throttle, audit, clock } = this.deps;
    const { pending, factor, actor } = input;
    if (clock() - pending.at > SECOND_STEP_MS) return { status: 'expired' };
    const user = await users.findActiveById(pending.userId);
    if (!user) return { status: 'expired' };
    const guarded = await throttle.guardSecondFactor(user.id, () => this.checkFactor(user.id, factor), (ok) => !ok);
    if (!guarded.allowed) {
      await audit.record('throttled', withUser(actor, user), 'second factor');
      return { status: 'throttled', retryAfterSeconds: guarded.retryAfterSeconds };
    }
    if (!guarded.result) {
      await audit.record('second_factor_failed', withUser(actor, user), 'code' in factor ? 'authenticator code' : 'recovery code');
      return { status: 'invalid' };
    }
    await input.startSession(user, PASSWORD_AND_CODE);
    if ('recoveryCode' in factor) await audit.record('recovery_code_used', withUser(actor, user));
    await audit.record('signed_in', withUser(actor, user), 'code' in factor ? 'password + authenticator code' : 'password + recovery code');
    return { status: 'signed_in', user };
  }

  /**
   * Turns two-factor on with a code from the pending set-up and the current
   * password (both counted like sign-in attempts). Every other session of the
   * user ends (one signed in by whoever knew only the password is cut off);
   * this one goes on. Returns the first recovery codes, shown once.
   */
  async enableTwoFactor(input: { user: PublicUser; currentPassword: string; code: string; keepSid: string; actor: Actor }): Promise<TwoFactorChangeOutcome<string[]>> {
    const { user, actor } = input;
    return this.withPasswordAndCode(user, input.currentPassword, actor, async () => {
      const guarded = await this.deps.throttle.guardSecondFactor(user.id, () => this.deps.twoFactor.enable(user.id, input.code), (codes) => !codes);
      if (!guarded.allowed) return guarded;
      if (!guarded.result) return { allowed: true, result: null };
      await this.deps.revocation.endOtherSessions(user, input.keepSid);
      await this.deps.audit.record('two_factor_enabled', withUser(actor, user));
      return { allowed: true, result: guarded.result };
    });
  }

  /** Turns two-factor off: the current password and a code or recovery code. */
  async disableTwoFactor(input: { user: PublicUser; currentPassword: string; factor: SecondFactor; actor: Actor }): Promise<TwoFactorChangeOutcome<true>> {
    const { user, actor, factor } = input;
    const { twoFactor } = this.deps;
    return this.withPasswordAndCode(user, input.currentPassword, actor, async () => {
      const guarded = await this.deps.throttle.guardSecondFactor(user.id, () => this.checkFactor(user.id, factor), (ok) => !ok);
      if (!guarded.allowed) return guarded;
      if (!guarded.result) return { allowed: true, result: null };
      await twoFactor.disable(user.id);
      await this.deps.audit.record('two_factor_disabled', withUser(actor, user));
      return { allowed: true, result: true as const };
    });
  }

  /** A new set of recovery codes (the old set stops working), confirmed by the current password. */
  async regenerateRecoveryCodes(input: { user: PublicUser; currentPassword: string; actor: Actor }): Promise<TwoFactorChangeOutcome<string[]>> {
    const { user, actor } = input;
    return this.withPasswordAndCode(user, input.currentPassword, actor, async () => {
      if (!(await this.deps.twoFactor.isEnabled(user.id))) return { allowed: true, result: null };
      const codes = await this.deps.twoFactor.newRecoveryCodes(user.id);
      await this.deps.audit.record('recovery_codes_regenerated', withUser(actor, user));
      return { allowed: true, result: codes };
    });
  }

  /**
   * A passkey sign-in (no username: the credential names its user), or — with
   * `pending` — the second step of a password sign-in by one of that user's
   * passkeys. Failures count against the address like password failures; a
   * signature counter that went back is refused and audited as a possible
   * cloned authenticator. Success starts a new session with the methods used.
   */
  async withPasskey(input: {
    response: AuthenticationResponseJSON;
    ceremony: Ceremony;
    pending?: { userId: number; at: number };
    actor: Actor;
    startSession: StartSession;
  }): Promise<SecondStepOutcome> {
    const { users, throttle, audit, passkeys, clock } = this.deps;
    const { pending, actor } = input;
    if (pending && clock() - pending.at > SECOND_STEP_MS) return { status: 'expired' };
    const guarded = await throttle.guardPasskey(actor.ip ?? 'unknown', () => passkeys.authenticate(input.response, input.ceremony, pending?.userId), (r) => !r.ok);
    if (!guarded.allowed) {
      await audit.record('throttled', actor, 'passkey');
      return { status: 'throttled', retryAfterSeconds: guarded.retryAfterSeconds };
    }
    const check = guarded.result;
    if (!check.ok) {
      const owner = check.reason === 'counter' || check.reason === 'other_user' ? await passkeys.ownerOf(input.response.id) : null;
      await audit.record(check.reason === 'counter' ? 'passkey_counter_regression' : 'passkey_failed', { ...actor, userId: owner }, check.reason);
      return { status: 'invalid' };
    }
    const user = await users.findActiveById(check.userId);
    if (!user) {
      await audit.record('passkey_failed', { ...actor, userId: check.userId }, 'disabled account');
      return { status: 'invalid' };
    }
    const amr: AuthMethod[] = pending ? ['pwd', ...check.amr.filter((m) => m !== 'mfa'), 'mfa'] : check.amr;
    await input.startSession(user, amr);
    await audit.record('signed_in', withUser(actor, user), pending ? 'password + passkey' : 'passkey');
    return { status: 'signed_in', user };
  }

  /**
   * The current password of a signed-in user, counted like a sign-in attempt
   * (for adding a passkey when the sign-in is older than 5 minutes).
   */
  async confirmPassword(user: PublicUser, currentPassword: string, actor: Actor): Promise<{ ok: boolean } | { throttled: number }> {
    const guarded = await this.deps.throttle.guardPasswordCheck(usernameKey(user.username), actor.ip ?? 'unknown', () => this.deps.users.authenticate(user.username, currentPassword), (ok) => !ok);
    if (!guarded.allowed) {
      await this.deps.audit.record('throttled', withUser(actor, user), 'passkey');
      return { throttled: guarded.retryAfterSeconds };
    }
    return { ok: Boolean(guarded.result) };
  }

  /** A TOTP code (accepted once) or a recovery code (spent). */
  private checkFactor(userId: number, factor: SecondFactor): Promise<boolean> {
    const { twoFactor } = this.deps;
    return 'code' in factor ? twoFactor.checkCode(userId, factor.code) : twoFactor.useRecoveryCode(userId, factor.recoveryCode);
  }

  /** Whether the user holds a role of REQUIRE_2FA_ROLES (and so must sign in with a second factor). */
  mustUseTwoFactor(user: PublicUser): boolean {
    return user.roles.some((role) => this.deps.requireTwoFactorRoles.includes(role));
  }

  /**
   * The current password, counted like a sign-in attempt (a stolen session
   * is no free guessing oracle), then `next`: its null result is a wrong code.
   */
  private async withPasswordAndCode<T>(
    user: PublicUser,
    currentPassword: string,
    actor: Actor,
    next: () => Promise<{ allowed: true; result: T | null } | { allowed: false; retryAfterSeconds: number }>,
  ): Promise<TwoFactorChangeOutcome<T>> {
    const { users, throttle, audit } = this.deps;
    const password = await throttle.guardPasswordCheck(usernameKey(user.username), actor.ip ?? 'unknown', () => users.authenticate(user.username, currentPassword), (ok) => !ok);
    if (!password.allowed) {
      await audit.record('throttled', withUser(actor, user), 'two-factor settings');
      return { status: 'throttled', retryAfterSeconds: password.retryAfterSeconds };
    }
    if (!password.result) return { status: 'invalid', errors: { currentPassword: WRONG_PASSWORD } };
    const outcome = await next();
    if (!outcome.allowed) {
      await audit.record('throttled', withUser(actor, user), 'second factor');
      return { status: 'throttled', retryAfterSeconds: outcome.retryAfterSeconds };
    }
    if (outcome.result === null) {
      await audit.record('second_factor_failed', withUser(actor, user), 'two-factor settings');
      return { status: 'invalid', errors: { code: WRONG_CODE } };
    }
    return { status: 'done', result: outcome.result };
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
    await input.startSession(result.user, PASSWORD_ONLY);
    await audit.record('registered', withUser(input.actor, result.user));
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
    session: { sid: string; publicId: string; amr: readonly AuthMethod[] };
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
      await audit.record('throttled', withUser(actor, user), 'password change');
      return { status: 'throttled', retryAfterSeconds: guarded.retryAfterSeconds };
    }
    const result = guarded.result;
    if (!result.ok) return { status: 'invalid', errors: result.errors };
    await revocation.passwordChanged(result.user, input.session);
    // The same person in the same browser: the new session keeps how they signed in.
    await input.startSession(result.user, input.session.amr);
    await audit.record('password_changed', withUser(actor, result.user));
    return { status: 'changed', user: result.user };
  }

  /** The actor with the account the typed name belongs to; the typed name itself is never recorded (people type passwords into the name field). */
  private async knownActor(actor: Actor, username: string) {
    const known = await this.deps.users.findByUsername(username);
    return { ...actor, userId: known?.id ?? null, username: known?.username ?? null };
  }
}

function withUser(actor: Actor, user: PublicUser) {
  return { ...actor, userId: user.id, username: user.username };
}
