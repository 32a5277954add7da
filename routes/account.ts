import { Router, type NextFunction, type Request, type Response } from 'express';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import { NotFoundError } from '../errors.js';
import type { Csrf } from '../middleware/csrf.js';
import { destroySession, saveSession, signIn as startSession } from '../middleware/session.js';
import type { AuditLog } from '../services/audit-log.js';
import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from '../services/passwords.js';
import type { RevocationService } from '../services/revocation.js';
import type { SessionService } from '../services/sessions.js';
import type { SignInService } from '../services/sign-in.js';
import { PASSWORD_ONLY } from '../services/tokens.js';
import type { TwoFactorService } from '../services/two-factor.js';
import { RECENT_SIGN_IN_MS, type PasskeyService } from '../services/passkeys.js';
import type { PasswordChangeErrors } from '../services/users.js';
import { requestActor } from './audit-actor.js';
import { textField } from './form.js';
import { requireSignedInPage } from './pages.js';
import { displayAddress, sessionView } from './session-view.js';

export interface AccountRouteDeps {
  config: Config;
  sessions: SessionService;
  audit: AuditLog;
  csrf: Csrf;
  signIn: SignInService;
  revocation: RevocationService;
  twoFactor: TwoFactorService;
  passkeys: PasskeyService;
  clock: Clock;
}

/** The signed-in user's account: password, sessions, recent activity. */
export function accountRoutes(deps: AccountRouteDeps): Router {
  const { config, sessions, audit, csrf, signIn, revocation, twoFactor, passkeys, clock } = deps;
  const router = Router();

  router.get('/account', requireSignedInPage, showAccount);
  router.post('/account/password', csrf.protect, requireSignedInForm, changePassword);
  router.post('/account/sessions/:id/revoke', csrf.protect, requireSignedInForm, revokeSession);

  async function showAccount(req: Request, res: Response) {
    const flash = req.session.flash ?? null;
    if (flash) delete req.session.flash;
    await renderAccount(req, res, 200, { flash, errors: {} });
  }

  async function renderAccount(req: Request, res: Response, status: number, view: { flash: string | null; errors: PasswordChangeErrors }) {
    const user = req.user!;
    const [list, activity, twoFactorState, keys] = await Promise.all([
      sessions.listForUser(user.id, config.session),
      audit.recentForUser(user.id, 20),
      twoFactor.status(user.id),
      passkeys.list(user.id),
    ]);
    res.status(status).render('account', {
      title: 'Your account',
      flash: view.flash,
      errors: view.errors,
      errorList: Object.values(view.errors),
      sessions: list.map(sessionView),
      currentSessionId: req.session.meta!.id,
      activity: activity.map((entry) => ({ ...entry, ip: displayAddress(entry.ip) })),
      passwordMin: PASSWORD_MIN_LENGTH,
      passwordMax: PASSWORD_MAX_LENGTH,
      twoFactor: twoFactorState,
      passkeys: keys,
      // Adding a passkey needs the password unless the sign-in is recent (routes/passkeys.ts).
      passkeyNeedsPassword: clock() - req.session.meta!.createdAt > RECENT_SIGN_IN_MS,
    });
  }

  async function changePassword(req: Request, res: Response) {
    const outcome = await signIn.changePassword({
      user: req.user!,
      currentPassword: textField(req.body, 'currentPassword'),
      newPassword: textField(req.body, 'newPassword'),
      confirmPassword: textField(req.body, 'confirmPassword'),
      session: { sid: req.sessionID, publicId: req.session.meta!.id, amr: req.session.meta!.amr ?? PASSWORD_ONLY },
      actor: requestActor(req),
      startSession: (user, amr) => startSession(req, user, clock, amr),
    });
    if (outcome.status === 'throttled') {
      res.set('Retry-After', String(outcome.retryAfterSeconds));
      return renderAccount(req, res, 429, { flash: null, errors: { currentPassword: 'Too many wrong passwords: try again later.' } });
    }
    if (outcome.status === 'invalid') return renderAccount(req, res, 400, { flash: null, errors: outcome.errors });
    req.session.flash = 'Your password was changed. Other sessions and earlier tokens no longer work.';
    await saveSession(req);
    res.redirect(303, '/account');
  }

  async function revokeSession(req: Request, res: Response) {
    const publicId = String(req.params.id);
    const isCurrent = publicId === req.session.meta!.id;
    if (!(await revocation.endSession(req.user!, publicId, requestActor(req)))) throw new NotFoundError('You have no session with that id.');
    if (isCurrent) {
      await destroySession(req, res, config.session);
      return res.redirect(303, '/');
    }
    req.session.flash = 'The session was ended.';
    await saveSession(req);
    res.redirect(303, '/account');
  }

  return router;
}

/** Form posts from a signed-out browser go to the sign-in page, then back to the account page. */
export function requireSignedInForm(req: Request, res: Response, next: NextFunction): void {
  if (req.user && req.session?.meta) return next();
  res.redirect(303, '/auth/login?returnTo=%2Faccount');
}
