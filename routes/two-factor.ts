import { Router, type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import type { Clock } from '../clock.js';
import type { Csrf } from '../middleware/csrf.js';
import { saveSession, signIn as startSession } from '../middleware/session.js';
import { PASSWORD_AND_CODE, SECOND_STEP_MS, type SecondFactor, type SignInService, type TwoFactorChangeErrors } from '../services/sign-in.js';
import type { TwoFactorService } from '../services/two-factor.js';
import { requestActor } from './audit-actor.js';
import { requireSignedInForm } from './account.js';
import { textField } from './form.js';
import { requireSignedInPage } from './pages.js';

export interface TwoFactorRouteDeps {
  csrf: Csrf;
  signIn: SignInService;
  twoFactor: TwoFactorService;
  clock: Clock;
}

/** The one message for every wrong second step, code or recovery code. */
export const SECOND_STEP_FAILED = 'That code is not right.';

/**
 * Two-factor authentication in the browser: the second step of a sign-in
 * (`/auth/2fa`) and the user's own settings (`/account/2fa`). The sequences
 * (throttling, codes used once, sessions, audit) are SignInService's.
 */
export function twoFactorRoutes(deps: TwoFactorRouteDeps): Router {
  const { csrf, signIn, twoFactor, clock } = deps;
  const router = Router();

  router.get('/auth/2fa', showSecondStep);
  router.post('/auth/2fa', csrf.protect, secondStep);
  router.get('/account/2fa', requireSignedInPage, showSettings);
  router.post('/account/2fa', csrf.protect, requireSignedInForm, enable);
  router.post('/account/2fa/disable', csrf.protect, requireSignedInForm, disable);
  router.post('/account/2fa/recovery-codes', csrf.protect, requireSignedInForm, regenerate);

  /** The pending second step of this browser, if it is still in time. */
  function pendingOf(req: Request) {
    const pending = req.session.pendingSecondFactor;
    return pending && clock() - pending.at <= SECOND_STEP_MS ? pending : null;
  }

  function showSecondStep(req: Request, res: Response) {
    if (req.user) return res.redirect(302, '/');
    if (!pendingOf(req)) return res.redirect(302, '/auth/login');
    renderSecondStep(req, res, 200, null);
  }

  async function secondStep(req: Request, res: Response) {
    const pending = req.session.pendingSecondFactor;
    const factor = factorFrom(req.body);
    if (!pending) return res.redirect(303, '/auth/login');
    if (!factor) return renderSecondStep(req, res, 400, 'Enter the code your authenticator app shows, or one of your recovery codes.');
    const outcome = await signIn.withSecondFactor({
      pending,
      factor,
      actor: requestActor(req),
      startSession: (user, amr) => startSession(req, user, clock, amr),
    });
    if (outcome.status === 'expired') {
      delete req.session.pendingSecondFactor;
      await saveSession(req);
      return res.status(401).set('WWW-Authenticate', 'Form realm="token-bridge"').render('login', {
        title: 'Sign in',
        returnTo: pending.returnTo,
        username: '',
        error: 'That took too long: sign in again.',
      });
    }
    if (outcome.status === 'throttled') {
      res.set('Retry-After', String(outcome.retryAfterSeconds));
      const minutes = Math.ceil(outcome.retryAfterSeconds / 60);
      return renderSecondStep(req, res, 429, `${SECOND_STEP_FAILED} Too many wrong codes: try again in about ${minutes} minute${minutes === 1 ? '' : 's'}.`);
    }
    if (outcome.status === 'invalid') {
      res.set('WWW-Authenticate', 'Form realm="token-bridge"');
      return renderSecondStep(req, res, 401, SECOND_STEP_FAILED);
    }
    res.redirect(302, pending.returnTo);
  }

  function renderSecondStep(req: Request, res: Response, status: number, error: string | null) {
    const method = req.query.method === 'recovery' || (req.body as Record<string, unknown> | undefined)?.recoveryCode !== undefined ? 'recovery' : 'code';
    res.status(status).render('two-factor-login', { title: 'Two-factor sign-in', method, error });
  }

  async function showSettings(req: Request, res: Response) {
    await renderSettings(req, res, 200, {});
  }

  async function renderSettings(req: Request, res: Response, status: number, errors: TwoFactorChangeErrors) {
    const user = req.user!;
    const state = await twoFactor.status(user.id);
    const stepUp = signIn.mustUseTwoFactor(user) && !(req.session.meta!.amr ?? []).includes('mfa');
    res.status(status).render('two-factor-settings', {
      title: 'Two-factor authentication',
      state,
      enrolment: state.enabled ? null : await twoFactor.enrolment(user),
      stepUp,
      errors,
      errorList: Object.values(errors),
    });
  }

  async function enable(req: Request, res: Response) {
    const outcome = await signIn.enableTwoFactor({
      user: req.user!,
      currentPassword: textField(req.body, 'currentPassword'),
      code: textField(req.body, 'code').replace(/\s/g, ''),
      keepSid: req.sessionID,
      actor: requestActor(req),
    });
    if (outcome.status !== 'done') return changeRefused(req, res, outcome);
    // Password and a code, just now, in this browser: its session counts as signed in with both.
    req.session.meta!.amr = [...PASSWORD_AND_CODE];
    await saveSession(req);
    renderRecoveryCodes(res, outcome.result, true);
  }

  async function disable(req: Request, res: Response) {
    const factor = factorFrom(req.body);
    if (!factor) return renderSettings(req, res, 400, { code: 'Enter a code from your authenticator app, or one of your recovery codes.' });
    const outcome = await signIn.disableTwoFactor({ user: req.user!, currentPassword: textField(req.body, 'currentPassword'), factor, actor: requestActor(req) });
    if (outcome.status !== 'done') return changeRefused(req, res, outcome);
    req.session.flash = 'Two-factor authentication is off. Your recovery codes no longer work.';
    await saveSession(req);
    res.redirect(303, '/account');
  }

  async function regenerate(req: Request, res: Response) {
    const outcome = await signIn.regenerateRecoveryCodes({ user: req.user!, currentPassword: textField(req.body, 'currentPassword'), actor: requestActor(req) });
    if (outcome.status !== 'done') return changeRefused(req, res, outcome);
    renderRecoveryCodes(res, outcome.result, false);
  }

  function changeRefused(req: Request, res: Response, outcome: { status: 'invalid'; errors: TwoFactorChangeErrors } | { status: 'throttled'; retryAfterSeconds: number }) {
    if (outcome.status === 'throttled') {
      res.set('Retry-After', String(outcome.retryAfterSeconds));
      return renderSettings(req, res, 429, { currentPassword: 'Too many wrong attempts: try again later.' });
    }
    return renderSettings(req, res, 400, outcome.errors);
  }

  function renderRecoveryCodes(res: Response, codes: string[], justEnabled: boolean) {
    const text = `Token Bridge recovery codes (each works once)\n\n${codes.join('\n')}\n`;
    res.status(200).render('recovery-codes', {
      title: 'Your recovery codes',
      codes,
      justEnabled,
      download: `data:text/plain;charset=utf-8,${encodeURIComponent(text)}`,
    });
  }

  return router;
}

/**
 * `code` or `recoveryCode` from a form; null when neither was typed. A
 * `code` that is not 6 digits (spaces ignored) is taken as a recovery code,
 * so one field can take either.
 */
function factorFrom(body: unknown): SecondFactor | null {
  const typed = textField(body, 'code').trim();
  const digits = typed.replace(/\s/g, '');
  if (/^\d{6}$/.test(digits)) return { code: digits };
  const recoveryCode = textField(body, 'recoveryCode').trim() || typed;
  return recoveryCode ? { recoveryCode } : null;
}

/**
 * REQUIRE_2FA_ROLES: a signed-in holder of such a role whose session has no
 * second factor is sent to `/account/2fa` from every page until it has one
 * (form posts such as sign-out still work).
 */
export function requireSecondFactorEnrolment(signIn: SignInService): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const meta = req.session?.meta;
    if (req.method !== 'GET' || !req.user || !meta || req.path.startsWith('/account/2fa')) return next();
    if (!signIn.mustUseTwoFactor(req.user) || (meta.amr ?? []).includes('mfa')) return next();
    res.redirect(302, '/account/2fa');
  };
}
