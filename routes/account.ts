import { Router, type NextFunction, type Request, type Response } from 'express';
import { NotFoundError } from '../errors.js';
import type { Csrf } from '../middleware/csrf.js';
import { destroySession, saveSession, signIn } from '../middleware/session.js';
import type { Config } from '../config.js';
import type { AuditLog } from '../services/audit-log.js';
import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from '../services/passwords.js';
import type { SessionService } from '../services/sessions.js';
import type { Throttle } from '../services/throttle.js';
import type { TokenAccess } from '../services/token-access.js';
import { usernameKey, type PasswordChangeErrors, type UserService } from '../services/users.js';
import { textField } from './form.js';
import { requireSignedInPage } from './pages.js';
import { auditActor, clientAddress } from './audit-actor.js';

export interface AccountRouteDeps {
  config: Config;
  users: UserService;
  sessions: SessionService;
  tokenAccess: TokenAccess;
  audit: AuditLog;
  csrf: Csrf;
  throttle: Throttle;
}

/** The signed-in user's account: password, sessions, recent activity. */
export function accountRoutes(deps: AccountRouteDeps): Router {
  const { config, users, sessions, tokenAccess, audit, csrf, throttle } = deps;
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
    const [list, activity] = await Promise.all([sessions.listForUser(user.id, config.session), audit.recentForUser(user.id, 20)]);
    res.set('Cache-Control', 'no-store');
    res.status(status).render('account', {
      title: 'Your account',
      flash: view.flash,
      errors: view.errors,
      errorList: Object.values(view.errors),
      sessions: list,
      currentSessionId: req.session.meta!.id,
      activity,
      passwordMin: PASSWORD_MIN_LENGTH,
      passwordMax: PASSWORD_MAX_LENGTH,
    });
  }

  async function changePassword(req: Request, res: Response) {
    const user = req.user!;
    const currentPassword = textField(req.body, 'currentPassword');
    const newPassword = textField(req.body, 'newPassword');
    const confirmPassword = textField(req.body, 'confirmPassword');
    // A stolen session must not become a free password-guessing oracle: the current
    // password is counted exactly like a sign-in attempt on this account.
    const verdict = await throttle.beginLogin(usernameKey(user.username), clientAddress(req));
    if (!verdict.allowed) {
      await audit.record('throttled', auditActor(req, user), 'password change');
      res.set('Retry-After', String(verdict.retryAfterSeconds));
      return renderAccount(req, res, 429, { flash: null, errors: { currentPassword: 'Too many wrong passwords: try again later.' } });
    }
    const result = await users.changePassword(user.id, currentPassword, newPassword, confirmPassword);
    if (result.ok || !result.errors.currentPassword) await throttle.loginSucceeded(verdict.reservation);
    else await throttle.loginFailed(verdict.reservation);
    if (!result.ok) return renderAccount(req, res, 400, { flash: null, errors: result.errors });

    const oldPublicId = req.session.meta!.id;
    // Every other session ends; this browser keeps going under a new session id and public id.
    await sessions.revokeAll(user.id, req.sessionID);
    await sessions.recordRevoked(user.id, [oldPublicId]);
    tokenAccess.forgetUser(user.id);
    await signIn(req, result.user);
    await audit.record('password_changed', auditActor(req, result.user));
    req.session.flash = 'Your password was changed. Other sessions and earlier tokens no longer work.';
    await saveSession(req);
    res.redirect(303, '/account');
  }

  async function revokeSession(req: Request, res: Response) {
    const user = req.user!;
    const publicId = String(req.params.id);
    const isCurrent = publicId === req.session.meta!.id;
    if (!(await sessions.revoke(user.id, publicId))) throw new NotFoundError('You have no session with that id.');
    tokenAccess.forgetUser(user.id);
    await audit.record('session_revoked', auditActor(req, user), publicId);
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
function requireSignedInForm(req: Request, res: Response, next: NextFunction): void {
  if (req.user && req.session?.meta) return next();
  res.redirect(303, '/auth/login?returnTo=%2Faccount');
}
