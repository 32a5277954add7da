import { Router, type Request, type RequestHandler, type Response } from 'express';
import type passportModule from 'passport';
import type { Config } from '../config.js';
import { ForbiddenError, NotSignedInError } from '../errors.js';
import type { Csrf } from '../middleware/csrf.js';
import { destroySession, signIn } from '../middleware/session.js';
import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from '../services/passwords.js';
import type { TokenService } from '../services/tokens.js';
import type { AuditLog } from '../services/audit-log.js';
import type { SessionService } from '../services/sessions.js';
import type { Throttle, ThrottleVerdict } from '../services/throttle.js';
import type { TokenAccess } from '../services/token-access.js';
import { usernameKey, type FieldErrors, type PublicUser, type UserService } from '../services/users.js';
import { auditActor, clientAddress } from './audit-actor.js';
import { textField } from './form.js';
import { safeReturnTo } from './return-to.js';

export interface AuthRouteDeps {
  config: Config;
  users: UserService;
  passport: passportModule.Authenticator;
  csrf: Csrf;
  throttle: Throttle;
  audit: AuditLog;
  sessions: SessionService;
  tokenAccess: TokenAccess;
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
    const minted = tokens.mint(req.user, meta.id);
    await audit.record('token_minted', auditActor(req, req.user), minted.claims.jti);
    res.set('Cache-Control', 'no-store').set('Pragma', 'no-cache');
    res.json({ token: minted.token, token_type: 'Bearer', expires_in: minted.expiresIn });
  };
}

/** The one message for every failed sign-in, whether or not the name exists. */
export const LOGIN_FAILED = 'Invalid username or password';

/** Sign-in, registration and sign-out. */
export function authRoutes(deps: AuthRouteDeps): Router {
  const { config, users, passport, csrf, throttle, audit, sessions, tokenAccess } = deps;
  const router = Router();

  router.get('/login', showLogin);
  router.post('/login', csrf.protect, login);
  router.get('/register', showRegister);
  router.post('/register', csrf.protect, register);
  router.post('/logout', csrf.protect, logout);
  router.post('/logout-everywhere', csrf.protect, logoutEverywhere);

  function showLogin(req: Request, res: Response) {
    if (req.user) return res.redirect(303, safeReturnTo(req.query.returnTo));
    renderLogin(res, 200, { returnTo: safeReturnTo(req.query.returnTo), username: '', error: null });
  }

  async function login(req: Request, res: Response) {
    const username = textField(req.body, 'username');
    const password = textField(req.body, 'password');
    const returnTo = safeReturnTo(textField(req.body, 'returnTo') || req.query.returnTo);
    // Credentials come from the body only: passport-local would also read the query string.
    if (!username || !password) {
      return renderLogin(res, 400, { returnTo, username, error: 'Enter your username and password.' });
    }
    const key = usernameKey(username);
    const ip = clientAddress(req);
    // Counted before any password work: while blocked, even the right password is refused,
    // and a burst of concurrent guesses cannot all pass the check.
    const verdict = await throttle.beginLogin(key, ip);
    if (!verdict.allowed) {
      await audit.record('throttled', auditActor(req, await users.findByUsername(username)), 'sign-in');
      setRetryAfter(res, verdict);
      return renderLogin(res, 429, { returnTo, username, error: `${LOGIN_FAILED}. ${tooManyAttempts(verdict)}` });
    }
    const user = await authenticateLocal(req, res);
    if (!user) {
      await throttle.loginFailed(verdict.reservation);
      // The typed name is recorded only when it is a real account: people type passwords into the name field.
      const known = await users.findByUsername(username);
      await audit.record('sign_in_failed', auditActor(req, known), known ? null : 'unknown account');
      res.set('WWW-Authenticate', 'Form realm="token-bridge"');
      return renderLogin(res, 401, { returnTo, username, error: LOGIN_FAILED });
    }
    await throttle.loginSucceeded(verdict.reservation);
    await signIn(req, user);
    await audit.record('signed_in', auditActor(req, user));
    res.redirect(302, returnTo);
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
    const password = textField(req.body, 'password');
    const confirmPassword = textField(req.body, 'confirmPassword');
    const returnTo = safeReturnTo(textField(req.body, 'returnTo') || req.query.returnTo);
    const ip = clientAddress(req);
    // Counted before the account is created (a burst cannot pass together); given back on refusal.
    const verdict = await throttle.beginRegistration(ip);
    if (!verdict.allowed) {
      await audit.record('throttled', auditActor(req), 'registration');
      setRetryAfter(res, verdict);
      return renderRegister(res, 429, { returnTo, username, errors: {}, formError: `Too many new accounts from your address. ${tooManyAttempts(verdict)}` });
    }
    const result = await users.register(username, password, confirmPassword);
    if (!result.ok) {
      await throttle.registrationFailed(ip);
      return renderRegister(res, result.taken ? 409 : 400, { returnTo, username, errors: result.errors });
    }
    await signIn(req, result.user);
    await audit.record('registered', auditActor(req, result.user));
    res.redirect(302, returnTo);
  }

  async function logout(req: Request, res: Response) {
    const user = req.user;
    const meta = req.session.meta;
    if (user && meta) {
      // Tokens minted from this session die with it.
      await sessions.recordRevoked(user.id, [meta.id]);
      tokenAccess.forgetUser(user.id);
      await audit.record('signed_out', auditActor(req, user));
    }
    await destroySession(req, res, config.session);
    res.redirect(302, '/');
  }

  async function logoutEverywhere(req: Request, res: Response) {
    const user = req.user;
    if (user && req.session.meta) {
      await sessions.revokeAll(user.id);
      await users.invalidateTokens(user.id);
      tokenAccess.forgetUser(user.id);
      await audit.record('signed_out_everywhere', auditActor(req, user));
    }
    await destroySession(req, res, config.session);
    res.redirect(302, '/');
  }


  return router;
}

function renderLogin(res: Response, status: number, view: { returnTo: string; username: string; error: string | null }) {
  res.status(status).render('login', { title: 'Sign in', ...view });
}

function setRetryAfter(res: Response, verdict: ThrottleVerdict) {
  if (!verdict.allowed) res.set('Retry-After', String(verdict.retryAfterSeconds));
}

function tooManyAttempts(verdict: ThrottleVerdict): string {
  const seconds = verdict.allowed ? 0 : verdict.retryAfterSeconds;
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
