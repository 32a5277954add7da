import { Router, type Request, type RequestHandler, type Response } from 'express';
import type passportModule from 'passport';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import { ForbiddenError, NotSignedInError } from '../errors.js';
import type { Csrf } from '../middleware/csrf.js';
import { destroySession, regenerateSession, saveSession, signIn as startSession } from '../middleware/session.js';
import type { AuditLog } from '../services/audit-log.js';
import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from '../services/passwords.js';
import type { RevocationService } from '../services/revocation.js';
import type { SignInService } from '../services/sign-in.js';
import type { TokenService } from '../services/tokens.js';
import type { FieldErrors, PublicUser } from '../services/users.js';
import type { TokenBody } from './api-schemas.js';
import { auditActor, requestActor } from './audit-actor.js';
import { textField } from './form.js';
import { safeReturnTo } from './return-to.js';

export interface AuthRouteDeps {
  config: Config;
  passport: passportModule.Authenticator;
  csrf: Csrf;
  signIn: SignInService;
  revocation: RevocationService;
  clock: Clock;
}

/**
 * `GET /auth/token`: mints a token for the signed-in session. Mounted by the
 * app on a lean chain (session and Passport only: no body parsing, CSRF or
 * page locals), ahead of the page routes.
 */
export function tokenRoute(deps: { tokens: TokenService; audit: AuditLog }): RequestHandler {
  const { tokens, audit } = deps;
  return async function mintToken(req: Request, res: Response) {
    // Defence in depth beside SameSite=Lax and CORP: no other site may even trigger a mint.
    if (req.get('sec-fetch-site') === 'cross-site') throw new ForbiddenError('Tokens are minted for this site only.');
    const meta = req.session?.meta;
    if (!req.user || !meta) throw new NotSignedInError();
    const minted = tokens.mint(req.user, meta.id, meta.amr);
    await audit.record('token_minted', auditActor(req, req.user), minted.claims.jti);
    const body: TokenBody = { token: minted.token, token_type: 'Bearer', expires_in: minted.expiresIn };
    res.json(body);
  };
}

/** Shown on the sign-in page a password reset sends the browser to (`?reset=1`). */
export const PASSWORD_RESET_NOTICE = 'Your password was changed and you were signed out everywhere. Sign in with your new password.';

/** The one message for every failed sign-in, whether or not the name exists. */
export const LOGIN_FAILED = 'Invalid username or password';

/** Sign-in, registration and sign-out: HTTP in and out; the sequences live in SignInService and RevocationService. */
export function authRoutes(deps: AuthRouteDeps): Router {
  const { config, passport, csrf, signIn, revocation, clock } = deps;
  const router = Router();

  router.get('/login', showLogin);
  router.post('/login', csrf.protect, login);
  router.get('/register', showRegister);
  router.post('/register', csrf.protect, register);
  router.post('/logout', csrf.protect, logout);
  router.post('/logout-everywhere', csrf.protect, logoutEverywhere);

  function showLogin(req: Request, res: Response) {
    if (req.user) return res.redirect(303, safeReturnTo(req.query.returnTo));
    const notice = req.query.reset === '1' ? PASSWORD_RESET_NOTICE : null;
    renderLogin(res, 200, { returnTo: safeReturnTo(req.query.returnTo), username: '', error: null, notice });
  }

  async function login(req: Request, res: Response) {
    const username = textField(req.body, 'username');
    const password = textField(req.body, 'password');
    const returnTo = safeReturnTo(textField(req.body, 'returnTo') || req.query.returnTo);
    // Credentials come from the body only: passport-local would also read the query string.
    if (!username || !password) {
      return renderLogin(res, 400, { returnTo, username, error: 'Enter your username and password.' });
    }
    const outcome = await signIn.withPassword({
      username,
      actor: requestActor(req),
      verify: () => authenticateLocal(req, res),
      startSession: (user, amr) => startSession(req, user, clock, amr),
    });
    if (outcome.status === 'throttled') {
      res.set('Retry-After', String(outcome.retryAfterSeconds));
      return renderLogin(res, 429, { returnTo, username, error: `${LOGIN_FAILED}. ${tooManyAttempts(outcome.retryAfterSeconds)}` });
    }
    if (outcome.status === 'invalid') {
      res.set('WWW-Authenticate', 'Form realm="token-bridge"');
      return renderLogin(res, 401, { returnTo, username, error: LOGIN_FAILED });
    }
    if (outcome.status === 'second_factor') {
      // Not signed in: a fresh session id holds only "password checked, second factor to come".
      await regenerateSession(req);
      req.session.pendingSecondFactor = { userId: outcome.user.id, at: clock(), returnTo };
      await saveSession(req);
      return res.redirect(302, '/auth/2fa');
    }
    res.redirect(302, outcome.mustEnrol ? '/account/2fa' : returnTo);
  }

  function authenticateLocal(req: Request, res: Response): Promise<PublicUser | false> {
    return new Promise((resolve, reject) => {
      passport.authenticate('local', { session: false }, (err: unknown, user: PublicUser | false) =>
        err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(user),
      )(req, res, reject);
    });
  }

  function showRegister(req: Request, res: Response) {
    renderRegister(res, 200, { returnTo: safeReturnTo(req.query.returnTo), username: '', errors: {} });
  }

  async function register(req: Request, res: Response) {
    const username = textField(req.body, 'username');
    const returnTo = safeReturnTo(textField(req.body, 'returnTo') || req.query.returnTo);
    const outcome = await signIn.register({
      username,
      password: textField(req.body, 'password'),
      confirmPassword: textField(req.body, 'confirmPassword'),
      actor: requestActor(req),
      startSession: (user, amr) => startSession(req, user, clock, amr),
    });
    if (outcome.status === 'throttled') {
      res.set('Retry-After', String(outcome.retryAfterSeconds));
      return renderRegister(res, 429, { returnTo, username, errors: {}, formError: `Too many new accounts from your address. ${tooManyAttempts(outcome.retryAfterSeconds)}` });
    }
    if (outcome.status === 'invalid') return renderRegister(res, outcome.taken ? 409 : 400, { returnTo, username, errors: outcome.errors });
    res.redirect(302, returnTo);
  }

  async function logout(req: Request, res: Response) {
    const meta = req.session.meta;
    if (req.user && meta) await revocation.signedOut(req.user, meta.id, requestActor(req));
    await destroySession(req, res, config.session);
    res.redirect(302, '/');
  }

  async function logoutEverywhere(req: Request, res: Response) {
    if (req.user && req.session.meta) await revocation.endEverywhere(req.user, requestActor(req));
    await destroySession(req, res, config.session);
    res.redirect(302, '/');
  }

  return router;
}

function renderLogin(res: Response, status: number, view: { returnTo: string; username: string; error: string | null; notice?: string | null }) {
  res.status(status).render('login', { title: 'Sign in', notice: null, ...view });
}

function tooManyAttempts(seconds: number): string {
  const minutes = Math.ceil(seconds / 60);
  return `Too many attempts: try again in about ${minutes} minute${minutes === 1 ? '' : 's'}.`;
}

function renderRegister(
  res: Response,
  status: number,
  view: { returnTo: string; username: string; errors: FieldErrors; formError?: string },
) {
  const errorList = [...(view.formError ? [view.formError] : []), ...Object.values(view.errors)];
  res.status(status).render('register', {
    title: 'Create an account',
    ...view,
    errorList,
    passwordMin: PASSWORD_MIN_LENGTH,
    passwordMax: PASSWORD_MAX_LENGTH,
  });
}
